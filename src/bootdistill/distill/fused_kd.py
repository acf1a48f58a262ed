"""The fused CE + KD kernel: per-token cross-entropy, KL (or soft CE) to the teacher and the student's log Z in
one chunked pass over the logits (the trainer's hot path; `losses.ce_and_kd` and `losses.kd_loss` call it).

It computes p_τ − q (the KL gradient is τ (p_τ − q)) and p₁ − onehot (CE) during the forward and keeps them in
the logits' dtype (bf16 under autocast) for the backward: no full-vocabulary fp32 tensor is materialized and
the backward does no exp. On a CPU with several threads the row chunks go to single-threaded workers.
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from .truncation import keep_threshold, truncates

CHUNK_ELEMENTS = 1 << 19  # 2 MB of fp32 per buffer: stays in cache; fewer chunks would mean less Python overhead
CUDA_CHUNK_ELEMENTS = 1 << 26  # 256 MB of fp32 per buffer: on a GPU each chunk costs ~15 kernel launches, not cache


def compute_dtype(*ts: torch.Tensor | None) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in ts) else torch.float32


def _softmax_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    # out= variant: a fresh multi-MB output per chunk costs page faults comparable to the softmax itself here
    try:
        return torch.ops.aten._softmax.out(x, -1, False, out=out)
    except (AttributeError, RuntimeError):
        return out.copy_(torch.softmax(x, -1))


_POOL: tuple[ThreadPoolExecutor, int, int] | None = None  # (pool, workers, pid): a forked child needs its own


def _single_threaded_worker() -> None:
    torch.set_num_threads(1)  # this thread's OpenMP team size; the caller restores the process-wide settings


def _use_worker_pool(device: torch.device, threads: int, chunks: int) -> bool:
    """The pool is CPU machinery: on a GPU the work is kernels queued on one stream, and worker threads calling
    set_num_threads(1) would only fight over the launch queue."""
    return device.type == "cpu" and threads > 1 and chunks > 1


def _for_row_chunks(N: int, C: int, work: Callable[[int, int, dict], None], new_buffers: Callable[[], dict],
                    device: torch.device) -> None:
    """Run work(r0, r1, buffers) over row chunks.

    On CPU with several intra-op threads, chunks are spread over a pool of single-threaded workers instead of
    running each small op across an OpenMP team: one join per call rather than one barrier per op, which
    matters on a shared CPU where a descheduled team member stalls every op (measured 2-10x here).
    """
    global _POOL
    starts = list(range(0, N, C))
    threads = torch.get_num_threads()
    if not _use_worker_pool(device, threads, len(starts)):
        bufs = new_buffers()
        for r0 in starts:
            work(r0, min(N, r0 + C), bufs)
        return
    workers = min(threads, len(starts))
    if _POOL is None or _POOL[1:] != (threads, os.getpid()):
        pool = ThreadPoolExecutor(threads, thread_name_prefix="bootdistill-kd", initializer=_single_threaded_worker)
        _POOL = (pool, threads, os.getpid())
    free: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(workers):
        free.put(new_buffers())

    def task(r0):
        bufs = free.get()
        try:
            with torch.no_grad():  # grad mode is thread-local: workers start with it on
                work(r0, min(N, r0 + C), bufs)
        finally:
            free.put(bufs)

    try:
        list(_POOL[0].map(task, starts))
    finally:
        torch.set_num_threads(threads)  # a worker's set_num_threads(1) also lowers MKL's global count


class FusedCEKD(torch.autograd.Function):
    """Per-token CE, KL/soft-CE and log Z of the student in one chunked pass; gradients kept from the forward.

    Saved for backward, in the logits' dtype (bf16 under autocast): B = p₁ − onehot (CE and z-loss) and
    A = p_τ − q (KD). The backward is one multiply-add per element, written in place into B (or A), so a
    step holds at most these two logits-sized tensors instead of fp32 log-probabilities.
    All work happens on preallocated (rows, V) fp32 buffers with in-place ops.
    """

    @staticmethod
    def forward(ctx, zs, zt, labels, valid, tau, tau_t, top_p, top_k, want_ce, want_kd, soft_ce, want_z, chunk_rows,
                reuse_teacher):
        ctx.set_materialize_grads(False)
        N, V = zs.shape
        cd = compute_dtype(zs, zt)
        dev = zs.device
        grad_needed = ctx.needs_input_grad[0]
        need_b = grad_needed and (want_ce or want_z)
        need_a = grad_needed and want_kd
        ce = torch.zeros(N, dtype=cd, device=dev) if want_ce else None
        kd = torch.zeros(N, dtype=cd, device=dev) if want_kd else None
        lse1 = torch.zeros(N, dtype=cd, device=dev) if (want_z or want_ce) else None
        B = torch.empty_like(zs) if need_b else None
        A = None
        if need_a:  # each chunk of z_t is read before A's chunk is written, so A may take over z_t's memory
            reuse = reuse_teacher and zt.dtype == zs.dtype and zt.stride() == zs.stride()
            A = zt if reuse else torch.empty_like(zs)
        truncated = want_kd and truncates(top_p, top_k, V)
        shared = want_kd and tau == 1.0 and lse1 is not None  # p_τ = p₁: one softmax fewer
        C = min(chunk_rows, N)
        # 4 fp32 buffers per worker: x (then x/τ), p (p₁, then p_τ), t, q
        names = ["x", "p"] + (["t", "q"] if want_kd else [])
        lab_all = labels.clamp(0, V - 1) if want_ce else None  # ignored rows: any index, zeroed below
        ar = torch.arange(C, device=dev)
        inv_tau = 1.0 / tau

        def write_b(P, r0, r1):
            if want_ce:
                P[ar[: r1 - r0], lab_all[r0:r1]] -= 1.0
            B[r0:r1] = P

        def work(r0, r1, buf):
            n = r1 - r0
            X = buf["x"][:n].copy_(zs[r0:r1])
            xmax = X.amax(-1)
            P = None
            if lse1 is not None:
                P = _softmax_into(X, buf["p"][:n])
                # log Z = x_max − log p_max (p_max >= 1/V, so this is as exact as a logsumexp)
                l1 = torch.sub(xmax, P.amax(-1).log_(), out=lse1[r0:r1])
                if want_ce:
                    torch.sub(l1, X[ar[:n], lab_all[r0:r1]], out=ce[r0:r1])
                if need_b and not shared:
                    write_b(P, r0, r1)
            if not want_kd:
                return
            if shared:
                S, ls_norm = X, lse1[r0:r1]
            else:
                S = X.mul_(inv_tau)
                P = _softmax_into(S, buf["p"][:n])
                ls_norm = xmax.mul_(inv_tau).sub_(P.amax(-1).log_())
            zt_c = zt[r0:r1]
            T = buf["t"][:n].copy_(zt_c)
            if tau_t != 1.0:
                T.mul_(1.0 / tau_t)
            tmax = T.amax(-1)
            off = None
            if truncated:
                off = zt_c < keep_threshold(zt_c, top_p, top_k).unsqueeze(-1)
                T.masked_fill_(off, float("-inf"))
            Q = _softmax_into(T, buf["q"][:n])
            if off is not None:
                T.masked_fill_(off, 0.0)  # finite again: q = 0 there, so it drops out of Σ q (t − s)
            if soft_ce:  # −Σ q log p = lse_s − Σ q s
                val = ls_norm - T.copy_(Q).mul_(S).sum(-1)
            else:  # Σ q (log q − log p) = Σ q (t − s) − lse_t + lse_s
                val = T.sub_(S).mul_(Q).sum(-1) - (tmax - Q.amax(-1).log_()) + ls_norm
            torch.mul(val, tau * tau, out=kd[r0:r1])
            if need_a:
                A[r0:r1] = torch.sub(P, Q, out=T) if shared else P.sub_(Q)
            if need_b and shared:
                write_b(P, r0, r1)

        with torch.autocast(dev.type, enabled=False), torch.no_grad():
            _for_row_chunks(N, C, work, lambda: {k: torch.empty(C, V, dtype=cd, device=dev) for k in names}, dev)
            if valid is not None and not bool(valid.all()):
                bad = (~valid).nonzero().squeeze(-1)
                for v in (A, B):
                    if v is not None:
                        v.index_fill_(0, bad, 0.0)
                for v in (ce, kd, lse1):
                    if v is not None:
                        v.masked_fill_(~valid, 0.0)
        ctx.save_for_backward(A, B, lse1, labels if (want_ce and want_z) else None)
        ctx.chunk_rows, ctx.cd, ctx.tau = C, cd, tau
        ctx.used = False
        z = lse1 * lse1 if want_z else None
        return ce, kd, z

    @staticmethod
    def backward(ctx, g_ce, g_kd, g_z):
        if ctx.used:
            raise RuntimeError("bootdistill fused loss: backward can run only once (its saved gradient is reused in place)")
        ctx.used = True
        A, B, lse1, labels = ctx.saved_tensors
        use_b = B is not None and (g_ce is not None or g_z is not None)
        use_a = A is not None and g_kd is not None
        if not use_a and not use_b:
            return (None,) * 14
        cd, C = ctx.cd, ctx.chunk_rows
        coef_b = coef_a = None
        if use_b:  # z-loss grad is 2 lse p₁ = 2 lse (B + onehot): a row weight on B plus a label correction
            coef_b = (g_ce if g_ce is not None else 0.0) + (2.0 * g_z * lse1 if g_z is not None else 0.0)
            coef_b = coef_b.to(cd).unsqueeze(-1)
        if use_a:
            coef_a = (g_kd.to(cd) * ctx.tau).unsqueeze(-1)  # d KD / d z_s = τ² · (1/τ) (p_τ − q)
        out = B if use_b else A
        N, V = out.shape

        def work(r0, r1, buf):
            G = buf["g"][: r1 - r0]
            if use_b:
                G.copy_(B[r0:r1]).mul_(coef_b[r0:r1])
                if use_a:
                    G.addcmul_(buf["h"][: r1 - r0].copy_(A[r0:r1]), coef_a[r0:r1])
            else:
                G.copy_(A[r0:r1]).mul_(coef_a[r0:r1])
            out[r0:r1] = G

        names = ["g"] + (["h"] if use_a and use_b else [])
        with torch.no_grad():
            _for_row_chunks(N, C, work, lambda: {k: torch.empty(min(C, N), V, dtype=cd, device=out.device) for k in names},
                            out.device)
            if use_b and g_z is not None and labels is not None:
                rows = torch.arange(N, device=out.device)
                out[rows, labels.clamp(0, V - 1)] += (2.0 * g_z * lse1).to(out.dtype)  # lse1 is 0 at ignored rows
        return (out,) + (None,) * 13


def rows_per_chunk(V: int, chunk_rows: int | None, device: torch.device) -> int:
    per_chunk = CUDA_CHUNK_ELEMENTS if device.type == "cuda" else CHUNK_ELEMENTS
    return chunk_rows if chunk_rows else max(1, per_chunk // max(V, 1))
