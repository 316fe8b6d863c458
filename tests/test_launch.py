"""launch.sh / launch.bat: the launcher's own logic, run for real in a temporary copy.

webui.py is replaced by a stub that prints what it received, and "python -m venv" / "python -m pip" go through a fake
interpreter that logs them, so these tests install nothing and need no network. That tests the launcher, not the app.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None or os.name == "nt", reason="needs bash")

STUB_WEBUI = """\
import json, os, sys
print("STUB " + json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(),
                            "commandline_args": os.environ.get("COMMANDLINE_ARGS")}))
"""

# Logs "-m venv" and "-m pip", answers the torch-version probe from $FAKE_TORCH_VERSION, runs anything else for real.
FAKE_PYTHON = """\
#!/usr/bin/env bash
if [[ "$1" == "-m" && "$2" == "venv" ]]; then
    echo "venv $3" >>"$FAKE_LOG"; mkdir -p "$3/bin"; ln -s "$FAKE_SELF" "$3/bin/python"; exit 0
fi
if [[ "$1" == "-m" && "$2" == "pip" ]]; then
    shift 2
    [[ "$1" == "--version" ]] && exit 0
    echo "pip $*" >>"$FAKE_LOG"
    while [[ $# -gt 0 ]]; do [[ "$1" == "-c" ]] && echo "constraints $(cat "$2")" >>"$FAKE_LOG"; shift; done
    exit "${FAKE_PIP_RC:-0}"
fi
if [[ "$1" == "-c" && "$2" == *'version("torch")'* ]]; then
    [[ -n "$FAKE_TORCH_VERSION" ]] && echo "$FAKE_TORCH_VERSION" && exit 0
    exit 1
fi
if [[ "$1" == "-m" ]]; then
    echo "fake python: unexpected $*" >&2; exit 3
fi
exec "$REAL_PYTHON" "$@"
"""

OLD_PYTHON = """\
#!/usr/bin/env bash
echo 3.9.18
exit 1
"""


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    app = tmp_path / "app dir"  # a space in the path, as on many users' machines
    app.mkdir()
    shutil.copy2(ROOT / "launch.sh", app / "launch.sh")
    (app / "webui.py").write_text(STUB_WEBUI)
    (app / "requirements.txt").write_text("# pinned\ntorch==2.13.0\nnumpy>=1.26\n")
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    old = tmp_path / "oldpython"
    old.write_text(OLD_PYTHON)
    old.chmod(0o755)
    return app


def run(app: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("COMMANDLINE_ARGS", "VENV_DIR", "PYTHON", "TORCH_COMMAND",
                                                             "TORCH_INDEX_URL", "REQS_FILE")}
    fake = app.parent / "fakepython"
    base.update({"FAKE_LOG": str(app.parent / "log.txt"), "FAKE_SELF": str(fake), "REAL_PYTHON": sys.executable,
                 "PYTHON": str(fake), "VENV_DIR": str(app.parent / "venv")})
    base.update(env or {})
    for k in [k for k, v in base.items() if v is None]:
        del base[k]
    out = subprocess.run([BASH, str(app / "launch.sh"), *args], env=base, capture_output=True, text=True, timeout=30,
                         cwd=app.parent)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def stub_output(out: subprocess.CompletedProcess[str]) -> dict:
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("STUB ")]
    assert len(lines) == 1, out.stdout + out.stderr
    return json.loads(lines[0][5:])


def log_lines(app: Path) -> list[str]:
    log = app.parent / "log.txt"
    return log.read_text().splitlines() if log.exists() else []


def test_bash_syntax() -> None:
    subprocess.run([BASH, "-n", str(ROOT / "launch.sh")], check=True, timeout=10)
    assert os.access(ROOT / "launch.sh", os.X_OK)


def test_launch_bat_is_well_formed() -> None:
    data = (ROOT / "launch.bat").read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only: cmd.exe mis-parses labels in LF-only files
    text = data.decode("ascii")
    labels = {m.lower() for m in re.findall(r"^:(\w+)", text, re.M)}
    targets = {m.lower() for m in re.findall(r"(?:goto|call) :(\w+)", text, re.I)} - {"eof"}
    assert targets <= labels, targets - labels
    assert "webui.py" in text and "--index-url" in text and "download.pytorch.org/whl/cu128" in text


def test_current_python_runs_webui_with_args(tree: Path) -> None:
    # VENV_DIR=- uses the given Python as it is (A1111 allows this); --skip-install touches no package.
    out = run(tree, "--skip-install", "--api", "--styles-file", "my styles.csv", "-f",
              env={"VENV_DIR": "-", "PYTHON": sys.executable, "COMMANDLINE_ARGS": "--xformers --port 7000"})
    got = stub_output(out)
    assert got["argv"] == ["--skip-install", "--api", "--styles-file", "my styles.csv", "-f"]
    assert got["commandline_args"] == "--xformers --port 7000"  # left for webui.py's parser, not duplicated
    assert Path(got["cwd"]) == tree  # A1111's launcher runs from its install folder
    assert "Skipping package installation" in out.stdout
    assert "running as root" not in out.stderr


def test_exit_installs_nothing_and_does_not_start(tree: Path) -> None:
    out = run(tree, "--skip-install", "--exit", env={"VENV_DIR": "-", "PYTHON": sys.executable})
    assert "STUB" not in out.stdout
    assert "Exiting because of --exit argument" in out.stdout


def test_nodeps_requirements_are_installed_without_dependencies(tree: Path) -> None:
    (tree / "requirements-nodeps.txt").write_text("spandrel==0.4.2\n")
    run(tree, "--exit", env={"FAKE_TORCH_VERSION": "2.13.0+cpu"})
    pips = [ln for ln in log_lines(tree) if ln.startswith("pip")]
    assert pips[-1] == "pip install --no-deps -r requirements-nodeps.txt"
    # a change to the no-deps file alone is a change of requirements
    (tree.parent / "log.txt").unlink()
    run(tree, "--exit", env={"FAKE_TORCH_VERSION": "2.13.0+cpu"})
    assert log_lines(tree) == []
    (tree / "requirements-nodeps.txt").write_text("spandrel==0.4.3\n")
    run(tree, "--exit", env={"FAKE_TORCH_VERSION": "2.13.0+cpu"})
    assert "pip install --no-deps -r requirements-nodeps.txt" in log_lines(tree)


def test_install_only_when_requirements_change(tree: Path) -> None:
    venv = tree.parent / "venv"
    out = run(tree, "--exit")
    log = log_lines(tree)
    assert log[0] == f"venv {venv}"
    # torch first, pinned; then the rest with torch as a constraint.
    assert log[1] == "pip install torch==2.13.0"
    assert log[2].startswith("pip install -r requirements.txt -c ")
    assert log[3] == "constraints torch==2.13.0"
    stamp = venv / ".requirements.sha256"
    import hashlib

    assert stamp.read_text().strip() == hashlib.sha256((tree / "requirements.txt").read_bytes()).hexdigest()
    assert "STUB" not in out.stdout

    # Unchanged requirements: no pip at all, and webui.py starts with the venv's python.
    (tree.parent / "log.txt").unlink()
    out = run(tree, "--listen")
    assert log_lines(tree) == []
    assert "Requirements unchanged" in out.stdout
    assert stub_output(out)["argv"] == ["--listen"]

    # Changed requirements, torch already at the pinned version: only the requirements are installed.
    (tree / "requirements.txt").write_text("torch==2.13.0\nnumpy>=1.26\npillow\n")
    run(tree, "--exit", env={"FAKE_TORCH_VERSION": "2.13.0+cpu"})
    log = log_lines(tree)
    assert [ln for ln in log if ln.startswith("pip")] == [log[0]] and log[0].startswith("pip install -r")

    # --reinstall-torch: uninstall, then install the pinned torch again, even with unchanged requirements.
    (tree.parent / "log.txt").unlink()
    run(tree, "--exit", env={"FAKE_TORCH_VERSION": "2.13.0+cpu", "COMMANDLINE_ARGS": "--reinstall-torch"})
    log = log_lines(tree)
    assert log[:2] == ["pip uninstall -y torch", "pip install torch==2.13.0"]


def test_failed_install_leaves_no_stamp_and_fails(tree: Path) -> None:
    out = run(tree, "--exit", env={"FAKE_PIP_RC": "1"}, check=False)
    assert out.returncode != 0
    assert "could not install" in out.stderr
    assert not (tree.parent / "venv" / ".requirements.sha256").exists()


def test_torch_index_and_torch_command_overrides(tree: Path) -> None:
    run(tree, "--exit", env={"TORCH_INDEX_URL": "https://example.invalid/whl/cu128"})
    assert log_lines(tree)[1] == "pip install torch==2.13.0 --index-url https://example.invalid/whl/cu128"
    (tree.parent / "log.txt").unlink()
    (tree.parent / "venv" / ".requirements.sha256").unlink()
    run(tree, "--exit", env={"TORCH_COMMAND": "pip install torch==2.13.0 --extra-index-url https://example.invalid"})
    assert log_lines(tree)[0] == "pip install torch==2.13.0 --extra-index-url https://example.invalid"


def test_refuses_old_python(tree: Path) -> None:
    out = run(tree, "--exit", env={"PYTHON": str(tree.parent / "oldpython")}, check=False)
    assert out.returncode == 1
    assert "3.9.18" in out.stderr and "3.10 or newer" in out.stderr


def test_finds_first_suitable_python_on_path(tree: Path) -> None:
    bindir = tree.parent / "bin"
    bindir.mkdir()
    for tool in ("bash", "env", "id", "mktemp", "grep", "head", "tr", "dirname", "cat", "mkdir", "ln", "rm"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    (bindir / "python3.11").symlink_to(tree.parent / "oldpython")  # too old: skipped
    (bindir / "python3").symlink_to(sys.executable)
    out = run(tree, "--skip-install", "-f", env={"PYTHON": None, "VENV_DIR": "-", "PATH": str(bindir)})
    assert stub_output(out)["argv"] == ["--skip-install", "-f"]

    (bindir / "python3").unlink()
    out = run(tree, "--skip-install", env={"PYTHON": None, "VENV_DIR": "-", "PATH": str(bindir)}, check=False)
    assert out.returncode == 1 and "python3.11=3.9.18" in out.stderr


def test_webui_user_sh_is_sourced(tree: Path) -> None:
    # A1111's webui-user.sh style: lower-case names, COMMANDLINE_ARGS possibly without export.
    (tree / "webui-user.sh").write_text(f'python_cmd="{sys.executable}"\nvenv_dir="-"\nCOMMANDLINE_ARGS="--api --skip-install"\n')
    out = run(tree, "--port", "9000", env={"PYTHON": None, "VENV_DIR": None})
    got = stub_output(out)
    assert got["argv"] == ["--port", "9000"]
    assert got["commandline_args"] == "--api --skip-install"
    assert "Skipping package installation" in out.stdout  # launcher flags are read from COMMANDLINE_ARGS too
