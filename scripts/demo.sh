#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then run the cpu-demo experiment (teacher, classical student,
# bootstrapped student on the real corpus in ../shared/corpus) and its report. Extra arguments are dotted
# overrides for every run (e.g. train.threads=2).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
bootdistill experiment configs/cpu-demo.yaml --report "$@"
