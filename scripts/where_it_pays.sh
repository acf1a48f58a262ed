#!/usr/bin/env bash
# The where-it-pays search (docs/where-it-pays.md) on a 2-core machine: teachers first, then the students two
# at a time with one thread each (the fastest use of 2 cores), then the reports on the validation and test
# splits. Finished runs are reused and interrupted ones resume, so it can be stopped and started again.
#   bash scripts/where_it_pays.sh                      # every run in the recipe
#   bash scripts/where_it_pays.sh classical mix-a0.1-t1 salt-linear   # these (plus the teachers they need)
# RECIPE=... picks another recipe (default configs/where-it-pays/search.yaml); JOBS=... parallel students.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
RECIPE="${RECIPE:-configs/where-it-pays/search.yaml}"
JOBS="${JOBS:-2}"
LOGS="runs/where-it-pays.logs"
mkdir -p "$LOGS"

commands="$(bootdistill experiment "$RECIPE" --list train.threads=1 log.progress=false)"
wanted() {  # is run $1 asked for (or needed as a teacher by one that is)?
  [ $# -eq 1 ] && [ ${#SELECTED[@]} -eq 0 ] && return 0
  local r
  for r in "${SELECTED[@]}"; do [ "$r" = "$1" ] && return 0; done
  return 1
}
SELECTED=("$@")
teachers=() students=()
while IFS= read -r line; do
  run="$(sed -E 's/.*--only ([^ ]+).*/\1/' <<<"$line")"
  teacher="$(sed -nE 's/.*# after ([^ ]+)$/\1/p' <<<"$line")"
  wanted "$run" || continue
  if [ -n "$teacher" ]; then
    students+=("$run")
    [[ " ${teachers[*]} " == *" $teacher "* ]] || teachers+=("$teacher")
  elif grep -q -- "# after $run\$" <<<"$commands"; then
    [[ " ${teachers[*]} " == *" $run "* ]] || teachers+=("$run")
  else
    students+=("$run")  # a classical baseline: no teacher, nobody's teacher
  fi
done <<<"$commands"

echo "[where-it-pays] teachers: ${teachers[*]:-none}; students (${JOBS} at a time): ${students[*]:-none}"
for t in "${teachers[@]}"; do  # a teacher is small: two threads, one at a time
  bootdistill experiment "$RECIPE" train.threads=2 log.progress=false --only "$t" >"$LOGS/$t.log" 2>&1 \
    || { echo "[where-it-pays] teacher $t failed: see $LOGS/$t.log" >&2; exit 1; }
done
status=0
printf '%s\n' "${students[@]}" | xargs -P "$JOBS" -I{} sh -c \
  'bootdistill experiment "$1" train.threads=1 log.progress=false --only "$2" >"$3/$2.log" 2>&1 \
   && echo "[where-it-pays] done: $2" || { echo "[where-it-pays] FAILED: $2 (see $3/$2.log)" >&2; exit 1; }' \
  _ "$RECIPE" {} "$LOGS" || status=1
bootdistill report runs/where-it-pays --out runs/where-it-pays.report-val
bootdistill report runs/where-it-pays --split test --no-diagnostics --out runs/where-it-pays.report-test
exit "$status"
