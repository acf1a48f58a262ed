"""Causal attention, forward + backward and forward alone: SDPA (flash on CPU) and the textbook matmul form (scores
scaled and masked as T x T tensors) against the model's matmul attention.

Sets `model.CPU_MATMUL_ATTENTION_MAX_T`: the longest context at which the model trains with matmul attention on
CPU (forward + backward); a forward alone (teacher, evaluation) always takes SDPA, the last column says why.
Rounds rotate the order of the three and the table shows the median of per-round time ratios.

    python benchmarks/bench_attention.py [--threads 1] [--dtype bf16] [--shapes 16x8x256x32,4x8x512x32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bootdistill.model import CPU_MATMUL_ATTENTION_MAX_T, matmul_attention


def step_seconds(fn, q, k, v, n: int, backward: bool = True) -> float:
    start = time.perf_counter()
    for _ in range(n):
        if backward:
            fn(q, k, v).sum().backward()
        else:
            with torch.no_grad():
                fn(q, k, v)
    return (time.perf_counter() - start) / n


def median_ratios(fns: dict, q, k, v, steps: int, repeats: int, backward: bool) -> tuple[dict, dict]:
    """({name: median s}, {name: median of per-round time / matmul time}), the order rotating each round."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        step_seconds(fn, q, k, v, 1, backward)  # warm-up
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(step_seconds(fns[name], q, k, v, steps, backward))
    ratios = {n: statistics.median(a / b for a, b in zip(times[n], times["matmul"])) for n in fns}
    return {n: statistics.median(t) for n, t in times.items()}, ratios


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def textbook(q, k, v):
    """The scores scaled and masked as T x T tensors: the form matmul_attention replaced (the scale on q and the mask
    as baddbmm's additive term save two T x T passes each way)."""
    T = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="16x8x256x32,8x8x512x32,4x8x1024x32,16x8x128x32",
                    help="batch x heads x tokens x head size, comma-separated")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    print(f"{torch.get_num_threads()} threads, {args.dtype}; the model trains with matmul attention on CPU up to "
          f"T = {CPU_MATMUL_ATTENTION_MAX_T}")
    print(f"{'B x H x T x D':<18}{'SDPA ms':>9}{'textbook ms':>13}{'matmul ms':>11}{'SDPA / matmul':>15}"
          f"{'textbook / matmul':>19}{'SDPA / matmul, forward only':>29}")
    fns = {"sdpa": sdpa, "textbook": textbook, "matmul": matmul_attention}
    for spec in args.shapes.split(","):
        B, H, T, D = (int(x) for x in spec.split("x"))
        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(B, H, T, D, generator=gen).to(dtype).requires_grad_() for _ in range(3))
        # same numbers from all (bf16 rounding apart): a benchmark of different things would be worthless
        for fn in (sdpa, textbook):
            torch.testing.assert_close(matmul_attention(q, k, v), fn(q, k, v), atol=3e-2, rtol=3e-2)
        t, ratio = median_ratios(fns, q, k, v, args.steps, args.repeats, backward=True)
        fwd = median_ratios(fns, q, k, v, args.steps, args.repeats, backward=False)[1]
        print(f"{spec:<18}{1e3 * t['sdpa']:>9.1f}{1e3 * t['textbook']:>13.1f}{1e3 * t['matmul']:>11.1f}"
              f"{ratio['sdpa']:>14.2f}x{ratio['textbook']:>18.2f}x{fwd['sdpa']:>28.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
