"""A1111's ``launch_utils`` surface, which extensions' ``install.py`` and scripts import as ``launch``: ``run_pip``,
``is_installed``, ``run``, ``git_tag``, ``commit_hash``, ``repo_dir``, ``args``, ``python``...

Ours differs where A1111's would break the app: ``run_pip`` never changes a protected package
(``modules.pip_constraints``): a requirement that cannot be met under the installed versions raises
``RuntimeError`` naming the extension (``SD_WEBUI_EXTENSION``, set while its installer runs) and the package, and
every other install runs with the constraints file, so pip cannot swap torch or transformers as a dependency.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from modules import pip_constraints
from modules.paths import INSTALL_DIR

log = logging.getLogger(__name__)

python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"
script_path = str(INSTALL_DIR)
default_command_live = os.environ.get("WEBUI_LAUNCH_LIVE_OUTPUT") == "1"


def _parsed_args() -> Any:
    """The command line as the app parses it (A1111 extensions read ``launch.args.<flag>``)."""
    from modules import cmd_args

    argv = shlex.split(os.environ.get("COMMANDLINE_ARGS", "")) + sys.argv[1:]
    try:
        return cmd_args.build_parser().parse_known_args(argv)[0]
    except SystemExit:  # an installer's own argv is not ours to judge
        return cmd_args.build_parser().parse_known_args([])[0]


args = _parsed_args()
skip_install = bool(getattr(args, "skip_install", False))


def run(command: str | list[str], desc: str | None = None, errdesc: str | None = None,
        custom_env: dict[str, str] | None = None, live: bool = default_command_live) -> str:
    """Run a shell command (A1111: a string for the shell); its output, or RuntimeError with it on failure."""
    if desc:
        print(desc, flush=True)
    result = subprocess.run(command, shell=isinstance(command, str), env=custom_env or os.environ,
                            stdout=None if live else subprocess.PIPE, stderr=None if live else subprocess.PIPE,
                            text=True, check=False)
    if result.returncode != 0:
        message = f"{errdesc or 'Error running command'}.\nCommand: {command}\nError code: {result.returncode}"
        if not live:
            message += f"\nstdout: {(result.stdout or '').strip()}\nstderr: {(result.stderr or '').strip()}"
        raise RuntimeError(message)
    return result.stdout or ""


def is_installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        try:
            return importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            return False


def run_pip(command: str, desc: str | None = None, live: bool = default_command_live) -> str:
    """``pip <command>`` in this venv, with the protected packages held at their versions."""
    extension = os.environ.get(pip_constraints.EXTENSION_ENV) or "an extension"
    refused = pip_constraints.conflicts(command)
    if refused:
        raise RuntimeError(f"{extension} asks for {'; '.join(refused)}: not installed, the app keeps its own "
                           "versions")
    constraints = pip_constraints.write_constraints()
    try:
        pip_command = [python, "-m", "pip", *shlex.split(command), "--prefer-binary", "-c", str(constraints)]
        if index_url:
            pip_command += ["--index-url", index_url]
        if desc:
            print(f"Installing {desc}", flush=True)
        result = subprocess.run(pip_command, capture_output=not live, text=True, check=False,
                                env={**os.environ, "PIP_CONSTRAINT": str(constraints)})
    finally:
        constraints.unlink(missing_ok=True)
    if result.returncode != 0:
        output = "" if live else (result.stdout or "") + (result.stderr or "")
        raise RuntimeError(f"{extension}: pip {command} failed under this app's package versions:\n"
                           f"{pip_constraints.explain_failure(output)}")
    return result.stdout or ""


def check_run_python(code: str) -> bool:
    return subprocess.run([python, "-c", code], capture_output=True, check=False).returncode == 0


def requirements_met(requirements_file: str) -> bool:
    """Whether every line of a requirements file is installed at a matching version (A1111's check)."""
    from packaging.requirements import InvalidRequirement, Requirement

    for line in Path(requirements_file).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            return False
        version = pip_constraints.installed_version(req.name)
        if version is None or (req.specifier and not req.specifier.contains(version, prereleases=True)):
            return False
    return True


def _git(*git_args: str) -> str:
    result = subprocess.run([git, "-C", script_path, *git_args], capture_output=True, text=True, check=False,
                            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    return result.stdout.strip() if result.returncode == 0 else ""


@lru_cache(maxsize=None)
def commit_hash() -> str:
    return _git("rev-parse", "HEAD") or "<none>"


@lru_cache(maxsize=None)
def git_tag() -> str:
    return _git("describe", "--tags") or "<none>"


def repo_dir(name: str) -> str:
    return os.path.join(script_path, dir_repos, name)


def check_python_version() -> None:
    if sys.version_info < (3, 10):
        raise RuntimeError(f"Python 3.10 or newer is needed; this is {sys.version.split()[0]}")


def git_clone(url: str, dir: str, name: str, commithash: str | None = None) -> None:  # noqa: A002 - A1111's name
    """A1111 clones its repositories at start; we need none, and an extension asking for one gets a clear error."""
    raise RuntimeError(f"{name}: cloning {url} at start is not supported here; install it as an extension")


def prepare_environment() -> None:
    """launch.sh / launch.bat prepare the environment; nothing is left to do here."""


def start() -> None:
    """Start the web UI with this process's arguments (``python launch.py --listen``, as in A1111)."""
    import webui

    sys.exit(webui.main(sys.argv[1:]))
