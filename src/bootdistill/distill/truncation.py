"""Teacher-distribution processing (pre-training distillation design space, §3.2): top-p then top-k, then τ.

Order, following the paper ("first top-p, then top-k; after truncation, re-normalize with temperature τ"):
the kept set is chosen on the teacher's own distribution softmax(z_t) (τ = 1, what an offline run would
store), then the kept logits are re-normalized as softmax(z_t / τ). For top-k the order does not matter
(temperature is monotone); for top-p it does, and this is the paper's choice.

- top-p keeps the smallest prefix of the sorted distribution whose mass reaches p (the argmax always stays);
  p >= 1 is "no top-p" exactly (no float cumsum involved).
- top-k keeps the k largest of what top-p kept.
- Ties at a cut are all kept, so the set does not depend on token order (it can hold more than k tokens).

The set is returned as a per-row threshold on the raw teacher logits (keep = z_t >= thr): N floats instead
of an N x V mask, and exact because thr is one of the row's own values.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError


def check_truncation(top_p: float, top_k: int | None) -> None:
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1 or None, got {top_k!r}")


def truncates(top_p: float, top_k: int | None, vocab: int) -> bool:
    return top_p < 1.0 or (top_k is not None and top_k < vocab)


# Order-preserving integer keys of IEEE floats: flipping the magnitude bits of negatives makes the signed
# integer order match the float order (and the map is its own inverse).
_KEYS = {torch.bfloat16: (torch.int16, 0x7FFF), torch.float16: (torch.int16, 0x7FFF),
         torch.float32: (torch.int32, 0x7FFFFFFF), torch.float64: (torch.int64, 0x7FFFFFFFFFFFFFFF)}


def _flip(b: torch.Tensor, mask: int) -> torch.Tensor:
    return torch.where(b < 0, b ^ mask, b)


@torch.no_grad()
def keep_threshold(teacher_logits: torch.Tensor, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor | None:
    """Per-row threshold thr (N,) on the raw teacher logits such that keep = z_t >= thr[:, None]; None = keep all.

    Bisection on the logits' bit patterns instead of a sort (CPU sort/topk of 5000-wide rows cost more than the
    whole KD loss): <= 16 rounds of compare-and-count for bf16 logits, 32 for fp32, and exact, because the
    answer is always one of the row's own values.
      top-k: the largest key κ with #{key >= κ} >= k  (the k-th largest value; ties at it all pass)
      top-p: the smallest key κ with mass{key > κ} < p (the smallest-prefix-reaching-p cut, ties kept)
    """
    check_truncation(top_p, top_k)
    z = teacher_logits
    V = z.shape[-1]
    if not truncates(top_p, top_k, V):
        return None
    if z.dtype not in _KEYS:
        z = z.float()
    int_t, bits = _KEYS[z.dtype]
    keys = _flip(z.view(int_t), bits)
    lo0, hi0 = keys.amin(-1).long(), keys.amax(-1).long()
    cut = lo0
    if top_k is not None and top_k < V:
        lo, hi = lo0, hi0
        while bool((lo < hi).any()):
            mid = (lo >> 1) + (hi >> 1) + ((lo | hi) & 1)  # ceil((lo + hi) / 2) without int64 overflow
            ok = (keys >= mid.to(int_t).unsqueeze(-1)).sum(-1) >= top_k
            lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid - 1)
        cut = lo
    if top_p < 1.0:
        q = torch.softmax(z.to(torch.float64 if z.dtype == torch.float64 else torch.float32), -1)  # τ = 1
        zero = q.new_zeros(())
        lo, hi = cut.clone(), hi0  # the top-p cut only matters above the top-k one
        while bool((lo < hi).any()):
            mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2)
            ok = torch.where(keys > mid.to(int_t).unsqueeze(-1), q, zero).sum(-1) < top_p
            lo, hi = torch.where(ok, lo, mid + 1), torch.where(ok, mid, hi)
        cut = lo
    return _flip(cut.to(int_t), bits).view(z.dtype).to(teacher_logits.dtype)


def keep_mask(teacher_logits: torch.Tensor, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor | None:
    """Boolean (N, V) kept set, or None when nothing is truncated."""
    thr = keep_threshold(teacher_logits, top_p, top_k)
    return None if thr is None else teacher_logits >= thr.unsqueeze(-1)


def teacher_distribution(teacher_logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0,
                         top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(probs, log_probs, keep) of the processed teacher, in fp32 (fp64 for fp64 input).

    probs are 0 and log_probs are -inf outside the kept set; keep is None when nothing was truncated.
    Full-size tensors: for the hot path use the chunked losses in `losses`, which call `keep_threshold` per chunk.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    keep = keep_mask(teacher_logits, top_p, top_k)
    cd = torch.float64 if teacher_logits.dtype == torch.float64 else torch.float32
    t = teacher_logits.detach().to(cd) / temperature
    if keep is not None:
        t = t.masked_fill(~keep, float("-inf"))
    log_q = torch.log_softmax(t, dim=-1)
    return log_q.exp(), log_q, keep
