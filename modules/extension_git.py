"""Git for extensions: what an installed extension's checkout is (remote, branch, commit), whether its remote has
newer commits, fast-forward updates, and installing a new extension from an https git URL.

Every git call has a timeout, never prompts for a password (``GIT_TERMINAL_PROMPT=0``) and passes URLs after
``--`` so a URL can never be read as an option. Installing clones into a temporary folder inside ``extensions/``
and renames it into place only when the clone is complete, so a failed install leaves nothing behind.
Whether installing is allowed at all (not on a network-exposed server without
``--enable-insecure-extension-access``) is decided by ``extension_access_error``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

GIT_TIMEOUT = 120.0  # seconds for clone/fetch; local queries are far quicker
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ExtensionGitError(Exception):
    """What went wrong, for the user (a bad URL, a failed clone, a diverged checkout...)."""


@dataclass(frozen=True)
class GitInfo:
    remote: str | None = None
    branch: str | None = None
    commit_hash: str | None = None
    commit_date: int | None = None  # unix time of the checked-out commit

    @property
    def version(self) -> str:
        return self.commit_hash[:8] if self.commit_hash else ""

    def date_text(self) -> str:
        if self.commit_date is None:
            return ""
        return datetime.fromtimestamp(self.commit_date, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _git(args: list[str], cwd: Path | None = None, timeout: float = 15.0) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "LC_ALL": "C"}
    name = next((a for a in args if not a.startswith("-") and "=" not in a), args[0])
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError as err:
        raise ExtensionGitError("git is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise ExtensionGitError(f"git {name} did not finish in {timeout:.0f} s") from err
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise ExtensionGitError(f"git {name} failed: {message[-1] if message else done.returncode}")
    return done.stdout.strip()


def is_checkout(path: Path) -> bool:
    return (path / ".git").exists()


def git_info(path: Path) -> GitInfo:
    """The checkout's details; empty for a folder that is not a git checkout (copied by hand)."""
    if not is_checkout(path):
        return GitInfo()
    try:
        commit = _git(["rev-parse", "HEAD"], path)
        date = int(_git(["log", "-1", "--format=%ct"], path) or 0) or None
        branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], path)
    except (ExtensionGitError, ValueError):
        return GitInfo()
    try:
        remote: str | None = _git(["config", "--get", "remote.origin.url"], path)
    except ExtensionGitError:
        remote = None
    return GitInfo(remote=remote, branch=None if branch == "HEAD" else branch, commit_hash=commit, commit_date=date)


@dataclass(frozen=True)
class UpdateStatus:
    behind: int  # commits on the remote branch not checked out here
    message: str


def check_for_updates(path: Path) -> UpdateStatus:
    """Fetch the remote and count the commits the checkout lacks."""
    if not is_checkout(path):
        return UpdateStatus(0, "not a git checkout")
    _git(["fetch", "--quiet"], path, timeout=GIT_TIMEOUT)
    try:
        behind = int(_git(["rev-list", "--count", "HEAD..@{u}"], path) or 0)
    except (ExtensionGitError, ValueError):
        return UpdateStatus(0, "no upstream branch")
    return UpdateStatus(behind, f"{behind} new commit(s)" if behind else "latest")


def update(path: Path) -> GitInfo:
    """Fast-forward to the fetched remote branch; local changes or a diverged branch are refused, not discarded
    (A1111 resets hard, which loses a user's edits)."""
    check_for_updates(path)
    _git(["merge", "--ff-only", "@{u}"], path, timeout=GIT_TIMEOUT)
    return git_info(path)


def folder_name_for(url: str, dirname: str | None = None) -> str:
    """The extension's folder: ``dirname`` if given, else the URL's last path part without ``.git``; only
    letters, digits, ``.``, ``_`` and ``-``, not starting with a dot (no paths, no hidden folders)."""
    name = (dirname or "").strip() or urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".git"):
        name = name[:-4]
    if not _NAME.match(name) or name in (".", ".."):
        raise ExtensionGitError(f"{name!r} cannot be an extension folder name: use letters, digits, '.', '_', '-'")
    return name


def check_url(url: str) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ExtensionGitError("only https:// git URLs can be installed")
    if any(c.isspace() for c in url):
        raise ExtensionGitError("the URL contains spaces")
    return url


def install_from_url(url: str, extensions_dir: Path, dirname: str | None = None,
                     branch: str | None = None) -> Path:
    """Clone ``url`` into ``extensions_dir/<name>``; an existing folder of that name is never touched."""
    url = check_url(url)
    name = folder_name_for(url, dirname)
    target = extensions_dir / name
    if target.exists():
        raise ExtensionGitError(f"an extension named {name} is already installed")
    if branch is not None and branch.strip() and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$", branch):
        raise ExtensionGitError(f"{branch!r} is not a branch name")
    extensions_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=extensions_dir))
    try:
        # a full clone: shallow clones fail on "dumb" http servers, and extensions are small
        command = ["clone", *(["--branch", branch.strip()] if branch and branch.strip() else []),
                   "--", url, str(staging / name)]
        # https only, submodules included: no ext::, file:// or ssh transports however the repo is crafted
        _git(["-c", "protocol.allow=never", "-c", "protocol.https.allow=always", *command], timeout=GIT_TIMEOUT)
        os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def extension_access_error(args: Any) -> str | None:
    """Why installing/updating extensions from the UI is refused, or None: a server reachable from the network
    would let anyone run code on this machine, unless the owner passed ``--enable-insecure-extension-access``."""
    from modules.cmd_args import admin_refusal, network_exposed

    locked = admin_refusal(args)
    if locked:  # without a login not even --enable-insecure-extension-access opens this to the network
        return f"installing or updating extensions is {locked}"
    if getattr(args, "enable_insecure_extension_access", False):
        return None
    if network_exposed(args) or getattr(args, "share", False):
        return ("installing or updating extensions is disabled on a server reachable from the network; start it "
                "with --enable-insecure-extension-access to allow it")
    return None
