"""KD loss cost on this CPU: naive (plain autograd, fp32 softmaxes) vs fused (bootdistill.distill.losses).

Loss level: fwd+bwd of CE alone and of CE + KD (normalized combine, paper eq. 1-2) on bf16 logits as the
LM head produces them under CPU bf16 autocast, default N = 16 x 256 tokens, V = 5000, τ = 2.
Time is the best of --reps runs; peak memory is the process's high-water RSS during one fwd+bwd, measured
in a fresh subprocess per variant (VmHWM reset through /proc/self/clear_refs), minus the RSS before it.

--step adds whole training steps (student 7.7M / teacher 1.5M GPTs, fwd+bwd, no optimizer) and compares
KD step / classical step with the ideal FLOP ratio (6 N_S + 2 N_T) / (6 N_S).

    python benchmarks/bench_kd_loss.py [--tokens 4096] [--vocab 5000] [--reps 5] [--step]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from bootdistill.distill.losses import ce_and_kd, combine, masked_mean

VARIANTS = ("ce_naive", "ce_kd_naive", "ce_fused", "ce_kd_fused")


def naive(zs, zt, y, tau, with_kd):
    ce = F.cross_entropy(zs, y)  # what a classical trainer writes (autocast runs it in fp32)
    if not with_kd:
        return ce
    ls = F.log_softmax(zs.float() / tau, -1)
    lt = F.log_softmax(zt.float() / tau, -1)
    kd = F.kl_div(ls, lt, log_target=True, reduction="batchmean") * tau**2
    return combine(ce, kd, 1.0, "normalized")


def fused(zs, zt, y, tau, with_kd):
    out = ce_and_kd(zs, y, zt if with_kd else None, "kl", tau)
    ce = masked_mean(out.ce)
    return combine(ce, masked_mean(out.kd) if with_kd else None, 1.0 if with_kd else 0.0, "normalized")


def run_variant(name, zs, zt, y, tau):
    fn = naive if name.endswith("naive") else fused
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fn(zs, zt, y, tau, "_kd_" in name)
    loss.backward()
    zs.grad = None


def make_inputs(n, v, seed=0):
    g = torch.Generator().manual_seed(seed)
    zs = (torch.randn(n, v, generator=g) * 2).to(torch.bfloat16).requires_grad_()
    zt = (torch.randn(n, v, generator=g) * 2).to(torch.bfloat16)
    y = torch.randint(0, v, (n,), generator=g)
    return zs, zt, y


def _rss_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def measure_memory(name, n, v, tau):
    """Child process: peak extra RSS (MB) of one fwd+bwd after a warm-up."""
    zs, zt, y = make_inputs(n, v)
    run_variant(name, zs, zt, y, tau)  # warm-up: allocator pools, lazy init
    base = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    run_variant(name, zs, zt, y, tau)
    return (_rss_kb("VmHWM") - base) / 1024


def time_it(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def loss_level(args):
    n, v, tau = args.tokens, args.vocab, args.temperature
    zs, zt, y = make_inputs(n, v)
    logits_mb = n * v * 2 / 2**20
    print(f"loss level: N={n} tokens, V={v}, tau={tau}, bf16 logits ({logits_mb:.0f} MB each), "
          f"{torch.get_num_threads()} threads")
    res = {}
    for name in VARIANTS:
        ms = time_it(lambda: run_variant(name, zs, zt, y, tau), args.reps)
        out = subprocess.run([sys.executable, __file__, "--_mem", name, "--tokens", str(n), "--vocab", str(v),
                              "--temperature", str(tau)], capture_output=True, text=True, check=True)
        res[name] = (ms, float(out.stdout.strip().splitlines()[-1]))
    print(f"{'variant':<14}{'fwd+bwd ms':>12}{'peak +MB':>10}")
    for name, (ms, mb) in res.items():
        print(f"{name:<14}{ms:>12.1f}{mb:>10.0f}")
    for kind in ("naive", "fused"):
        ce, kd = res[f"ce_{kind}"], res[f"ce_kd_{kind}"]
        print(f"{kind}: KD adds {kd[0] - ce[0]:.1f} ms ({kd[0] / ce[0]:.2f}x CE alone), "
              f"{kd[1] - ce[1]:+.0f} MB peak ({(kd[1] - ce[1]) / logits_mb:+.1f} logits tensors)")
    print(f"fused CE+KD vs naive CE alone: {res['ce_kd_fused'][0] / res['ce_naive'][0]:.2f}x time, "
          f"{res['ce_kd_fused'][1] - res['ce_naive'][1]:+.0f} MB")
    return res


def step_level(args):
    from bootdistill.model import GPT, ModelShape

    torch.manual_seed(0)
    ctx, bsz, v, tau = 256, args.tokens // 256, args.vocab, args.temperature
    student = GPT(ModelShape(v, 256, 8, 8, ctx, 0.0))
    teacher = GPT(ModelShape(v, 128, 4, 8, ctx, 0.0)).eval()
    ns, nt = student.num_params(), teacher.num_params()
    x = torch.randint(0, v, (bsz, ctx))
    y = torch.randint(0, v, (bsz * ctx,))

    def step(kind, with_kd):
        zt = None
        if with_kd:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                zt = teacher(x).reshape(-1, v)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            zs = student(x).reshape(-1, v)
            loss = (naive if kind == "naive" else fused)(zs, zt, y, tau, with_kd)
        loss.backward()
        student.zero_grad(set_to_none=True)

    ideal = (6 * ns + 2 * nt) / (6 * ns)
    print(f"\nstep level: student {ns / 1e6:.2f}M, teacher {nt / 1e6:.2f}M params, batch {bsz}x{ctx}, "
          f"ideal KD/classical FLOP ratio {ideal:.3f} (target <= {1.05 * ideal:.3f})")
    res = {}
    for kind in ("naive", "fused"):
        cl = time_it(lambda: step(kind, False), args.step_reps)
        kd = time_it(lambda: step(kind, True), args.step_reps)
        res[kind] = (cl, kd)
        print(f"{kind:<6} classical {cl:7.0f} ms   KD {kd:7.0f} ms   ratio {kd / cl:.3f}   "
              f"({kd / cl / ideal:.3f} x ideal)")
    print(f"fused KD step vs naive classical step: {res['fused'][1] / res['naive'][0]:.3f} "
          f"({res['fused'][1] / res['naive'][0] / ideal:.3f} x ideal)")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16 * 256)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--step", action="store_true", help="also time whole student/teacher training steps")
    ap.add_argument("--step-reps", type=int, default=3)
    ap.add_argument("--_mem", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._mem:
        print(json.dumps(measure_memory(args._mem, args.tokens, args.vocab, args.temperature)))
        return
    loss_level(args)
    if args.step:
        step_level(args)


if __name__ == "__main__":
    main()
