#!/usr/bin/env bash
# The GPU check, one prepared script for one GPU machine (sized for 1x H200 + 16 cores, under 10 minutes):
#   1. the test suite's CUDA tests (tests/test_cuda.py: bf16, fp16 + GradScaler, fused AdamW, flash SDPA,
#      torch.compile, the fused KD loss on GPU tensors)
#   2. bf16 MFU of the 30M, 70M and 150M presets, eager (benchmarks/bench_train.py; target >= 45% of the
#      dense bf16 peak for 70M and 150M), then eager vs train.compile=true for 70M and 150M
#   3. the KD step overhead at the 30M student / 5M teacher shapes (benchmarks/bench_kd_step.py)
#   4. a mid-scale bootstrapped experiment, configs/gpu-mid.yaml (5M teacher -> 30M student, 101.6M tokens),
#      one run at a time with `experiment --only`
# Each phase is bounded with `timeout` by its own cap and by what is left of GPU_CHECK_BUDGET (default 550 s;
# with the closing report at most ~590 s in all);
# phases that no longer fit are skipped, in this order of importance: env, tests, MFU eager, 150M compiled, KD,
# mid teacher + bootstrapped student, 70M compiled, mid classical student. To resume an interrupted experiment
# in a second call, give both calls the same GPU_CHECK_WORK.
# Everything goes under $OUT (default ./gpu_out): summary.txt (one line per phase, then the MFU / KD / experiment
# figures), <phase>.log, the benchmarks' JSON, and gpu-mid/<run>/{summary.json,metrics.jsonl} + report/.
# Run directories and prepared data go to $GPU_CHECK_WORK (default a temp dir), so checkpoints stay out of $OUT.
#
#   bash benchmarks/gpu_check.sh                     # from the repository root, on the GPU machine
#   GPU_CHECK_SMOKE=1 bash benchmarks/gpu_check.sh   # every phase for seconds on CPU: tests the script itself
#   GPU_CHECK_TASK=where-it-pays bash benchmarks/gpu_check.sh   # instead: the where-it-pays search and its
#                                                    # confirmation on the GPU (benchmarks/gpu_where_it_pays.sh)
#
# Python: the machine's own (python, python3 or $PYTHON) when it imports torch with CUDA; bootdistill is then
# used from src/ when that python has its dependencies, else installed into it with pip (no torch is pulled).
# scripts/setup_env.sh (a .venv with torch==2.13.0) only when no python with a usable torch is found.
# Corpus: $BOOTDISTILL_CORPUS, else ../shared/corpus, ./gpu_data/corpus or ./shared/corpus (to take the corpus
# along to a machine that has no ../shared, copy wiki.valid.raw, wiki.test.raw and two or three train parts
# there); without one the mid experiment runs on synthetic text (speed figures only, flagged in its logs).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu_out}"
OUT="$(mkdir -p "$OUT" && cd "$OUT" && pwd)"
SMOKE="${GPU_CHECK_SMOKE:-0}"
BUDGET="${GPU_CHECK_BUDGET:-550}"
WORK="${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}"
mkdir -p "$WORK"
START=$(date +%s)
: > "$OUT/summary.txt"
export MPLBACKEND=Agg PYTHONUNBUFFERED=1

note() { echo "$*" | tee -a "$OUT/summary.txt"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# phase NAME CAP COMMAND: run COMMAND (a bash string) for at most min(CAP, time left) seconds; log to NAME.log
phase() {
  local name=$1 cap=$2 cmd=$3 t rc t0 status
  t=$(left)
  (( t > cap )) && t=$cap
  if (( t < 15 )); then note "$name: SKIPPED (budget spent)"; return 1; fi
  t0=$(date +%s)
  echo "\$ $cmd" > "$OUT/$name.log"
  timeout --kill-after=10 "$t" bash -c "$cmd" >> "$OUT/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT (${t} s cap)" ;;
    *) status="FAILED (rc $rc; see $name.log)" ;;
  esac
  note "$name: $status, $(( $(date +%s) - t0 )) s"
  return $rc
}

# ------------------------------------------------------------------ 0. python, torch, bootdistill
note "gpu_check $(date -u +%FT%TZ) smoke=$SMOKE budget=${BUDGET}s out=$OUT work=$WORK"
command -v nvidia-smi >/dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
PY=""
for cand in "${PYTHON:-}" python python3; do
  if [ -n "$cand" ] && command -v "$cand" >/dev/null && "$cand" -c 'import torch' 2>/dev/null; then
    PY="$(command -v "$cand")"; break
  fi
done
if [ -z "$PY" ] && [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch' 2>/dev/null; then PY="$ROOT/.venv/bin/python"; fi
if [ -z "$PY" ]; then
  note "no python with torch found: creating .venv with scripts/setup_env.sh"
  phase setup_env 240 ". scripts/setup_env.sh" && PY="$ROOT/.venv/bin/python"
fi
[ -n "$PY" ] || { note "FATAL: no python with torch"; exit 1; }
note "python $PY: torch $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>&1)"
DEPS='import bootdistill.cli, tokenizers, yaml, safetensors, scipy, tqdm, pytest'
if ! "$PY" -c "$DEPS" 2>/dev/null; then
  # the source tree when this python has its dependencies (the device image does: no time lost on an offline
  # pip); else pip (offline it fails fast: no retries); else a .venv
  if PYTHONPATH="$ROOT/src" "$PY" -c "$DEPS" 2>/dev/null; then
    export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
    note "bootdistill from $ROOT/src (not installed)"
  else
    phase install 120 "'$PY' -m pip install --retries 0 --timeout 5 -q -e '.[dev,hf]'"
  fi
  if ! "$PY" -c "$DEPS" 2>/dev/null; then
    note "bootdistill's dependencies are missing for $PY: creating .venv with scripts/setup_env.sh"
    phase setup_env 240 ". scripts/setup_env.sh" && PY="$ROOT/.venv/bin/python"
    note "python $PY: torch $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>&1)"
    "$PY" -c "$DEPS" 2>>"$OUT/summary.txt" || { note "FATAL: bootdistill's dependencies cannot be installed here"; exit 1; }
  fi
fi
BD="'$PY' -m bootdistill.cli"
if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
elif "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE=cuda
else
  note "FATAL: torch sees no CUDA GPU (GPU_CHECK_SMOKE=1 runs the script's logic on CPU)"; exit 1
fi

CORPUS="${BOOTDISTILL_CORPUS:-}"
for c in ../shared/corpus gpu_data/corpus shared/corpus; do
  [ -z "$CORPUS" ] && [ -f "$c/wiki.valid.raw" ] && CORPUS="$(cd "$c" && pwd)"
done
note "corpus: ${CORPUS:-none: synthetic text}"
CORPUS_ARG="--corpus '${CORPUS:-}'"; [ -z "$CORPUS" ] && CORPUS_ARG=""
PREP="$WORK/bench-prepared"

# ------------------------------------------------------------------ GPU_CHECK_TASK=where-it-pays: the search instead
# shellcheck disable=SC1091
[ "${GPU_CHECK_TASK:-checks}" = where-it-pays ] && . "$ROOT/benchmarks/gpu_where_it_pays.sh"  # it exits

# sizes: the real ones, or seconds-long ones for the smoke run
if [ "$SMOKE" = 1 ]; then
  BENCH="--device cpu --context 64 --micro 2 --steps 1 --repeats 1 --vocab 500 --train-mb 0.3 --peak-size 256 --peak-seconds 0.05"
  MFU_PRESETS="1M"; BIG="1M"; MID_SIZE="2M"
  KD="--device cpu --student 32,1,2 --teacher 16,1,2 --context 64 --batch 2 --steps 1 --repeats 1 --vocab 500 --train-mb 0.3 --no-memory"
  MID="data.max_train_mb=0.5 data.vocab_size=500 model.d_model=32 model.n_layers=1 model.n_heads=2 model.context=64 \
train.batch_tokens=128 train.micro_batch=2 train.max_steps=3 train.precision=fp32 train.final_eval_sequences=4 train.device=cpu"
  TEST_SEL="tests/test_accel.py tests/test_cuda.py"
else
  BENCH="--device cuda --micro 32 --steps 5 --repeats 3"
  MFU_PRESETS="30M 70M 150M"; BIG="150M"; MID_SIZE="70M"
  KD="--device cuda --student 512,10,16 --teacher 256,6,8 --context 1024 --batch 16 --steps 3 --repeats 5"
  MID="train.device=cuda"
  TEST_SEL="-m cuda tests"
fi
MID="$MID log.progress=false ${CORPUS:+data.corpus=$CORPUS}"
[ -z "$CORPUS" ] && MID="$MID data.corpus=synthetic"

# ------------------------------------------------------------------ 1. CUDA tests
phase tests 150 "'$PY' -m pytest -q -rs -p no:cacheprovider $TEST_SEL"

# ------------------------------------------------------------------ 2. MFU: eager, then train.compile=true
for p in $MFU_PRESETS; do
  phase "mfu_$p" 90 "'$PY' benchmarks/bench_train.py $BENCH $CORPUS_ARG --prepared '$PREP' --presets $p --dtypes bf16 --json '$OUT/mfu_$p.json'"
done
mfu_compile() {  # eager and compiled side by side in one process
  phase "mfu_compile_$1" 120 "'$PY' benchmarks/bench_train.py $BENCH $CORPUS_ARG --prepared '$PREP' --presets $1 --dtypes bf16,bf16+compile --json '$OUT/mfu_compile_$1.json'"
}
mfu_compile "$BIG"

# ------------------------------------------------------------------ 3. KD step overhead
phase kd_step 90 "'$PY' benchmarks/bench_kd_step.py $KD $CORPUS_ARG --prepared '$PREP' --json '$OUT/kd_step.json'"

# ------------------------------------------------------------------ 4. mid-scale experiment (teacher, bootstrapped)
RECIPE="$ROOT/configs/gpu-mid.yaml"
mid() { phase "mid_$1" "$2" "cd '$WORK' && $BD experiment '$RECIPE' $MID --only $1"; }
mid teacher 150 && mid bootstrapped 200

# ------------------------------------------------------------------ 5. what is left: 70M compiled, the classical baseline
mfu_compile "$MID_SIZE"
mid classical 200

# ------------------------------------------------------------------ results
mkdir -p "$OUT/gpu-mid"
for run in "$WORK"/runs/gpu-mid/*/; do
  [ -d "$run" ] || continue
  dest="$OUT/gpu-mid/$(basename "$run")"
  mkdir -p "$dest"
  cp "$run"/summary.json "$run"/metrics.jsonl "$run"/config.yaml "$dest"/ 2>/dev/null
done
finished=$(ls "$WORK"/runs/gpu-mid/*/summary.json 2>/dev/null | xargs -r -n1 dirname | tr '\n' ' ')
if [ -n "$finished" ]; then
  (cd "$WORK" && timeout 25 bash -c "$BD report $finished --out '$OUT/gpu-mid/report'" > "$OUT/report.log" 2>&1) \
    || note "report: FAILED (see report.log)"
fi
"$PY" - "$OUT" 2>&1 <<'PYEOF' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for f in sorted(out.glob("mfu*.json")):
    for r in json.loads(f.read_text()):
        target = " (target >= 45%)" if r["preset"] in ("70M", "150M") else ""
        print(f"MFU {r['preset']:>5} {r['variant']:<14} {100 * r['mfu']:5.1f}%{target}  {r['tokens_per_s']:,.0f} tok/s  [{f.name}]")
kd = out / "kd_step.json"
if kd.is_file():
    k = json.loads(kd.read_text())["wall"]
    print(f"KD step / classical step {k['ratio']:.3f} = {k['ratio_vs_ideal']:.3f} x ideal (target <= 1.05); "
          f"teacher forward {100 * k['teacher_share']:.1f}% of a classical step")
for s in sorted((out / "gpu-mid").glob("*/summary.json")):
    d = json.loads(s.read_text())
    print(f"gpu-mid {s.parent.name}: {d['tokens']:,} tokens, val {d['final_val_loss']:.4f}, test {d['test_loss']:.4f}, "
          f"{d['flops']['flops_total'] / 1e15:.2f} PFLOPs, {d['wall_s']:.0f} s, synthetic={d['data']['synthetic']}")
PYEOF
note "total $(( $(date +%s) - START )) s; results in $OUT"
