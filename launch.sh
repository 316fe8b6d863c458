#!/usr/bin/env bash
# One-click launcher (Linux, macOS): find Python, make the venv, install requirements when they changed, start webui.py.
#
# Settings come from the environment, or from webui-user.sh next to this script (A1111 users already have one):
#   PYTHON (or A1111's python_cmd)  interpreter; default: first of python3.11 python3.10 python3.12 python3 python >= 3.10
#   VENV_DIR (or A1111's venv_dir)  venv folder, relative to this script (default: venv); "-" = use PYTHON as is
#   COMMANDLINE_ARGS                extra flags; webui.py reads them itself, this script only looks for its own:
#                                   --skip-install, --reinstall-torch, --exit, -f
#   TORCH_COMMAND                   pip arguments for torch, run as "python -m $TORCH_COMMAND" (A1111's format)
#   TORCH_INDEX_URL                 wheel index for torch, e.g. https://download.pytorch.org/whl/cu128
#   REQS_FILE                       requirements file (default: requirements.txt)
# Packages are installed only when the sha256 of the requirements file differs from $VENV_DIR/.requirements.sha256.

err() { printf 'launch.sh: %s\n' "$*" >&2; }
die() { err "$@"; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)" || die "cannot find the folder of launch.sh"
cd "$ROOT" || die "cannot enter $ROOT"

if [[ -f "$ROOT/webui-user.sh" ]]; then
    # shellcheck source=/dev/null
    source "$ROOT/webui-user.sh"
fi
# A1111's webui-user.sh uses these lower-case names; the upper-case ones win when both are set.
PYTHON="${PYTHON:-${python_cmd:-}}"
VENV_DIR="${VENV_DIR:-${venv_dir:-venv}}"
REQS_FILE="${REQS_FILE:-requirements.txt}"
NODEPS_FILE="${NODEPS_FILE:-requirements-nodeps.txt}"
# webui.py reads COMMANDLINE_ARGS from its environment; a webui-user.sh may set it without "export".
if [[ -n "${COMMANDLINE_ARGS+x}" ]]; then export COMMANDLINE_ARGS; fi

skip_install=0 reinstall_torch=0 exit_after=0 allow_root=0
set -f  # word-split COMMANDLINE_ARGS below without expanding globs; only exact flag words matter here
for arg in "$@" ${COMMANDLINE_ARGS:-}; do
    case "$arg" in
        --skip-install) skip_install=1 ;;
        --reinstall-torch) reinstall_torch=1 ;;
        --exit) exit_after=1 ;;
        -f) allow_root=1 ;;
    esac
done
set +f

if [[ "$(id -u 2>/dev/null)" == 0 && $allow_root == 0 ]]; then
    # A1111 refuses to run as root without -f; containers often are root, so we only warn.
    err "warning: running as root; pass -f to silence this warning"
fi

# --- Python ----------------------------------------------------------------------------------------------------------
version_ok='import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(sys.version_info < (3, 10))'

python_version() {  # prints the version of $1 and succeeds when it is >= 3.10
    "$1" -c "$version_ok" 2>/dev/null
}

if [[ -n "$PYTHON" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON was not found"
    found="$(python_version "$PYTHON")" || die "PYTHON=$PYTHON is Python ${found:-of unknown version}; Python 3.10 or newer is required"
else
    seen=""
    for cand in python3.11 python3.10 python3.12 python3 python; do
        command -v "$cand" >/dev/null 2>&1 || continue
        if v="$(python_version "$cand")"; then
            PYTHON="$cand"
            break
        fi
        [[ -n "$v" ]] && seen="$seen $cand=$v"
    done
    if [[ -z "$PYTHON" ]]; then
        if [[ -n "$seen" ]]; then
            die "Python 3.10 or newer is required, found only:$seen. Install Python 3.11 (or set PYTHON=/path/to/python3.11)"
        fi
        die "Python was not found. Install Python 3.11 (or set PYTHON=/path/to/python3.11)"
    fi
fi

# --- venv ------------------------------------------------------------------------------------------------------------
if [[ "$VENV_DIR" == "-" ]]; then
    PY="$(command -v "$PYTHON")"
    # No venv of our own: keep the stamp in the interpreter's prefix when we may write there.
    stamp_dir="$("$PY" -c 'import sys; print(sys.prefix)')"
    [[ -w "$stamp_dir" ]] || stamp_dir=""
else
    [[ "$VENV_DIR" == /* ]] || VENV_DIR="$ROOT/$VENV_DIR"
    if [[ ! -x "$VENV_DIR/bin/python" && ! -x "$VENV_DIR/Scripts/python.exe" ]]; then
        echo "Creating venv in $VENV_DIR with $PYTHON"
        "$PYTHON" -m venv "$VENV_DIR" ||
            die "could not create a venv in $VENV_DIR (on Debian/Ubuntu: apt install python3-venv)"
    fi
    if [[ -x "$VENV_DIR/bin/python" ]]; then PY="$VENV_DIR/bin/python"; else PY="$VENV_DIR/Scripts/python.exe"; fi
    v="$(python_version "$PY")" ||
        die "the venv in $VENV_DIR has Python ${v:-that does not run}; delete that folder and run launch.sh again"
    stamp_dir="$VENV_DIR"
fi

# --- packages --------------------------------------------------------------------------------------------------------
file_sha256() {  # of every file given that exists (requirements.txt and requirements-nodeps.txt)
    "$PY" -c 'import hashlib, os, sys; print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:] if os.path.isfile(f))).hexdigest())' "$@"
}

install_packages() {
    [[ -f "$REQS_FILE" ]] || die "$REQS_FILE not found in $ROOT"
    "$PY" -m pip --version >/dev/null 2>&1 || die "pip is missing in $PY (on Debian/Ubuntu: apt install python3-venv python3-pip)"

    # torch is pinned in requirements.txt: install exactly that first, then everything else constrained to it, so no
    # dependency can pull a different (multi-GB CUDA) torch.
    local torch_spec torch_version installed constraints
    torch_spec="$(grep -E '^[[:space:]]*torch[[:space:]]*==' "$REQS_FILE" | head -n 1 | tr -d '[:space:]')"
    torch_spec="${torch_spec%%#*}"
    torch_spec="${torch_spec%%;*}"
    [[ -n "$torch_spec" ]] || torch_spec="torch==2.13.0"
    torch_version="${torch_spec#*==}"
    installed="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null)"

    if [[ $reinstall_torch == 1 || "${installed%%+*}" != "$torch_version" ]]; then
        if [[ $reinstall_torch == 1 && -n "$installed" ]]; then
            "$PY" -m pip uninstall -y torch || die "could not uninstall torch $installed"
        fi
        if [[ -n "${TORCH_COMMAND:-}" ]]; then
            echo "Installing torch: python -m $TORCH_COMMAND"
            # shellcheck disable=SC2086  # TORCH_COMMAND is a list of words, as in A1111
            "$PY" -m $TORCH_COMMAND || die "TORCH_COMMAND failed: $TORCH_COMMAND"
        elif [[ -n "${TORCH_INDEX_URL:-}" ]]; then
            echo "Installing $torch_spec from $TORCH_INDEX_URL"
            "$PY" -m pip install "$torch_spec" --index-url "$TORCH_INDEX_URL" ||
                die "could not install $torch_spec from $TORCH_INDEX_URL"
        else
            echo "Installing $torch_spec"
            "$PY" -m pip install "$torch_spec" || die "could not install $torch_spec"
        fi
    fi

    constraints="$(mktemp "${TMPDIR:-/tmp}/torch-constraints.XXXXXX")" || die "cannot create a temporary file"
    printf '%s\n' "$torch_spec" >"$constraints"
    echo "Installing requirements from $REQS_FILE"
    if ! "$PY" -m pip install -r "$REQS_FILE" -c "$constraints"; then
        rm -f "$constraints"
        die "could not install the requirements; fix the error above and run launch.sh again"
    fi
    rm -f "$constraints"
    # Packages whose declared dependencies must not be installed (spandrel's torchvision: see the file).
    if [[ -f "$NODEPS_FILE" ]]; then
        echo "Installing $NODEPS_FILE without dependencies"
        "$PY" -m pip install --no-deps -r "$NODEPS_FILE" || die "could not install $NODEPS_FILE"
    fi
}

if [[ $skip_install == 1 ]]; then
    echo "Skipping package installation (--skip-install)"
else
    want="$(file_sha256 "$REQS_FILE" "$NODEPS_FILE" 2>/dev/null)" || want="missing"
    have=""
    [[ -n "$stamp_dir" && -f "$stamp_dir/.requirements.sha256" ]] && have="$(<"$stamp_dir/.requirements.sha256")"
    if [[ "$want" != "$have" || $reinstall_torch == 1 ]]; then
        install_packages
        if [[ -n "$stamp_dir" ]]; then
            printf '%s\n' "$want" >"$stamp_dir/.requirements.sha256" || err "warning: could not write $stamp_dir/.requirements.sha256"
        fi
    else
        echo "Requirements unchanged since the last install"
    fi
fi

if [[ $exit_after == 1 ]]; then
    echo "Exiting because of --exit argument"
    exit 0
fi

exec "$PY" "$ROOT/webui.py" "$@"
