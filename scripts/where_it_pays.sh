#!/usr/bin/env bash
# The where-it-pays search (docs/where-it-pays.md) on a 2-core machine: teachers first, then the students two
# at a time with one thread each (the fastest use of 2 cores), then the reports on the validation and test
# splits. Finished runs are reused and interrupted ones resume, so it can be stopped and started again.
# Across machines or sessions that do not keep runs/: after every batch of students, both reports are brought up
# to date and every finished run is archived (results, cached whole-split losses, teachers' weights) into
# docs/where-it-pays/archive/, which the next start restores. A session that ends mid-search loses at most the
# batch in flight, if it committed the archive after the last "archived" line.
#   bash scripts/where_it_pays.sh                      # every run in the recipe
#   bash scripts/where_it_pays.sh classical mix-a0.1-t1 salt-linear   # these (plus the teachers they need)
# RECIPE=... picks another recipe (default configs/where-it-pays/search.yaml); JOBS=... parallel students;
# ARCHIVE=... where archives go (default docs/where-it-pays/archive; ARCHIVE= with nothing: no archiving);
# KEEP_WEIGHTS=teachers archives only the teachers' final weights (default teachers+baselines: a later session's
# students then still get their diagnostics, which compare them with their classical baseline).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
RECIPE="${RECIPE:-configs/where-it-pays/search.yaml}"
JOBS="${JOBS:-2}"
ARCHIVE="${ARCHIVE-docs/where-it-pays/archive}"
KEEP_WEIGHTS="${KEEP_WEIGHTS:-teachers+baselines}"
OUT="$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["out_dir"])' "$RECIPE")"
LOGS="$OUT.logs"
mkdir -p "$LOGS" "$OUT"
if [ -n "$ARCHIVE" ] && [ -d "$ARCHIVE" ]; then  # runs finished in earlier sessions: reused, not retrained
  for a in "$ARCHIVE"/*/; do
    a="${a%/}"
    [ -e "$OUT/$(basename "$a")" ] || { cp -r "$a" "$OUT/"; echo "[where-it-pays] restored $(basename "$a") from $ARCHIVE"; }
  done
fi

commands="$(bootdistill experiment "$RECIPE" --list train.threads=1 log.progress=false)"
wanted() {  # is run $1 asked for (or needed as a teacher by one that is)?
  [ $# -eq 1 ] && [ ${#SELECTED[@]} -eq 0 ] && return 0
  local r
  for r in "${SELECTED[@]}"; do [ "$r" = "$1" ] && return 0; done
  return 1
}
SELECTED=("$@")
teachers=() students=() baselines=()
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
    baselines+=("$run")
  fi
done <<<"$commands"

# machines differ between sessions (a throttled VM ran 20x slower): say how fast this one is before hours go in
python - <<'PY'
import torch
from bootdistill.compute import measure_matmul_peak
from bootdistill.train.accel import cpu_model
torch.set_num_threads(1)
gflops = measure_matmul_peak(torch.bfloat16, size=2048, seconds=1.0) / 1e9
print(f"[where-it-pays] {cpu_model()}: bf16 matmul {gflops:.0f} GFLOP/s on one thread (a 2-core Xeon with AMX "
      f"did about 1000, and a 4.5M student took 20 min; much less means hours per run)")
PY
echo "[where-it-pays] teachers: ${teachers[*]:-none}; students (${JOBS} at a time): ${students[*]:-none}"
for t in "${teachers[@]}"; do  # a teacher is small: two threads, one at a time
  bootdistill experiment "$RECIPE" train.threads=2 log.progress=false --only "$t" >"$LOGS/$t.log" 2>&1 \
    || { echo "[where-it-pays] teacher $t failed: see $LOGS/$t.log" >&2; exit 1; }
done
report_and_archive() {  # both reports, then the archives: they then hold every whole-split loss they need
  bootdistill report "$OUT" --out "$OUT.report-val"
  bootdistill report "$OUT" --split test --no-diagnostics --out "$OUT.report-test"
  [ -n "$ARCHIVE" ] || return 0
  local names=("${teachers[@]}") weighted=() t d
  [ "$KEEP_WEIGHTS" = teachers ] || names+=("${baselines[@]}")
  for t in "${names[@]}"; do
    for d in "$OUT/$t"-*/; do
      d="${d%/}"
      [[ "$(basename "$d")" =~ ^$t-[0-9a-f]{8}$ ]] && weighted+=("$d")
    done
  done
  [ ${#weighted[@]} -eq 0 ] || bootdistill archive "${weighted[@]}" --to "$ARCHIVE" --weights
  bootdistill archive "$OUT" --to "$ARCHIVE"
}
status=0
ordered=("${baselines[@]}")  # baselines first: every later batch's report then has its target
for s in "${students[@]}"; do [[ " ${baselines[*]} " == *" $s "* ]] || ordered+=("$s"); done
batches=$(( (${#ordered[@]} + JOBS - 1) / JOBS ))
[ "$batches" -gt 0 ] || batches=1
started=$SECONDS
for ((b = 0; b < batches; b++)); do
  batch=("${ordered[@]:b*JOBS:JOBS}")
  [ ${#batch[@]} -eq 0 ] || printf '%s\n' "${batch[@]}" | xargs -P "$JOBS" -I{} sh -c \
    'bootdistill experiment "$1" train.threads=1 log.progress=false --only "$2" >"$3/$2.log" 2>&1 \
     && echo "[where-it-pays] done: $2" || { echo "[where-it-pays] FAILED: $2 (see $3/$2.log)" >&2; exit 1; }' \
    _ "$RECIPE" {} "$LOGS" || status=1
  report_and_archive
  done_=$((b + 1)) elapsed=$((SECONDS - started))
  echo "[where-it-pays] batch $done_/$batches $([ -n "$ARCHIVE" ] && echo archived || echo reported) (${batch[*]:-nothing to train}) after $((elapsed / 60)) min;" \
    "about $((elapsed * (batches - done_) / done_ / 60)) min to go${ARCHIVE:+; commit $ARCHIVE now to keep it}"
done
exit "$status"
