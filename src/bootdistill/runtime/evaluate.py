"""A model's loss on a split (validation/test loss, and loss by position in 64-token buckets, paper §3.3.1),
or on one token stream (`text_nats`).

The evaluation set is the split's first `max_sequences` blocks, whatever the batch size and the number of
processes: under torchrun each rank evaluates its share of them and the sums are added up over the ranks, so
every rank gets the loss a single process measures; the batch size only sets the memory a forward takes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.loader import eval_shard
from . import distributed
from .device import autocast_context


@torch.no_grad()
def evaluate(model, tokens: np.ndarray, context: int, batch_size: int, device: torch.device,
             amp_dtype: torch.dtype | None, max_sequences: int | None = None, bucket: int | None = None) -> dict:
    """Mean token cross-entropy (and the model's mean predictive entropy) over the split's first `max_sequences`
    blocks (None: the whole split), read `batch_size` at a time; with `bucket`, also per-position means. Sums
    are float64, so another batch size or process count only moves the last bits."""
    was_training = model.training
    model.eval()
    total, entropy, count = 0.0, 0.0, 0
    pos_sum = torch.zeros(context, dtype=torch.float64)
    for x, y, real in eval_shard(tokens, context, batch_size, max_sequences, distributed.rank(), distributed.world()):
        x, y = x.to(device), y.to(device)
        with autocast_context(device, amp_dtype):
            logits = model(x)
        logp = F.log_softmax(logits.float(), -1)[:real]
        loss = -logp.gather(-1, y[:real].unsqueeze(-1)).squeeze(-1)
        total += loss.double().sum().item()
        entropy += -(logp.exp() * logp).double().sum().item()
        count += loss.numel()
        pos_sum += loss.sum(0).double().cpu()
    model.train(was_training)
    if distributed.world() > 1:
        sums = distributed.sum_(torch.cat([torch.tensor([total, count, entropy], dtype=torch.float64), pos_sum]))
        total, count, entropy, pos_sum = sums[0].item(), int(sums[1].item()), sums[2].item(), sums[3:]
    out = {"loss": total / count, "entropy": entropy / count, "tokens": count}
    if bucket:
        n_seq = count // context
        per_pos = pos_sum / n_seq
        out["positional"] = {
            str(min(hi, context)): float(per_pos[lo:hi].mean()) for lo, hi in
            ((lo, lo + bucket) for lo in range(0, context, bucket))
        }
    return out


@torch.no_grad()
def text_nats(model, ids: np.ndarray, context: int, device, amp_dtype, batch: int = 8) -> float:
    """Total cross-entropy (nats) of predicting ids[1:], each from the tokens before it in its window: the
    predictions are cut into consecutive windows of `context` (the last one shorter), each read from its start."""
    total = 0.0
    starts = list(range(0, len(ids) - 1, context))
    full = [s for s in starts if s + context < len(ids)]
    groups = [full[i:i + batch] for i in range(0, len(full), batch)] + [[s] for s in starts if s + context >= len(ids)]
    for group in groups:
        n = min(context, len(ids) - 1 - group[0])
        rows = torch.from_numpy(np.stack([ids[s:s + n + 1] for s in group]).astype(np.int64)).to(device)
        with autocast_context(device, amp_dtype):
            logits = model(rows[:, :-1])
        total += F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten(), reduction="sum").item()
    return total
