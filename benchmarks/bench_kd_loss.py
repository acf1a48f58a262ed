"""KD loss cost on this CPU: naive (plain autograd, fp32 softmaxes) vs fused (bootdistill.distill.losses).

Loss level: fwd+bwd of CE alone and of CE + KD (normalized combine, paper eq. 1-2) on bf16 logits as the
LM head produces them under CPU bf16 autocast, default N = 16 x 256 tokens, V = 5000, τ = 2.
Time is the best of --reps runs (wall and process CPU); peak memory is the process's high-water RSS during one fwd+bwd, measured
in a fresh subprocess per variant (VmHWM reset through /proc/self/clear_refs), minus the RSS before it.

--step adds whole training steps (student 7.7M / teacher 1.5M GPTs, fwd+bwd, no optimizer) and compares
KD step / classical step with the ideal FLOP ratio (6 N_S + 2 N_T) / (6 N_S). There ce_and_kd runs with
reuse_teacher_logits=True (the teacher's logits are a fresh temporary each step); at loss level it does not,
since the same teacher logits are reused across repetitions.

    python benchmarks/bench_kd_loss.py [--tokens 4096] [--vocab 5000] [--reps 5] [--step] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from bootdistill.distill.losses import ce_and_kd, combine, kd_loss, masked_mean

# name: (CE implementation, KD implementation or None)
VARIANTS = {
    "ce": ("torch", None),  # classical step as the trainer writes it: F.cross_entropy on fp32 logits
    "ce+kl_naive": ("torch", "naive"),  # plain KL: fp32 log-softmax of both sides, F.kl_div
    "ce+kl_fused": ("torch", "fused"),  # same CE, KD through kd_loss("kl") (fused autograd Function)
    "ce_fused": ("fused", None),  # CE through ce_and_kd
    "ce+kl_all_fused": ("fused", "fused"),  # CE and KD in one pass: ce_and_kd
}


def loss_fn(name, zs, zt, y, tau, reuse=False):
    ce_impl, kd_impl = VARIANTS[name]
    if ce_impl == "fused":
        out = ce_and_kd(zs, y, zt if kd_impl else None, "kl", tau, reuse_teacher_logits=reuse)
        ce, kd = masked_mean(out.ce), (masked_mean(out.kd) if kd_impl else None)
    else:
        ce = F.cross_entropy(zs.float(), y)
        kd = None
        if kd_impl == "naive":
            ls = F.log_softmax(zs.float() / tau, -1)
            lt = F.log_softmax(zt.float() / tau, -1)
            kd = F.kl_div(ls, lt, log_target=True, reduction="batchmean") * tau**2
        elif kd_impl == "fused":
            kd = kd_loss("kl", zs, zt, tau).mean()
    return combine(ce, kd, 1.0 if kd is not None else 0.0, "normalized")


def run_variant(name, zs, zt, y, tau):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(name, zs, zt, y, tau)
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


def time_interleaved(fns: dict, reps: int) -> dict:
    """Best-of-reps (wall ms, process CPU ms) per function, round-robin so load bursts on the shared CPU hit all
    alike. CPU time is the load-insensitive figure at 1 thread (with more, it includes OpenMP spin-waits)."""
    best = {k: (float("inf"), float("inf")) for k in fns}
    for f in fns.values():
        f()  # warm-up
    for _ in range(reps):
        for k, f in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            wall, cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
            best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
    return best


def loss_level(args):
    n, v, tau = args.tokens, args.vocab, args.temperature
    zs, zt, y = make_inputs(n, v)
    logits_mb = n * v * 2 / 2**20
    print(f"loss level: N={n} tokens, V={v}, tau={tau}, bf16 logits ({logits_mb:.0f} MB each)")
    times = time_interleaved({k: (lambda k=k: run_variant(k, zs, zt, y, tau)) for k in VARIANTS}, args.reps)
    res = {}
    for name, (ms, cpu) in times.items():
        res[name] = (ms, cpu, _child(args, "--_mem", name))
    print(f"{'variant':<18}{'wall ms':>9}{'cpu ms':>9}{'peak +MB':>10}")
    for name, (ms, cpu, mb) in res.items():
        print(f"{name:<18}{ms:>9.1f}{cpu:>9.1f}{mb:>10.0f}")
    for kd, ce in (("ce+kl_naive", "ce"), ("ce+kl_fused", "ce"), ("ce+kl_all_fused", "ce_fused"),
                   ("ce+kl_all_fused", "ce")):
        (t1, c1, m1), (t0, c0, m0) = res[kd], res[ce]
        print(f"{kd:>16} vs {ce:<9}: KD adds {t1 - t0:6.1f} ms wall ({t1 / t0:.2f}x), {c1 - c0:6.1f} ms cpu, "
              f"{m1 - m0:+5.0f} MB peak ({(m1 - m0) / logits_mb:+.1f} bf16 logits tensors)")
    return res


def make_step(tokens, v, tau):
    """A closure running one student training step (fwd+bwd, no optimizer) of a given variant."""
    from bootdistill.model import GPT
    from bootdistill.shape import ModelShape

    torch.manual_seed(0)
    ctx = 256
    student = GPT(ModelShape(v, 256, 8, 8, ctx, 0.0))
    teacher = GPT(ModelShape(v, 128, 4, 8, ctx, 0.0)).eval()
    x = torch.randint(0, v, (tokens // ctx, ctx))
    y = torch.randint(0, v, (x.numel(),))

    def step(name):
        zt = None
        if VARIANTS[name][1]:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                zt = teacher(x).reshape(-1, v)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            zs = student(x).reshape(-1, v)
            loss = loss_fn(name, zs, zt, y, tau, reuse=True)  # the teacher's logits are a per-step temporary
        loss.backward()
        student.zero_grad(set_to_none=True)

    return step, student.num_params(), teacher.num_params(), x.shape


def step_level(args):
    step, ns, nt, shape = make_step(args.tokens, args.vocab, args.temperature)
    ideal = (6 * ns + 2 * nt) / (6 * ns)
    print(f"\nstep level (fwd+bwd, no optimizer): student {ns / 1e6:.2f}M, teacher {nt / 1e6:.2f}M params, "
          f"batch {shape[0]}x{shape[1]}; ideal KD/classical FLOP ratio {ideal:.3f}, "
          f"target <= 1.05 x ideal = {1.05 * ideal:.3f}")
    times = time_interleaved({k: (lambda k=k: step(k)) for k in VARIANTS}, args.step_reps)
    mem = {k: _child(args, "--_stepmem", k) for k in VARIANTS}
    print(f"{'variant':<18}{'wall ms':>9}{'cpu ms':>9}{'peak +MB':>10}")
    for name, (ms, cpu) in times.items():
        print(f"{name:<18}{ms:>9.0f}{cpu:>9.0f}{mem[name]:>10.0f}")
    for kd, ce in (("ce+kl_naive", "ce"), ("ce+kl_fused", "ce"), ("ce+kl_all_fused", "ce_fused"),
                   ("ce+kl_all_fused", "ce")):
        r, rc = times[kd][0] / times[ce][0], times[kd][1] / times[ce][1]
        print(f"{kd:>16} / {ce:<9}: wall {r:.3f} = {r / ideal:.3f} x ideal, cpu {rc:.3f} = {rc / ideal:.3f} x ideal, "
              f"peak {mem[kd] - mem[ce]:+.0f} MB")
    return times, mem


def _child(args, flag, name):
    out = subprocess.run([sys.executable, __file__, flag, name, "--tokens", str(args.tokens), "--vocab",
                          str(args.vocab), "--temperature", str(args.temperature)] + (["--threads", str(args.threads)] if args.threads else []),
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def peak_extra_mb(fn):
    """Peak extra RSS (MB) of fn() after a warm-up call: high-water mark reset through /proc/self/clear_refs."""
    fn()
    base = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    fn()
    return (_rss_kb("VmHWM") - base) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16 * 256)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--step", action="store_true", help="also time whole student/teacher training steps")
    ap.add_argument("--step-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--_mem", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_stepmem", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._mem:
        zs, zt, y = make_inputs(args.tokens, args.vocab)
        print(json.dumps(peak_extra_mb(lambda: run_variant(args._mem, zs, zt, y, args.temperature))))
        return
    if args._stepmem:
        step = make_step(args.tokens, args.vocab, args.temperature)[0]
        print(json.dumps(peak_extra_mb(lambda: step(args._stepmem))))
        return
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, malloc env {malloc or 'default'}")
    loss_level(args)
    if args.step:
        step_level(args)


if __name__ == "__main__":
    main()
