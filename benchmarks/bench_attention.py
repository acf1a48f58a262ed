"""Causal attention, forward + backward and forward alone: SDPA (flash on CPU) against explicit matmul attention.

Sets `model.CPU_MATMUL_ATTENTION_MAX_T`: the longest context at which the model trains with matmul attention on
CPU (forward + backward); a forward alone (teacher, evaluation) always takes SDPA, the last column says why.
Rounds alternate the order of the two and the table shows the median of per-round time ratios.

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


def median_ratio(q, k, v, steps: int, repeats: int, backward: bool) -> tuple[float, float, float]:
    """(SDPA s, matmul s, median of per-round SDPA/matmul), the order flipping each round."""
    times = {"sdpa": [], "matmul": []}
    for fn in (sdpa, matmul_attention):
        step_seconds(fn, q, k, v, 1, backward)  # warm-up
    for r in range(repeats):
        order = [("sdpa", sdpa), ("matmul", matmul_attention)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            times[name].append(step_seconds(fn, q, k, v, steps, backward))
    ratio = statistics.median(a / b for a, b in zip(times["sdpa"], times["matmul"]))
    return statistics.median(times["sdpa"]), statistics.median(times["matmul"]), ratio


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


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
    print(f"{'B x H x T x D':<18}{'SDPA ms':>9}{'matmul ms':>11}{'SDPA / matmul':>15}{'forward only':>14}")
    for spec in args.shapes.split(","):
        B, H, T, D = (int(x) for x in spec.split("x"))
        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(B, H, T, D, generator=gen).to(dtype).requires_grad_() for _ in range(3))
        # same numbers from both (bf16 rounding apart): a benchmark of two different things would be worthless
        torch.testing.assert_close(matmul_attention(q, k, v), sdpa(q, k, v), atol=3e-2, rtol=3e-2)
        t_sdpa, t_matmul, ratio = median_ratio(q, k, v, args.steps, args.repeats, backward=True)
        fwd_ratio = median_ratio(q, k, v, args.steps, args.repeats, backward=False)[2]
        print(f"{spec:<18}{1e3 * t_sdpa:>9.1f}{1e3 * t_matmul:>11.1f}{ratio:>14.2f}x{fwd_ratio:>13.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
