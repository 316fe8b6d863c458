"""HTTP Basic auth for the API (``--api-auth user:pass[,user2:pass2]``), compared in constant time."""

from __future__ import annotations

import base64
import binascii
import secrets

from fastapi import HTTPException, Request


def parse_credentials(spec: str | None) -> dict[str, str]:
    """``user:pass,user2:pass2`` -> {user: pass}. The password is everything after the first ':' of an entry."""
    creds: dict[str, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user:
            raise ValueError("expected user:password entries separated by commas")
        creds[user] = password
    return creds


class BasicAuth:
    """A FastAPI dependency; a no-op when no credentials are configured."""

    def __init__(self, credentials: dict[str, str]) -> None:
        self.credentials = {u.encode(): p.encode() for u, p in credentials.items()}

    def __call__(self, request: Request) -> None:
        if not self.credentials:
            return
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).partition(b":")
            except (binascii.Error, ValueError):
                user, password = b"", b""
            ok = False
            for known_user, known_password in self.credentials.items():
                # Compare against every entry so timing does not reveal which user exists.
                ok |= secrets.compare_digest(user, known_user) & secrets.compare_digest(password, known_password)
            if ok:
                return
        raise HTTPException(status_code=401, detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Basic"})
