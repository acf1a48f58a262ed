#!/usr/bin/env bash
# The whole test suite, on a fresh machine: sets up .venv, then runs pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
python -m pytest -q "$@"
