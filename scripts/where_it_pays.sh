#!/usr/bin/env bash
# The where-it-pays search (docs/where-it-pays.md) on a 2-core machine: teachers first, then the students two
# at a time with one thread each (the fastest use of 2 cores; a batch with one run left to train gives it both),
# then the reports on the validation and test splits. Finished runs are reused and interrupted ones resume, so
# it can be stopped and started again.
# Across machines or sessions that do not keep runs/: after every batch of students, both reports are brought up
# to date and every finished run is archived (results, cached whole-split losses, teachers' weights) into
# results/where-it-pays/archive/, which the next start restores. A session that ends mid-search loses at most the
# batch in flight, if it committed the archive after the last "archived" line.
#   bash scripts/where_it_pays.sh                      # every run in the recipe
#   bash scripts/where_it_pays.sh classical mix-a0.1-t1 salt-linear   # these (plus the teachers they need)
# RECIPE=... picks another recipe (default configs/where-it-pays/search.yaml); JOBS=... parallel students;
# TEACHER_JOBS=... parallel teachers (default 1; on a CPU they share its cores, at most 2 threads each);
# ARCHIVE=... where archives go (default results/where-it-pays/archive; ARCHIVE= with nothing: no archiving);
# KEEP_WEIGHTS=teachers archives only the teachers' final weights (default teachers+baselines: a later session's
# students then still get their diagnostics, which compare them with their classical baseline).
# DEVICE=... trains and evaluates there (default auto: a CUDA GPU when there is one; benchmarks/gpu_check.sh runs
# the whole search on one GPU with GPU_CHECK_TASK=where-it-pays). The bootdistill on PATH is used when there is
# one (an environment you activated, a GPU machine's own); else scripts/setup_env.sh makes the project's .venv.
# PLAN=1 prints the teachers and the batches of students it would train, and writes nothing.
# CHECKPOINT_EVERY=N checkpoints every N steps (default: the recipe's): on a slow machine a stop then loses little.
set -euo pipefail
{  # read whole before it runs: editing this file mid-search (a git pull) cannot derail the search in flight
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
command -v bootdistill >/dev/null 2>&1 || . "$ROOT/scripts/setup_env.sh"
export MPLBACKEND=Agg
cd "$ROOT"
RECIPE="${RECIPE:-configs/where-it-pays/search.yaml}"
JOBS="${JOBS:-2}"
DEVICE="${DEVICE:-auto}"
ARCHIVE="${ARCHIVE-results/where-it-pays/archive}"
KEEP_WEIGHTS="${KEEP_WEIGHTS:-teachers+baselines}"
[ -f "$RECIPE" ] || { echo "[where-it-pays] error: RECIPE '$RECIPE' is not a file: give the path of a recipe YAML" >&2; exit 2; }
for knob in JOBS TEACHER_JOBS; do
  [[ "${!knob:-1}" =~ ^[1-9][0-9]*$ ]] || {
    echo "[where-it-pays] error: $knob must be a whole number >= 1, got '${!knob}'" >&2; exit 2; }
done
[[ "${CHECKPOINT_EVERY:-1}" =~ ^[1-9][0-9]*$ ]] || {
  echo "[where-it-pays] error: CHECKPOINT_EVERY must be a whole number of steps >= 1, got '$CHECKPOINT_EVERY'" >&2; exit 2; }
# the recipe is checked first (a typo is one line and exit 2, before anything is written); --list needs no torch
commands="$(bootdistill experiment "$RECIPE" --list train.threads=1 log.progress=false)"
OUT="$(python -c 'import sys; from bootdistill.experiment import load_recipe
print(load_recipe(sys.argv[1])[1][0].run_dir.parent)' "$RECIPE")"
LOGS="$OUT.logs"
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
ordered=("${baselines[@]}")  # baselines first: every later batch's report then has its target
for s in "${students[@]}"; do [[ " ${baselines[*]} " == *" $s "* ]] || ordered+=("$s"); done
# a seeded recipe (the confirmation): seed by seed, so each batch is a baseline with its own students and a
# session that stops early still leaves whole seeds (stable sort on the -sN suffix; none sorts first)
mapfile -t ordered < <(for i in "${!ordered[@]}"; do
  seed="$(sed -nE 's/.*-s([0-9]+)$/\1/p' <<<"${ordered[$i]}")"
  echo "${seed:-0} $i ${ordered[$i]}"
done | sort -n -k1,1 -k2,2 | cut -d' ' -f3)
# runs finished here or in the archive are reused, not trained: the batches pair only the runs still to train
mapfile -t finished < <(python - "$RECIPE" "$OUT" "$ARCHIVE" <<'PY'
import sys
from pathlib import Path
from bootdistill.experiment import load_recipe
for p in load_recipe(sys.argv[1])[1]:
    if any((Path(d) / p.run_dir.name / "summary.json").is_file() for d in sys.argv[2:] if d):
        print(p.name)
PY
)
todo=()
for r in "${ordered[@]}"; do [[ " ${finished[*]} " == *" $r "* ]] || todo+=("$r"); done
ordered=("${todo[@]}")
batches=$(( (${#ordered[@]} + JOBS - 1) / JOBS ))
[ "$batches" -gt 0 ] || batches=1
if [ -n "${PLAN:-}" ]; then  # PLAN=1: what would train, in which batches; nothing is written
  echo "[where-it-pays] teachers: ${teachers[*]:-none}"
  for ((b = 0; b < batches; b++)); do
    batch=("${ordered[@]:b*JOBS:JOBS}")
    echo "[where-it-pays] batch $((b + 1))/$batches: ${batch[*]:-nothing to train}"
  done
  exit 0
fi
mkdir -p "$LOGS" "$OUT"
if [ -n "$ARCHIVE" ] && [ -d "$ARCHIVE" ]; then  # runs finished in earlier sessions: reused, not retrained
  for a in "$ARCHIVE"/*/; do
    a="${a%/}"
    [ -e "$OUT/$(basename "$a")" ] || { cp -r "$a" "$OUT/"; echo "[where-it-pays] restored $(basename "$a") from $ARCHIVE"; }
  done
fi

# machines differ between sessions (a throttled VM ran 20x slower): say how fast this one is before hours go in
python - "$DEVICE" <<'PY'
import os
import sys
import torch
from bootdistill.compute import measure_matmul_peak
from bootdistill.runtime.accel import cpu_model
from bootdistill.errors import BootdistillError
from bootdistill.runtime.device import resolve_device
try:
    device = resolve_device(sys.argv[1], "DEVICE=")
except BootdistillError as e:
    sys.exit(f"[where-it-pays] error: {e}")
if device.type == "cuda":
    print(f"[where-it-pays] {torch.cuda.get_device_name(device)}: training and evaluating on {device}")
else:
    torch.set_num_threads(1)
    gflops = measure_matmul_peak(torch.bfloat16, size=2048, seconds=1.0) / 1e9
    busy = os.getloadavg()[0]  # other work on the cores makes the probe read low
    print(f"[where-it-pays] {cpu_model()}: bf16 matmul {gflops:.0f} GFLOP/s on one thread, load average {busy:.1f} "
          f"(a 2-core Xeon with AMX did about 1000, and a 4.5M student took 20 min; much less means hours per run)")
PY
echo "[where-it-pays] teachers: ${teachers[*]:-none}; students (${JOBS} at a time): ${students[*]:-none}"
train() {  # JOBS RUN:THREADS...: the runs, JOBS at a time, each on its THREADS; fails if one failed
  local jobs=$1
  shift
  [ $# -eq 0 ] || printf '%s\n' "$@" | xargs -P "$jobs" -I{} sh -c 'run="${2%:*}"
    bootdistill experiment "$1" train.threads="${2##*:}" train.device="$4" log.progress=false ${5:+"$5"} --only "$run" \
      >"$3/$run.log" 2>&1 && echo "[where-it-pays] done: $run" || { echo "[where-it-pays] FAILED: $run (see $3/$run.log)" >&2; exit 1; }' \
    _ "$RECIPE" {} "$LOGS" "$DEVICE" "${CHECKPOINT_EVERY:+train.checkpoint_every=$CHECKPOINT_EVERY}"
}
on_threads() {  # THREADS RUN...: RUN:THREADS for each
  local n=$1 r
  shift
  for r in "$@"; do echo "$r:$n"; done
}
batch_threads() {  # RUN...: RUN:THREADS, the cores shared by the runs still to train (experiment.batch_threads)
  [ $# -eq 0 ] || python - "$RECIPE" "$(nproc)" "$@" <<'PY'
import sys
from bootdistill.experiment import batch_threads, load_recipe
runs = {p.name: p for p in load_recipe(sys.argv[1])[1]}
for name, threads in batch_threads([runs[n] for n in sys.argv[3:]], int(sys.argv[2])).items():
    print(f"{name}:{threads}")
PY
}
# a teacher is small: on 2 cores one at a time with two threads; TEACHER_JOBS=N (a GPU) trains the first alone,
# which prepares the data, then the others N at a time
train 1 $(on_threads 2 "${teachers[@]:0:1}") || exit 1
# threads split between parallel teachers: 2 teachers x 2 threads on 2 cores ran about 4x slower than one at a time
teacher_threads=$(( $(nproc) / ${TEACHER_JOBS:-1} ))
teacher_threads=$(( teacher_threads < 1 ? 1 : teacher_threads > 2 ? 2 : teacher_threads ))
train "${TEACHER_JOBS:-1}" $(on_threads "$teacher_threads" "${teachers[@]:1}") || exit 1
report_and_archive() {  # both reports, then the archives: they then hold every whole-split loss they need
  local names=("${teachers[@]}") weighted=() t d rc=0  # each step runs even if one before it failed
  bootdistill report "$OUT" --device "$DEVICE" --out "$OUT.report-val" || rc=1
  bootdistill report "$OUT" --device "$DEVICE" --split test --no-diagnostics --out "$OUT.report-test" || rc=1
  [ -n "$ARCHIVE" ] || return "$rc"
  [ "$KEEP_WEIGHTS" = teachers ] || names+=("${baselines[@]}")
  for t in "${names[@]}"; do
    for d in "$OUT/$t"-*/; do
      d="${d%/}"
      # a run restored from an archive without its weights (results/ keeps only the teachers') has none to keep
      [[ "$(basename "$d")" =~ ^$t-[0-9a-f]{8}$ ]] && compgen -G "$d/checkpoints/step_*/model.safetensors" >/dev/null \
        && weighted+=("$d")
    done
  done
  [ ${#weighted[@]} -eq 0 ] || bootdistill archive "${weighted[@]}" --to "$ARCHIVE" --weights || rc=1
  bootdistill archive "$OUT" --to "$ARCHIVE" || rc=1
  return "$rc"
}
status=0
started=$SECONDS
for ((b = 0; b < batches; b++)); do
  batch=("${ordered[@]:b*JOBS:JOBS}")
  # students: two at a time on one thread each, the fastest on 2 cores; one left to train gets both
  if plan="$(batch_threads "${batch[@]}")"; then
    train "$JOBS" $plan || status=1
  else
    echo "[where-it-pays] FAILED: could not share the cores among batch $((b + 1))" >&2
    status=1
  fi
  # a report that fails must not cost the batches still to train: say so, finish them, exit non-zero
  report_and_archive || { echo "[where-it-pays] FAILED: the reports or archives after batch $((b + 1))" >&2; status=1; }
  done_=$((b + 1)) elapsed=$((SECONDS - started))
  echo "[where-it-pays] batch $done_/$batches $([ -n "$ARCHIVE" ] && echo archived || echo reported) (${batch[*]:-nothing to train}) after $((elapsed / 60)) min;" \
    "about $((elapsed * (batches - done_) / done_ / 60)) min to go${ARCHIVE:+; commit $ARCHIVE now to keep it}"
done
exit "$status"
}
