"""Teacher signals: what a teacher source hands the KD loss for one batch. The loss never knows the source.

- DenseSignal: the teacher's full logits (B, T, V): a live teacher.
- SparseSignal: the teacher's truncated distribution (top-p then top-k, renormalised): `indices` (B, T, K)
  and `logprobs` (B, T, K), log q over the kept set S, -inf in padding slots (top-p kept fewer than K).
  A cache, or logits saved while the teacher trained.

The losses take a sparse signal through `dense_view`: log q scattered into a (N, V) tensor filled with
OUTSIDE (-1e30). Every loss then runs unchanged: softmax gives exactly 0 outside S at any temperature, and
the kernels see the same kept set a live teacher truncated with the same top-p / top-k would give, because
log q differs from the kept logits by one constant per row (so softmax(log q / τ) = softmax(z_S / τ)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .truncation import keep_threshold

OUTSIDE = -1e30  # dense view of a sparse signal: "not in the kept set" (finite, so 0 * (t - s) stays 0)
SUPPORT_FLOOR = -1e29  # values at or below this are outside the kept set


@dataclass
class DenseSignal:
    logits: torch.Tensor  # (..., V)

    sparse = False


@dataclass
class SparseSignal:
    indices: torch.Tensor  # (..., K) int64
    logprobs: torch.Tensor  # (..., K) log q over the kept set; -inf in padding slots
    log_kept_mass: torch.Tensor | None = None  # (...,) log of the teacher mass the truncation kept (when known)

    sparse = True

    def dense_view(self, vocab_size: int) -> torch.Tensor:
        """(N, V) fp32 tensor: log q on the kept set, OUTSIDE elsewhere."""
        K = self.indices.shape[-1]
        idx = self.indices.reshape(-1, K).long()
        lp = self.logprobs.reshape(-1, K).float()
        out = torch.full((idx.shape[0], vocab_size), OUTSIDE, dtype=torch.float32, device=lp.device)
        lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, OUTSIDE))  # padding slots: outside S
        return out.scatter_(-1, idx.to(out.device), lp)


@torch.no_grad()
def sparsify(logits: torch.Tensor, top_p: float, top_k: int) -> SparseSignal:
    """Truncate full teacher logits (..., V) to the stored form: top-p then top-k (τ = 1), renormalised.

    Exactly `top_k` slots per token. Unlike the live truncation, ties at the top-k cut are broken by torch.topk
    (a cache has a fixed width); with float logits such ties practically never happen.
    """
    V = logits.shape[-1]
    K = min(top_k, V)
    z = logits.reshape(-1, V).float()
    vals, idx = torch.topk(z, K, dim=-1, sorted=True)
    thr = keep_threshold(z, top_p, K if K < V else None) if top_p < 1.0 else None  # top-k alone: vals is the set
    if thr is not None:
        vals = vals.masked_fill(vals < thr.unsqueeze(-1), float("-inf"))
    lse_kept = torch.logsumexp(vals, -1, keepdim=True)
    lp = vals - lse_kept
    shape = logits.shape[:-1] + (K,)
    kept = (lse_kept.squeeze(-1) - torch.logsumexp(z, -1)).reshape(logits.shape[:-1])
    return SparseSignal(idx.reshape(shape), lp.reshape(shape), kept)
