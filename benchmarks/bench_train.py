"""Training throughput and MFU per preset, fp32 vs bf16 autocast, through the real `Trainer.train_step()`.

One step = one micro-batch forward/backward + grad clip + AdamW (batch_tokens = micro_batch x context).
MFU = exact training FLOPs/s (`flops_per_token(shape, training=True, exact=True)` x tokens/s) over a peak:
on CPU the square-matmul rate of the SAME dtype measured in the same round (`measure_matmul_peak`), on CUDA
the published peak (`compute.peak_flops`). The CPU may be shared with other jobs, so every round times the
two peaks and the fp32 and bf16 steps back to back (order alternating) and the table reports medians over
rounds of per-round figures: ratios stay meaningful even when absolute rates drift.

    python benchmarks/bench_train.py [--quick] [--presets 5M,10M] [--dtypes fp32,bf16] [--context 256]
    python benchmarks/bench_train.py --profile 5M        # torch.profiler top ops of one bf16 step
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bootdistill.compute import flops_per_token, measure_matmul_peak, peak_flops
from bootdistill.config import load_config
from bootdistill.model import PRESETS, count_params
from bootdistill.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO.parent / "shared" / "corpus"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
WORDS = ("the of and in to a was is for on as by with he that at from his it an were are which this also be first "
         "city river school war album song game team season church film born north south later new two").split()


def corpus_dir(tmp: Path) -> Path:
    """The shared Wikipedia corpus, or (no checkout beside us) a synthetic one in WikiText layout."""
    if SHARED_CORPUS.is_dir():
        return SHARED_CORPUS
    import random

    rng = random.Random(0)
    root = tmp / "corpus"
    root.mkdir()
    for name, n in (("wiki.train.raw", 2000), ("wiki.valid.raw", 60), ("wiki.test.raw", 60)):
        arts = [f" \n = Article {a} = \n \n " + " ".join(rng.choice(WORDS) for _ in range(400)) + " . \n" for a in range(n)]
        (root / name).write_text("".join(arts))
    return root


def make_trainer(args, tmp: Path, preset: str, dtype: str, extra: list[str] = ()) -> Trainer:
    ctx = args.context
    over = {
        "data.corpus": str(args.corpus), "data.max_train_mb": args.train_mb, "data.vocab_size": args.vocab,
        "data.prepared_dir": str(args.prepared), "model.preset": preset, "train.micro_batch": args.micro,
        "train.precision": dtype, "train.device": args.device, "train.max_steps": 10**6,
        "train.total_steps": 10**6, "train.warmup_steps": 10, "train.eval_batches": 1, "log.progress": False,
        "log.tensorboard": False, "out_dir": str(Path(tempfile.mkdtemp(dir=tmp)) / "run"),
    }
    if ctx:
        over["model.context"] = ctx
    # batch_tokens = one micro-batch, so a step is one forward/backward
    over["train.batch_tokens"] = args.micro * (ctx or PRESETS[preset].context)
    cfg = load_config(overrides=[f"{k}={v}" for k, v in over.items()] + list(extra))
    return Trainer(cfg)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_steps(tr: Trainer, n: int, device: str) -> float:
    """Seconds per step, mean of n consecutive steps (the .item() in train_step syncs each one)."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        tr.train_step()
    sync(device)
    return (time.perf_counter() - t0) / n


def peak(dtype: torch.dtype, args) -> float:
    if args.device.startswith("cuda"):
        return peak_flops(torch.device(args.device), dtype)
    return measure_matmul_peak(dtype, "cpu", size=args.peak_size, seconds=args.peak_seconds)


def bench_preset(args, tmp: Path, preset: str) -> list[dict]:
    trainers = {d: make_trainer(args, tmp, preset, d) for d in args.dtypes}
    shape = next(iter(trainers.values())).shape
    fpt = flops_per_token(shape, training=True, exact=True)
    tokens = args.micro * shape.context
    for tr in trainers.values():  # warm-up: allocator, oneDNN kernel selection, AdamW state
        timed_steps(tr, 2, args.device)
    per = {d: {"tps": [], "achieved": [], "peak": [], "mfu": []} for d in args.dtypes}
    ratios = []
    for r in range(args.repeats):
        order = args.dtypes if r % 2 == 0 else args.dtypes[::-1]  # alternate who goes first
        sec = {}
        for d in order:
            p = peak(DTYPES[d], args)
            sec[d] = timed_steps(trainers[d], args.steps, args.device)
            tps = tokens / sec[d]
            per[d]["tps"].append(tps)
            per[d]["achieved"].append(tps * fpt)
            per[d]["peak"].append(p)
            per[d]["mfu"].append(tps * fpt / p)
        if "fp32" in sec and "bf16" in sec:
            ratios.append(sec["fp32"] / sec["bf16"])
    n = count_params(shape)["total"]
    rows = []
    for d in args.dtypes:
        med = {k: statistics.median(v) for k, v in per[d].items()}
        rows.append({"preset": preset, "params": n, "context": shape.context, "micro": args.micro, "dtype": d,
                     "tokens_per_s": med["tps"], "achieved_gflops": med["achieved"] / 1e9,
                     "peak_gflops": med["peak"] / 1e9, "mfu": med["mfu"],
                     "bf16_speedup": statistics.median(ratios) if ratios else None})
    for tr in trainers.values():
        tr.logger.close()
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'preset':<7}{'params':>8}{'ctx':>6}{'dtype':>6}{'tok/s':>9}{'GFLOP/s':>9}{'peak':>8}{'MFU':>7}{'bf16/fp32':>10}")
    for r in rows:
        sp = f"{r['bf16_speedup']:.2f}x" if r["bf16_speedup"] and r["dtype"] == "bf16" else ""
        print(f"{r['preset']:<7}{r['params'] / 1e6:>7.2f}M{r['context']:>6}{r['dtype']:>6}{r['tokens_per_s']:>9.0f}"
              f"{r['achieved_gflops']:>9.1f}{r['peak_gflops']:>8.1f}{100 * r['mfu']:>6.1f}%{sp:>10}")


def profile(args, tmp: Path, preset: str) -> None:
    """Where one bf16 step spends its CPU time: top ops by self time, and the share of the matmul family."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    dtype = args.dtypes[-1]
    tr = make_trainer(args, tmp, preset, dtype)
    timed_steps(tr, 3, args.device)
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        timed_steps(tr, args.steps, args.device)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(events.table(sort_by="self_cpu_time_total", row_limit=25))
    mm = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in ("mm", "linear", "matmul", "addmm")))
    print(f"{preset} {dtype}: matmul-family ops {100 * mm / total:.0f}% of self CPU time "
          f"({total / 1e3 / args.steps:.0f} ms/step under the profiler)")
    tr.logger.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="1M,2M,5M,10M,17M,30M")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the table shows medians")
    ap.add_argument("--micro", type=int, default=4, help="sequences per step")
    ap.add_argument("--context", type=int, default=None, help="shorter context than the preset's")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--train-mb", type=float, default=2.0)
    ap.add_argument("--corpus", default=None, help="default: ../shared/corpus, else a synthetic one")
    ap.add_argument("--prepared", default=str(Path(tempfile.gettempdir()) / "bootdistill-bench-prepared"),
                    help="prepared-data cache (reused across runs)")
    ap.add_argument("--peak-size", type=int, default=2048, help="square matmul size of the CPU peak probe")
    ap.add_argument("--peak-seconds", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="presets 1M,5M, context 256, 2 steps x 3 rounds")
    ap.add_argument("--profile", default=None, metavar="PRESET", help="profile one step of PRESET instead")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    if args.quick:
        args.presets, args.context, args.steps, args.repeats = "1M,5M", args.context or 256, 2, 3
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as t:
        tmp = Path(t)
        args.corpus = args.corpus or corpus_dir(tmp)
        print(f"device {args.device}, {torch.get_num_threads()} threads, micro-batch {args.micro}, "
              f"{args.steps} steps x {args.repeats} rounds, peak probe {args.peak_size}^2 matmul", flush=True)
        if args.profile:
            profile(args, tmp, args.profile)
            return 0
        rows = []
        for preset in args.presets.split(","):
            rows += bench_preset(args, tmp, preset)
            print_table(rows[-len(args.dtypes):])
            sys.stdout.flush()
    print("\nall presets (medians over rounds; MFU against the same-round matmul peak of the same dtype):")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
