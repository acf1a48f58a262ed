#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then run the cpu-demo experiment (teacher, classical student,
# bootstrapped student on the real corpus in ../shared/corpus) and its report. Extra arguments are dotted
# overrides for every run (e.g. train.threads=2). At the demo's budget the saving is within noise (its report
# says so); it then rebuilds, in seconds and training nothing, the report where the claim is seen: best against
# best with every arm's learning rate tuned, 3 seeds, 10x the tokens (results/where-it-pays/archive-tuned), and
# the same at two smaller sizes (results/where-it-pays/archive-scale).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
bootdistill experiment configs/cpu-demo.yaml --report "$@"
echo
echo "[demo] where the claim is seen: each arm's learning rate tuned (1e-3 to 3e-3 or 4e-3), the best against the best,"
echo "[demo] 6.1M tokens a 4.5M student, teacher and switch evaluations charged (docs/where-it-pays.md), rebuilt from"
echo "[demo] results/where-it-pays/archive-tuned into runs/where-it-pays-tuned.report-val:"
R=results/where-it-pays/archive-tuned  # the classical arm, the leader, the follow-up and their teachers
bootdistill report "$R"/ --no-diagnostics \
  --out runs/where-it-pays-tuned.report-val --headline 2>/dev/null \
  || echo "[demo] it could not be rebuilt: run that report without --headline to see why"
echo "[demo] to train it again: RECIPE=configs/where-it-pays/tuned.yaml ARCHIVE= bash scripts/where_it_pays.sh"
echo "[demo] (30 students and 6 teachers: about 6 hours on a 2-core Intel Xeon with AMX, 11 on a 2-core AMD EPYC)"
echo "[demo] and by student size, the same recipe and tuning at 1.47M (2.05M tokens) and 2.79M (3.79M tokens), from"
echo "[demo] results/where-it-pays/archive-scale (labels count parameters without the embeddings):"
R=results/where-it-pays/archive-scale
bootdistill report "$R"/ --no-diagnostics --out runs/where-it-pays-scale.report-val --headline 2>/dev/null \
  || echo "[demo] it could not be rebuilt: run that report without --headline to see why"
echo "[demo] the smallest budget whose saving is distinguishable from 0 is 2.79M students on 3.79M tokens (1.78M in the"
echo "[demo] labels); the sizes train again with RECIPE=configs/where-it-pays/scale.yaml ARCHIVE= bash scripts/where_it_pays.sh (about 3 hours)"
