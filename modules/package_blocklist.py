"""Python package releases known to be malicious (campaign D32, the ComfyUI-Manager pattern): extensions pin them in
their requirements or install.py, so they are checked before an install.py runs and, at start, among the installed
packages. Each entry says what to do instead."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

# name -> (compromised versions, remediation)
BLOCKED: dict[str, tuple[frozenset[str], str]] = {
    "ultralytics": (frozenset({"8.3.41", "8.3.42", "8.3.45", "8.3.46"}),
                    "these releases were published with a cryptominer (December 2024); install 8.3.40 or 8.3.47+"),
    "torchtriton": (frozenset({"3.0.0"}),
                    "the PyPI 'torchtriton' is a dependency-confusion package that steals data (December 2022); "
                    "uninstall it, PyTorch ships its own triton"),
}

_PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9._-]*)\s*===?\s*([0-9][0-9A-Za-z.+!-]*)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_BY_NORMAL = {_normal(k): (k, v) for k, v in BLOCKED.items()}


def problem(name: str, version: str) -> str | None:
    entry = _BY_NORMAL.get(_normal(name))
    if entry is None or version not in entry[1][0]:
        return None
    return f"{entry[0]}=={version} is blocked: {entry[1][1]}"


def pinned_in(text: str) -> list[str]:
    """Blocked ``name==version`` pins in a requirements file or an install script."""
    found = [problem(name, version) for name, version in _PIN.findall(text)]
    return sorted({p for p in found if p})


def extension_problems(path: Path) -> list[str]:
    """What an extension folder would install that is blocked (its requirements*.txt and install.py)."""
    out: list[str] = []
    for file in [*sorted(path.glob("requirements*.txt")), path / "install.py"]:
        try:
            out += pinned_in(file.read_text(encoding="utf-8", errors="replace")) if file.is_file() else []
        except OSError:
            continue
    return sorted(set(out))


def installed_problems() -> list[str]:
    """Blocked releases installed in this environment now."""
    out = []
    for name in BLOCKED:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found = problem(name, version)
        if found:
            out.append(f"installed {found}")
    return out
