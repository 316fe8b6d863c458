"""What an extension's installer may not change: the packages the app is built on stay at the versions installed.

An extension's ``install.py`` runs pip (through ``launch.run_pip`` or on its own); unchecked, a requirement like
``transformers<5`` or ``ultralytics`` (which pulls torchvision and a CUDA torch) replaces our packages and breaks
generation. Every pip run of an installer gets a constraints file (``PIP_CONSTRAINT``, which pip reads from the
environment, so an installer calling pip itself is held too) pinning each protected package to its installed
version; a protected package that is not installed is constrained to no version at all, so nothing can pull it in.
``conflicts()`` tells, before pip runs, which requested requirements cannot be met under those pins.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# The app's foundation (issue 17 §3): an extension may use them, never change them.
PROTECTED = ("torch", "torchvision", "torchaudio", "transformers", "diffusers", "huggingface_hub", "gradio",
             "gradio_client", "numpy", "pillow", "safetensors", "accelerate", "tokenizers", "fastapi", "pydantic")
EXTENSION_ENV = "SD_WEBUI_EXTENSION"  # the extension whose installer is running, for messages
# No release is 0a0 or below, so "<0a0" admits none: the constraint for a protected package that is not installed
# (torchvision does not import with our CPU torch, and its wheels pull a CUDA torch).
_NONE = "<0a0"


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def constraint_lines(protected: Iterable[str] = PROTECTED) -> list[str]:
    lines = []
    for name in protected:
        version = installed_version(name)
        lines.append(f"{name}=={version}" if version else f"{name}{_NONE}")
    return lines


def write_constraints(folder: Path | None = None) -> Path:
    """A constraints file for this environment (pip ``-c`` / ``PIP_CONSTRAINT``)."""
    handle = tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", prefix="sd-webui-", dir=folder,
                                         delete=False, encoding="utf-8")
    with handle:
        handle.write("# packages an extension installer may not change (sd-webui)\n")
        handle.write("\n".join(constraint_lines()) + "\n")
    return Path(handle.name)


def requested(pip_args: str | Iterable[str]) -> list[Requirement]:
    """The requirement specifiers among pip arguments (``install -U "transformers<5" x``); options, paths and
    URLs are skipped (pip and the constraints judge those)."""
    args = shlex.split(pip_args) if isinstance(pip_args, str) else list(pip_args)
    out = []
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg.startswith("-"):
            # options that take a value in the next argument
            skip_next = arg in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i",
                                "--index-url", "--extra-index-url", "-f", "--find-links", "--target", "-t",
                                "--prefix", "--root", "--upgrade-strategy", "--platform", "--python-version")
            continue
        if arg in ("install", "uninstall", "download", "wheel") or "/" in arg or "\\" in arg or "://" in arg:
            continue
        try:
            out.append(Requirement(arg))
        except InvalidRequirement:
            continue
    return out


def conflicts(pip_args: str | Iterable[str], protected: Iterable[str] = PROTECTED) -> list[str]:
    """Why each requested protected package cannot be had, e.g. ``"transformers<5 (this app needs transformers
    5.23.0)"``; ``uninstall`` of a protected package counts too."""
    args = shlex.split(pip_args) if isinstance(pip_args, str) else list(pip_args)
    names = {canonicalize_name(n): n for n in protected}
    uninstalling = "uninstall" in args
    problems = []
    for req in requested(args):
        name = canonicalize_name(req.name)
        if name not in names:
            continue
        version = installed_version(names[name])
        if uninstalling:
            problems.append(f"uninstalling {req.name} (this app needs it)")
        elif version is None:
            problems.append(f"{req} (cannot be installed beside this app's packages)")
        elif req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req} (this app needs {names[name]} {version})")
    return problems


_PIP_CONFLICT = re.compile(r"(?:Cannot install|conflict is caused by|ResolutionImpossible|"
                           r"Could not find a version that satisfies the requirement)", re.IGNORECASE)


def explain_failure(output: str) -> str:
    """The part of a failed pip run's output that says what could not be met (or its last lines)."""
    lines = output.strip().splitlines()
    hits = [i for i, line in enumerate(lines) if _PIP_CONFLICT.search(line)]
    chosen = lines[hits[0]:hits[0] + 8] if hits else lines[-8:]
    if "Traceback (most recent call last):" in chosen:  # the installer's own traceback follows pip's words
        chosen = chosen[:chosen.index("Traceback (most recent call last):")]
    # "... the requirement transformers<5 (from versions: 0.1, 2.0.0, ...)": the list says nothing useful
    return "\n".join(line.split(" (from versions:")[0][:300] for line in chosen)[-1500:]


# A requirement one of whose extras needs what our pins rule out (dynamic-prompts asks for
# ``dynamicprompts[attentiongrabber,magicprompt]``; the magicprompt extra wants transformers<5). pip words it two ways:
#   Could not find a version that satisfies the requirement transformers[torch]<5; extra == "magicprompt"
#       (from dynamicprompts[attentiongrabber,magicprompt])
#   dynamicprompts[magicprompt] 0.31.0 depends on transformers[torch]~=4.19; extra == "magicprompt"
_EXTRA_NOT_FOUND = re.compile(r"the requirement (?P<dep>[^;]+); extra == \"(?P<extra>[^\"]+)\" "
                              r"\(from (?P<parent>[A-Za-z0-9][A-Za-z0-9._-]*)\[(?P<extras>[^\]]+)\]")
_EXTRA_DEPENDS = re.compile(r"(?P<parent>[A-Za-z0-9][A-Za-z0-9._-]*)\[(?P<extras>[^\]]+)\] (?P<version>\d[^\s]*) "
                            r"depends on (?P<dep>[^;]+); extra == \"(?P<extra>[^\"]+)\"")


@dataclass(frozen=True)
class ExtrasFallback:
    """A requirement to install again without the extras that cannot be had here."""

    name: str  # the package, "dynamicprompts"
    requirement: str  # e.g. "dynamicprompts[attentiongrabber]~=0.31.0"
    dropped: tuple[str, ...]  # the extras left out ("magicprompt",)
    needs: str  # what they need ("transformers[torch]<5")


@dataclass
class _Blocked:
    name: str
    extras: set[str] = field(default_factory=set)
    drop: set[str] = field(default_factory=set)
    needs: list[str] = field(default_factory=list)
    version: str | None = None


def without_blocked_extras(output: str) -> list[ExtrasFallback]:
    """From a failed pip run: each requirement whose failure is only in some of its extras, to install again without
    them. The version is the one pip was installing (its ``depends on``/``Collecting`` lines), so the installer
    that asked finds the version it asked for."""
    blocked: dict[str, _Blocked] = {}
    for match in [*_EXTRA_NOT_FOUND.finditer(output), *_EXTRA_DEPENDS.finditer(output)]:
        entry = blocked.setdefault(canonicalize_name(match["parent"]), _Blocked(match["parent"]))
        entry.extras |= {e.strip() for e in match["extras"].split(",")}
        entry.drop.add(match["extra"])
        if match["dep"].strip() not in entry.needs:
            entry.needs.append(match["dep"].strip())
        if match.groupdict().get("version"):
            entry.version = f"=={match['version']}"
    out = []
    for entry in blocked.values():
        spec = entry.version
        if spec is None:
            collecting = re.search(rf"Collecting {re.escape(entry.name)}(?:\[[^\]]*\])?(?P<spec>[<>=!~][^\s(]*)",
                                   output)
            spec = collecting["spec"] if collecting else ""
        kept = sorted(entry.extras - entry.drop)
        requirement = f"{entry.name}[{','.join(kept)}]{spec}" if kept else f"{entry.name}{spec}"
        out.append(ExtrasFallback(entry.name, requirement, tuple(sorted(entry.drop)), ", ".join(entry.needs)))
    return out
