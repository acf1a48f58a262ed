"""Training throughput and MFU per preset, fp32 vs bf16 autocast, through the real `Trainer.train_step()`.

One step = one micro-batch forward/backward + grad clip + AdamW (batch_tokens = micro_batch x context).
MFU = exact training FLOPs/s (`flops_per_token(shape, training=True, exact=True)` x tokens/s) over a peak:
on CPU the square-matmul rate of the SAME dtype and thread count measured in the same round, just before and
just after the variant's steps (mean of the two)
(`measure_matmul_peak`), on CUDA the published peak (`compute.peak_flops`). The CPU may be shared with other
jobs, so each round times every variant's peak and steps back to back (order alternating) and the table
shows medians of per-round figures. A variant is a dtype plus what-if changes (`apply_mods`), e.g.
`bf16+t1+flashattn`, to measure a suggested change before making it.

    python benchmarks/bench_train.py [--quick] [--presets 5M,10M] [--dtypes fp32,bf16] [--context 256]
    python benchmarks/bench_train.py --presets 5M --dtypes bf16+t1,bf16+t1+flashattn+fusedadam
    python benchmarks/bench_train.py --presets 5M --dtypes bf16+t1,plain-bf16+t1   # ours vs a plain GPT
    python benchmarks/bench_train.py --profile 5M --dtypes bf16+t1     # torch.profiler top ops of one step
    python benchmarks/bench_train.py --device cuda --presets 30M,70M,150M --dtypes bf16,bf16+compile --micro 32
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bootdistill.compute import flops_per_token, measure_matmul_peak, peak_flops
from bootdistill.config import load_config
from bootdistill.shape import PRESETS, count_params
from bootdistill.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_gpt import PlainGPTStepper  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO.parent / "shared" / "corpus"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
WORDS = ("the of and in to a was is for on as by with he that at from his it an were are which this also be first "
         "city river school war album song game team season church film born north south later new two").split()


def corpus_dir(tmp: Path) -> Path:
    """The shared Wikipedia corpus, or (no checkout beside us) a synthetic one in WikiText layout."""
    if SHARED_CORPUS.is_dir():
        return SHARED_CORPUS
    rng = random.Random(0)
    root = tmp / "corpus"
    root.mkdir()
    for name, n in (("wiki.train.raw", 2000), ("wiki.valid.raw", 60), ("wiki.test.raw", 60)):
        text = (f" \n = Article {a} = \n \n {' '.join(rng.choice(WORDS) for _ in range(400))} . \n" for a in range(n))
        (root / name).write_text("".join(text))
    return root


def make_trainer(args, tmp: Path, preset: str, dtype: str) -> Trainer:
    ctx = args.context or PRESETS[preset].context
    over = {  # batch_tokens = one micro-batch, so a step is one forward/backward
        "data.corpus": str(args.corpus), "data.max_train_mb": args.train_mb, "data.vocab_size": args.vocab,
        "data.prepared_dir": str(args.prepared), "model.preset": preset, "model.context": ctx,
        "train.micro_batch": args.micro, "train.batch_tokens": args.micro * ctx,
        "train.precision": dtype, "train.device": args.device, "train.max_steps": 10**6,
        "train.total_steps": 10**6, "train.warmup_steps": 10, "train.eval_sequences": args.micro, "log.progress": False,
        "log.tensorboard": False, "out_dir": str(Path(tempfile.mkdtemp(dir=tmp)) / "run"),
    }
    return Trainer(load_config(overrides=[f"{k}={v}" for k, v in over.items()]))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_steps(tr: Trainer, n: int, device: str) -> tuple[float, float]:
    """(wall, process CPU) seconds per step over n consecutive steps (train_step's .item() syncs each one).

    CPU time is what the steps really got on a shared machine: with one thread it does not count the time
    the process waited for a core, so rates per CPU-second are the contention-free figures."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        tr.train_step()
    sync(device)
    return (time.perf_counter() - w0) / n, (time.process_time() - c0) / n


def peak(dtype: torch.dtype, args) -> tuple[float, float]:
    """(per wall second, per CPU second) FLOP rate of a square matmul: compute.measure_matmul_peak's probe,
    timed on both clocks; on CUDA the published peak (compute.peak_flops) for both."""
    if args.device.startswith("cuda"):
        p = peak_flops(torch.device(args.device), dtype)
        return p, p
    measure_matmul_peak(dtype, "cpu", size=args.peak_size, seconds=0.01)  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    rate = measure_matmul_peak(dtype, "cpu", size=args.peak_size, seconds=args.peak_seconds)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return rate, rate * wall / max(cpu, 1e-9)  # same FLOPs, counted against CPU seconds


MODS = ("sdpa", "flashattn", "fusedadam", "foreach", "compile")  # what apply_mods knows


def apply_mods(tr: Trainer, mods: set[str]) -> None:
    """What-if changes on a built trainer (variant suffixes), to measure a suggestion before making it."""
    for b in tr.model.blocks:
        if "sdpa" in mods:  # SDPA at every context (the default uses matmul attention up to 256 tokens on CPU)
            b.attn.cpu_matmul_max_t = 0
        if "flashattn" in mods:  # no dropout on attention weights: SDPA can use its fused (flash) CPU kernel
            b.attn.dropout = 0.0
    if "compile" in mods:  # what train.compile=true does (regional: each block)
        from bootdistill.runtime.accel import check_compile, compile_model

        check_compile(tr.device)
        tr.forward = compile_model(tr.model)
    for g in tr.optimizer.param_groups:
        if "fusedadam" in mods:
            g["fused"] = True
        if "foreach" in mods:
            g["foreach"] = True


def parse_variant(spec: str, default_threads: int) -> dict:
    """'bf16+t1+flashattn' -> dtype bf16, 1 thread, mods {flashattn}; 'plain-bf16+t1': the reference GPT."""
    dtype, *mods = spec.split("+")
    plain = dtype.startswith("plain-")
    threads = next((int(m[1:]) for m in mods if m[:1] == "t" and m[1:].isdigit()), default_threads)
    return {"name": spec, "dtype": dtype.removeprefix("plain-"), "plain": plain, "threads": threads,
            "mods": {m for m in mods if not m[1:].isdigit()}}


def bench_preset(args, tmp: Path, preset: str) -> list[dict]:
    variants = [parse_variant(v, args.threads) for v in args.variants]
    trainers, shape = {}, None
    for v in sorted(variants, key=lambda v: v["plain"]):  # ours first: the plain GPT copies our shape
        if v["plain"]:
            trainers[v["name"]] = tr = PlainGPTStepper(shape, args.micro, DTYPES[v["dtype"]] if v["dtype"] != "fp32"
                                                       else None, args.device)
        else:
            trainers[v["name"]] = tr = make_trainer(args, tmp, preset, v["dtype"])
            apply_mods(tr, v["mods"])
            shape = tr.shape
        torch.set_num_threads(v["threads"])
        timed_steps(tr, 2, args.device)  # warm-up: allocator, oneDNN kernel selection, AdamW state
    fpt = flops_per_token(shape, training=True, exact=True)
    tokens = args.micro * shape.context
    per = {v["name"]: {k: [] for k in ("tps", "peak", "mfu", "cpu_mfu", "speedup", "cpu_speedup")} for v in variants}
    for r in range(args.repeats):
        sec = {}
        for v in variants if r % 2 == 0 else variants[::-1]:  # alternate who goes first
            torch.set_num_threads(v["threads"])  # the peak probe runs with the variant's own thread count
            before = peak(DTYPES[v["dtype"]], args)
            sec[v["name"]] = wall, cpu = timed_steps(trainers[v["name"]], args.steps, args.device)
            after = peak(DTYPES[v["dtype"]], args)  # probes on both sides: a CPU whose speed drifts biases one
            p, p_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            row = per[v["name"]]
            row["tps"].append(tokens / wall)
            row["peak"].append(p)
            row["mfu"].append(tokens * fpt / wall / p)
            row["cpu_mfu"].append(tokens * fpt / cpu / p_cpu)
        for v in variants:  # per-round ratios against the first variant: both timed seconds apart
            per[v["name"]]["speedup"].append(sec[variants[0]["name"]][0] / sec[v["name"]][0])
            per[v["name"]]["cpu_speedup"].append(sec[variants[0]["name"]][1] / sec[v["name"]][1])
    torch.set_num_threads(args.threads)
    rows = []
    for v in variants:
        med = {k: statistics.median(x) for k, x in per[v["name"]].items()}
        rows.append({"preset": preset, "params": count_params(shape)["total"], "context": shape.context,
                     "micro": args.micro, "variant": v["name"], "threads": v["threads"],
                     "tokens_per_s": med["tps"], "achieved_gflops": med["tps"] * fpt / 1e9,
                     "peak_gflops": med["peak"] / 1e9, "mfu": med["mfu"], "cpu_mfu": med["cpu_mfu"],
                     "speedup_vs_first": med["speedup"], "cpu_speedup_vs_first": med["cpu_speedup"]})
        if not v["plain"]:
            trainers[v["name"]].logger.close()
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'preset':<7}{'params':>8}{'ctx':>6}  {'variant':<30}{'tok/s':>7}{'GFLOP/s':>9}{'peak':>7}{'MFU':>7}"
          f"{'cpuMFU':>8}  speedup vs {rows[0]['variant']} (wall, cpu)")
    for r in rows:
        print(f"{r['preset']:<7}{r['params'] / 1e6:>7.2f}M{r['context']:>6}  {r['variant']:<30}"
              f"{r['tokens_per_s']:>7.0f}"
              f"{r['achieved_gflops']:>9.1f}{r['peak_gflops']:>7.1f}{100 * r['mfu']:>6.1f}%{100 * r['cpu_mfu']:>7.1f}%"
              f"  {r['speedup_vs_first']:>5.2f}x {r['cpu_speedup_vs_first']:>5.2f}x")


def profile(args, tmp: Path, preset: str) -> None:
    """Where one step of the last variant spends its CPU time: top ops by self time."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    v = parse_variant(args.variants[-1], args.threads)
    tr = make_trainer(args, tmp, preset, v["dtype"])
    apply_mods(tr, v["mods"])
    torch.set_num_threads(v["threads"])
    timed_steps(tr, 2, args.device)
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        timed_steps(tr, args.steps, args.device)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(events.table(sort_by="self_cpu_time_total", row_limit=25))
    sdpa = sum(e.cpu_time_total for e in events if e.key == "aten::scaled_dot_product_attention")
    print(f"{preset} {v['name']}: {total / 1e3 / args.steps:.0f} ms/step under the profiler, "
          f"attention (SDPA fwd) {100 * sdpa / total:.0f}% of it")
    tr.logger.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default=None, help="default 1M,2M,5M,10M,17M,30M (--quick: 1M,5M)")
    ap.add_argument("--dtypes", default="fp32,bf16",
                    help="variants: fp32|bf16, or plain-fp32|plain-bf16 (transformers' GPT-2 of the same shape, "
                         "trained the textbook way), optionally +tN (threads) +sdpa +flashattn +fusedadam +foreach +compile")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the table shows medians")
    ap.add_argument("--micro", type=int, default=4, help="sequences per step")
    ap.add_argument("--context", type=int, default=None, help="shorter context than the preset's")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (on CUDA, MFU is against the published bf16 peak)")
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--train-mb", type=float, default=2.0)
    ap.add_argument("--corpus", default=None, help="default: ../shared/corpus, else a synthetic one")
    ap.add_argument("--prepared", default=str(Path(tempfile.gettempdir()) / "bootdistill-bench-prepared"),
                    help="prepared-data cache (reused across runs)")
    ap.add_argument("--peak-size", type=int, default=2048, help="square matmul size of the CPU peak probe")
    ap.add_argument("--peak-seconds", type=float, default=0.4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="presets 1M,5M, context 256, 2 steps x 3 rounds")
    ap.add_argument("--profile", default=None, metavar="PRESET", help="profile one step of PRESET instead")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    if args.quick:
        args.presets, args.context, args.steps, args.repeats = args.presets or "1M,5M", args.context or 256, 2, 3
    args.presets = args.presets or "1M,2M,5M,10M,17M,30M"
    args.variants = [d for d in args.dtypes.split(",") if d]
    if all(v.startswith("plain-") for v in args.variants) or (args.profile and args.variants[-1].startswith("plain-")):
        ap.error("--dtypes needs one of our variants (fp32|bf16...) besides plain-*; --profile profiles ours only")
    for v in (parse_variant(spec, 1) for spec in args.variants):
        if v["dtype"] not in DTYPES:
            ap.error(f"--dtypes: '{v['name']}' has an unknown dtype '{v['dtype']}' (fp32 or bf16)")
        wrong = v["mods"] if v["plain"] else v["mods"] - set(MODS)  # the plain GPT is textbook: no what-ifs
        if wrong:
            ap.error(f"--dtypes: '{v['name']}' cannot take +{' +'.join(sorted(wrong))}; "
                     + ("plain-* variants take only +tN" if v["plain"] else f"known: +tN +{' +'.join(MODS)}"))
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as t:
        tmp = Path(t)
        args.corpus = args.corpus or corpus_dir(tmp)
        print(f"device {args.device}, {args.threads} threads, micro-batch {args.micro}, {args.steps} steps x "
              f"{args.repeats} rounds, peak probe {args.peak_size}^2 matmul, load average {os.getloadavg()[0]:.1f}",
              flush=True)
        if args.profile:
            profile(args, tmp, args.profile)
            return 0
        rows = []
        for preset in args.presets.split(","):
            rows += bench_preset(args, tmp, preset)
            print_table(rows[-len(args.variants):])
            sys.stdout.flush()
    print("\nall presets: medians over rounds; MFU = achieved / same-round matmul peak of the same dtype and threads,\n"
          "on wall-clock time (MFU) and on process CPU time (cpuMFU: contention-free when single-threaded)")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
