"""CPU training steps with the trainer's malloc settings (`runtime/accel.keep_freed_memory`) against glibc's defaults.

Each variant runs in a fresh process (malloc settings are process-wide and cannot be undone), alternating which
goes first each round. A child builds the real `Trainer` (the where-it-pays student by default: d 256, 4 layers,
16 x 256 tokens, bf16, one thread), takes warm-up steps, then times `--steps` steps and reports, per step:
minor page faults, user and kernel CPU seconds, and wall seconds. "glibc default" is the same trainer with
`keep_freed_memory` replaced by a no-op. Ratios are medians of per-round ratios, so a drifting CPU moves both
sides alike.

    python benchmarks/bench_malloc.py [--rounds 3] [--steps 4] [--student 256,4,8] [--teacher 64,2,4]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kd_step import build, make_teacher  # noqa: E402
from bench_train import corpus_dir  # noqa: E402

from bootdistill.train import trainer as trainer_module  # noqa: E402
from bootdistill.runtime.accel import cpu_model  # noqa: E402

VARIANTS = ("kept", "glibc default")


def child(args) -> dict:
    if args._variant == "glibc default":
        trainer_module.keep_freed_memory = lambda device: False
    with tempfile.TemporaryDirectory(prefix="bench_malloc_") as t:
        tr = build(args, Path(t) / "run", args.student, "kd" if args._teacher else "classical", args._teacher)
        for _ in range(args.warmup):
            tr.train_step()
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(args.steps):
            tr.train_step()
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        tr.logger.close()
        tr.lock.release()
    n = args.steps
    return {"faults": (r1.ru_minflt - r0.ru_minflt) / n, "user": (r1.ru_utime - r0.ru_utime) / n,
            "sys": (r1.ru_stime - r0.ru_stime) / n, "wall": (w1 - w0) / n}


def run_child(args, variant: str, teacher: str | None) -> dict:
    opts = {"student": args.student, "context": args.context, "batch": args.batch, "vocab": args.vocab,
            "dtype": args.dtype, "threads": args.threads, "steps": args.steps, "warmup": args.warmup,
            "corpus": args.corpus, "prepared": args.prepared, "train-mb": args.train_mb}
    cmd = [sys.executable, __file__, f"--_variant={variant}", *(f"--{k}={v}" for k, v in opts.items())]
    if teacher:
        cmd.append(f"--_teacher={teacher}")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"child '{variant}' failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", default="256,4,8", help="d_model,n_layers,n_heads")
    ap.add_argument("--teacher", default=None, help="d_model,n_layers,n_heads: KD steps from this teacher")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per child")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--train-mb", type=float, default=2.0)
    ap.add_argument("--corpus", default=None, help="default: ../shared/corpus, else a synthetic one")
    ap.add_argument("--prepared", default=str(Path(tempfile.gettempdir()) / "bootdistill-bench-prepared"))
    ap.add_argument("--_variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_teacher", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.device = "cpu"
    torch.set_num_threads(args.threads)
    if args._variant:
        print(json.dumps(child(args)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_malloc_") as t:
        args.corpus = str(args.corpus or corpus_dir(Path(t)))
        teacher = make_teacher(args, Path(t)) if args.teacher else None
        print(f"{cpu_model()}, {args.threads} thread(s), student {args.student}"
              f"{f', KD from teacher {args.teacher}' if teacher else ', classical'}, {args.batch}x{args.context}, "
              f"{args.dtype}; {args.rounds} rounds x {args.steps} steps", flush=True)
        rounds = []
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            res = {v: run_child(args, v, teacher) for v in order}
            rounds.append(res)
            print("  round " + str(r) + ": " + "; ".join(
                f"{v}: {m['faults']:.0f} faults, user {m['user']:.2f} s, sys {m['sys']:.2f} s, wall {m['wall']:.2f} s"
                for v, m in res.items()), flush=True)
    med = statistics.median
    print(f"\nper step (medians)      {'faults':>8} {'user s':>8} {'sys s':>8} {'wall s':>8} {'sys share':>10}")
    for v in VARIANTS:
        m = {k: med(r[v][k] for r in rounds) for k in ("faults", "user", "sys", "wall")}
        print(f"  {v:<22}{m['faults']:>8.0f} {m['user']:>8.2f} {m['sys']:>8.2f} {m['wall']:>8.2f} "
              f"{100 * m['sys'] / (m['user'] + m['sys']):>9.1f}%")
    for k in ("wall", "user", "sys"):
        ratio = med(r["glibc default"][k] / max(r["kept"][k], 1e-9) for r in rounds)
        print(f"glibc default / kept, {k} time: {ratio:.2f}x (median of per-round ratios)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
