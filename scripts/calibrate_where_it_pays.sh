#!/usr/bin/env bash
# The planner calibrated on the project's own runs (docs/where-it-pays.md, "The scale axis"): both laws fitted on
# the 1.46M and 2.78M students of configs/where-it-pays/scale.yaml (and every teacher), then the saving of the 4.5M
# follow-up of configs/where-it-pays/tuned.yaml predicted and put beside its measurement. The runs come from the
# archives in results/ (restored into each recipe's out_dir); nothing trains when they are complete.
#   bash scripts/calibrate_where_it_pays.sh            # writes runs/where-it-pays-calibration/calibration.md
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
command -v bootdistill >/dev/null 2>&1 || . "$ROOT/scripts/setup_env.sh"
export MPLBACKEND=Agg
cd "$ROOT"
restore() {  # restore ARCHIVE RECIPE: the archived runs into the recipe's out_dir, where its runs are looked for
  local out
  out="$(python -c 'import sys; from bootdistill.experiment import load_recipe
print(load_recipe(sys.argv[1])[1][0].run_dir.parent)' "$2")"
  mkdir -p "$out"
  for a in "$1"/*/; do
    a="${a%/}"
    [ -e "$out/$(basename "$a")" ] || cp -r "$a" "$out/"
  done
}
restore results/where-it-pays/archive-scale configs/where-it-pays/scale.yaml
restore results/where-it-pays/archive-tuned configs/where-it-pays/tuned.yaml
# held out: the whole 4.5M point (its classical grid, the follow-up, and the short-teacher configuration, whose grid
# has only its 1e-3 point); the teachers of tuned.yaml are fitted on, as a user trains a teacher before its student
bootdistill calibrate configs/where-it-pays/scale.yaml --with configs/where-it-pays/tuned.yaml \
  --hold-out classical mix-a0.25-tlong-tt0.5 mix-a0.25-tt0.5 \
  --out "${OUT:-runs/where-it-pays-calibration}" "$@"
