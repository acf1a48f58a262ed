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
of an N x V mask, exact because thr is one of the row's own values, and computed chunk by chunk in the loss.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError


def check_truncation(top_p: float, top_k: int | None) -> None:
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1 or None, got {top_k!r}")


def truncates(top_p: float, top_k: int | None, vocab: int) -> bool:
    return top_p < 1.0 or (top_k is not None and top_k < vocab)


def _sorted_desc(z: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest values of each row, descending."""
    if k < z.shape[-1]:
        return torch.topk(z, k, dim=-1, sorted=True).values
    if z.device.type == "cpu":  # numpy's sort is ~4x faster than torch's on CPU rows of a few thousand
        return torch.from_numpy(np.ascontiguousarray(np.sort(z.numpy(), axis=-1)[..., ::-1]))
    return torch.sort(z, dim=-1, descending=True).values


@torch.no_grad()
def keep_threshold(teacher_logits: torch.Tensor, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor | None:
    """Per-row threshold thr (N,) on the raw teacher logits such that keep = z_t >= thr[:, None]; None = keep all.

    Exact: thr is one of the row's own values. top-p walks the sorted τ = 1 distribution, but a full sort of
    5000-wide rows costs more on CPU than the whole KD loss, so it first looks at the top 64 values (then 512)
    and only sorts the rows whose top-p prefix is longer than that.
    """
    check_truncation(top_p, top_k)
    z = teacher_logits
    V = z.shape[-1]
    if not truncates(top_p, top_k, V):
        return None
    zf = z.double() if z.dtype == torch.float64 else z.float()
    cap = top_k if top_k is not None and top_k < V else V  # top-k caps the top-p prefix
    if top_p >= 1.0:
        return _sorted_desc(zf, cap)[..., -1].to(z.dtype)
    lse = torch.logsumexp(zf, dim=-1, keepdim=True)
    thr = torch.empty(zf.shape[:-1], dtype=zf.dtype, device=zf.device)
    rows = torch.arange(zf.shape[0], device=zf.device)
    width = min(cap, 64)
    while True:
        vals = _sorted_desc(zf[rows], width)
        probs = torch.exp(vals - lse[rows])  # τ = 1 teacher distribution
        n_keep = ((torch.cumsum(probs, dim=-1) - probs) < top_p).sum(-1, keepdim=True)  # >= 1: the argmax
        thr[rows] = vals.gather(-1, n_keep - 1).squeeze(-1)
        if width == cap:
            break
        open_ = n_keep.squeeze(-1) == width  # the prefix may go on past what we looked at
        if not bool(open_.any()):
            break
        rows, width = rows[open_], (min(cap, width * 8) if width * 8 < V // 2 else cap)
    return thr.to(z.dtype)


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
