#!/usr/bin/env bash
# Creates (once) and activates the project's virtual environment. Sourced by demo.sh and test.sh.
# torch is pinned to 2.13.0: on this kind of machine that is a CPU build lying on local disk; an open
# range could pull a multi-GB CUDA build instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BOOTDISTILL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
STAMP="$VENV/.bootdistill-deps"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing dependencies (torch==2.13.0 CPU build, then the package) ..."
  python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  python -m pip install -q --disable-pip-version-check -e "$ROOT[dev,tensorboard,hf]" 2>&1 | grep -v "^WARNING: Location" || true
  python -c "import torch, bootdistill" || { echo "[setup] installation failed" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi
export MPLBACKEND=Agg
