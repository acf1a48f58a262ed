#!/usr/bin/env bash
# The whole test suite, on a fresh machine: sets up .venv, then runs pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
# one worker per core; whole files per worker, so a file's shared runs (module fixtures) are trained once
python -m pytest -q -n auto --dist loadfile "$@"
