"""KD step vs classical step through the real `Trainer`: time ratio against the ideal FLOP ratio, and peak memory.

Reference setup (the issue's): student d=256 L=8 (7.7M) and teacher d=128 L=4 (1.5M), context 256, vocab 5000,
batch 16 x 256 in one micro-batch, bf16 autocast. The teacher is a checkpoint trained for one step (its weights
do not matter for speed). Ideal ratio = (6 N_S + 2 N_T) / (6 N_S) (6N proxy; the exact-FLOPs ratio, attention
and LM head included, is printed too). Target: measured <= 1.05 x ideal.
Time: the KD and classical trainers step alternately (order flipping each round) and the ratio is the median
of per-round ratios, so a shared, noisy CPU moves both sides alike. The teacher forward alone is timed in the
same rounds to split the KD overhead into "teacher" and "KD loss + rest".
Memory: each variant runs in a fresh subprocess: one warm-up step (AdamW state), then the peak over one step
(CPU: VmHWM after resetting it, minus RSS before; CUDA: max_memory_allocated). Compared with classical +
teacher weights + one logits tensor (B*T*V in the autocast dtype).

    python benchmarks/bench_kd_step.py [--quick] [--threads 1] [--repeats 9] [--student 256,8,8] [--teacher 128,4,8]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import apply_mods, corpus_dir, sync, timed_steps  # noqa: E402

from bootdistill.compute import flops_per_token  # noqa: E402
from bootdistill.config import load_config  # noqa: E402
from bootdistill.shape import count_params  # noqa: E402
from bootdistill.train.trainer import Trainer  # noqa: E402


def build(args, out: Path, shape: str, policy: str = "classical", teacher: str | None = None) -> Trainer:
    d, n_layers, heads = (int(v) for v in shape.split(","))
    over = {
        "data.corpus": args.corpus, "data.max_train_mb": args.train_mb, "data.vocab_size": args.vocab,
        "data.prepared_dir": args.prepared, "model.d_model": d, "model.n_layers": n_layers, "model.n_heads": heads,
        "model.context": args.context, "train.micro_batch": args.batch, "train.batch_tokens": args.batch * args.context,
        "train.lr_max": 1e-3, "train.precision": args.dtype, "train.device": args.device, "train.max_steps": 10**6,
        "train.total_steps": 10**6, "train.warmup_steps": 10, "train.eval_sequences": args.batch, "log.progress": False,
        "log.tensorboard": False, "distill.policy": policy, "out_dir": str(out),
    }
    if teacher:
        over["distill.teacher"] = teacher
    return Trainer(load_config(overrides=[f"{k}={v}" for k, v in over.items()]))


def patch(tr: Trainer, args) -> None:
    """The what-ifs asked for: bench_train's mods (flashattn, fusedadam, foreach)."""
    apply_mods(tr, set(args.mods.split(",")) - {""})


def make_teacher(args, tmp: Path) -> str:
    tr = build(args, tmp / "teacher", args.teacher)
    tr.train_step()
    ckpt = tr.save()  # a checkpoint dir is a valid teacher without a finished run
    tr.logger.close()
    tr.lock.release()
    return str(ckpt)


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def child_memory(args) -> dict:
    """Runs in a fresh process: resident size and step peak of one variant, in MiB."""
    cuda = args.device.startswith("cuda")
    base = _status_kb("VmRSS")
    with tempfile.TemporaryDirectory() as t:
        kd = args._mem == "kd"
        tr = build(args, Path(t) / "run", args.student, "kd" if kd else "classical", args._teacher if kd else None)
        patch(tr, args)
        tr.train_step()  # warm-up: AdamW state, allocator pools
        gc.collect()
        if cuda:
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            tr.train_step()
            return {"resident": before / 2**20, "peak": torch.cuda.max_memory_allocated() / 2**20}
        try:  # hand freed heap pages back, so the RSS before the step is live data, not malloc's cache
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        before = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        tr.train_step()
        return {"resident": (before - base) / 1024, "peak": (_status_kb("VmHWM") - base) / 1024}


def measure_memory(args, teacher: str) -> dict:
    out = {}
    for variant in ("classical", "kd"):
        opts = {"student": args.student, "teacher": args.teacher, "context": args.context, "batch": args.batch,
                "vocab": args.vocab, "dtype": args.dtype, "device": args.device, "prepared": args.prepared,
                "train-mb": args.train_mb, "threads": args.threads, "corpus": args.corpus}
        cmd = [sys.executable, __file__, "--_mem", variant, "--_teacher", teacher, f"--mods={args.mods}",
               *(f"--{k}={v}" for k, v in opts.items())]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"memory child '{variant}' failed:\n{res.stderr[-2000:]}")
        out[variant] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", default="256,8,8", help="d_model,n_layers,n_heads")
    ap.add_argument("--teacher", default="128,4,8", help="d_model,n_layers,n_heads")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step (one micro-batch)")
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--dtype", default="bf16", help="bf16 | fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1, help="timed steps per variant per round")
    ap.add_argument("--repeats", type=int, default=9, help="interleaved rounds; ratios are medians")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--train-mb", type=float, default=2.0)
    ap.add_argument("--corpus", default=None, help="default: ../shared/corpus, else a synthetic one")
    ap.add_argument("--prepared", default=str(Path(tempfile.gettempdir()) / "bootdistill-bench-prepared"))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--mods", default="", help="what-ifs of bench_train for both students, e.g. flashattn,fusedadam")
    ap.add_argument("--quick", action="store_true", help="5 rounds of 1 step, batch 8")
    ap.add_argument("--json", default=None)
    ap.add_argument("--_mem", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_teacher", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._mem:
        print(json.dumps(child_memory(args)))
        return 0
    if args.quick:
        args.repeats, args.steps, args.batch = 5, 1, 8
    with tempfile.TemporaryDirectory(prefix="bench_kd_step_") as t:
        tmp = Path(t)
        args.corpus = str(args.corpus or corpus_dir(tmp))
        teacher = make_teacher(args, tmp)
        cl = build(args, tmp / "classical", args.student)
        kd = build(args, tmp / "kd", args.student, "kd", teacher)
        for tr in (cl, kd):
            patch(tr, args)
        s, te = cl.shape, kd.teacher.shape
        ns, nt = count_params(s)["total"], count_params(te)["total"]
        ideal = (6 * ns + 2 * nt) / (6 * ns)
        exact = 1 + flops_per_token(te, training=False, exact=True) / flops_per_token(s, training=True, exact=True)
        print(f"what-ifs: {args.mods or '-'}")
        print(f"student {ns / 1e6:.2f}M, teacher {nt / 1e6:.2f}M ({nt / ns:.2f}x), batch {args.batch}x{args.context}, "
              f"{args.dtype}, {args.device}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; "
              f"ideal ratio {ideal:.3f} (exact FLOPs {exact:.3f}), target <= {1.05 * ideal:.3f}", flush=True)
        x, _ = cl.sampler.next_batch()
        x = x.to(kd.device)

        def teacher_fwd(kd_teacher=kd.teacher) -> tuple[float, float]:  # not a closure over `kd`: deleted below
            sync(args.device)
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                kd_teacher.logits(x)
            sync(args.device)
            return (time.perf_counter() - w0) / args.steps, (time.process_time() - c0) / args.steps

        for tr in (cl, kd):  # warm-up
            timed_steps(tr, 2, args.device)
        teacher_fwd()
        rounds = []  # per round: {"cl": (wall, cpu), "kd": ..., "te": ...} seconds
        for r in range(args.repeats):
            pair = [("cl", cl), ("kd", kd)] if r % 2 == 0 else [("kd", kd), ("cl", cl)]
            sec = {name: timed_steps(tr, args.steps, args.device) for name, tr in pair}
            sec["te"] = teacher_fwd()
            rounds.append(sec)
            print(f"  round {r}: classical {1e3 * sec['cl'][0]:.0f} ms, KD {1e3 * sec['kd'][0]:.0f} ms, ratio "
                  f"{sec['kd'][0] / sec['cl'][0]:.3f} (CPU time: {sec['kd'][1] / sec['cl'][1]:.3f})", flush=True)
        med = statistics.median
        result = {"n_student": ns, "n_teacher": nt, "ideal": ideal, "ideal_exact": exact}
        for c, clock in enumerate(("wall", "cpu")):  # CPU time: immune to waiting for a core when single-threaded
            ratio = med(r["kd"][c] / r["cl"][c] for r in rounds)
            teach = med(r["te"][c] / r["cl"][c] for r in rounds)
            ms = {k: 1e3 * med(r[k][c] for r in rounds) for k in ("cl", "kd", "te")}
            print(f"\n[{clock} time] classical {ms['cl']:.0f} ms, KD {ms['kd']:.0f} ms, teacher forward alone "
                  f"{ms['te']:.0f} ms (medians)\n  KD / classical = {ratio:.3f} vs ideal {ideal:.3f} -> "
                  f"{ratio / ideal:.3f} x ideal [target <= 1.05: {'met' if ratio <= 1.05 * ideal else 'MISSED'}]\n"
                  f"  KD overhead {100 * (ratio - 1):.1f}% of a classical step = teacher forward {100 * teach:.1f}% "
                  f"+ KD loss and the rest {100 * (ratio - 1 - teach):.1f}%")
            result[clock] = {"ratio": ratio, "ratio_vs_ideal": ratio / ideal, "teacher_share": teach,
                             "classical_ms": ms["cl"], "kd_ms": ms["kd"], "teacher_fwd_ms": ms["te"]}
        for tr in (cl, kd):
            tr.logger.close()
        del cl, kd, teacher_fwd
        gc.collect()
        if not args.no_memory:
            mem = measure_memory(args, teacher)
            el = 2 if args.dtype in ("bf16", "fp16") else 4
            logits_mb = args.batch * args.context * args.vocab * el / 2**20
            teacher_mb = nt * 4 / 2**20  # the teacher keeps fp32 weights; autocast casts them per forward
            predicted = mem["classical"]["peak"] + teacher_mb + logits_mb
            print(f"\nmemory, MiB above the process baseline: {'resident':>9}{'step peak':>11}{'step extra':>12}")
            for v in ("classical", "kd"):
                m = mem[v]
                print(f"  {v:<38}{m['resident']:>9.0f}{m['peak']:>11.0f}{m['peak'] - m['resident']:>12.0f}")
            print(f"  KD peak {mem['kd']['peak']:.0f} vs classical + teacher weights ({teacher_mb:.0f}) + one logits "
                  f"tensor ({logits_mb:.0f}) = {predicted:.0f}: {mem['kd']['peak'] / predicted:.2f}x the prediction; "
                  f"KD / classical peak {mem['kd']['peak'] / mem['classical']['peak']:.2f}x")
            result.update(memory=mem, predicted_kd_peak=predicted, logits_mb=logits_mb, teacher_mb=teacher_mb)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
