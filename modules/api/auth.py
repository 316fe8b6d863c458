"""Login lists (``--api-auth`` / ``--gradio-auth``: ``user:pass[,user2:pass2]``); ``modules.api.guard`` checks them."""

from __future__ import annotations


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
        if not password:
            raise ValueError(f"the login {user!r} has an empty password")
        creds[user] = password
    return creds
