"""SALT_DS (SALT §4, eq. 10): an early checkpoint of the teacher picks the sequences of the KD phase.

Score of a sequence x: median over its tokens of  1{x_t ∈ top-k of P(·|x_<t)} · (−log P(x_t|x_<t)):
the teacher's loss on tokens it finds learnable (true token in its top k), 0 on the others. High scores are
"challenging yet learnable"; the top-m sequences fill the KD phase. Candidates are the training blocks the
scoring checkpoint did not train on (its run is replayed to know which). The scoring forward passes are
charged to the student's ledger as teacher inference.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..compute import flops_per_token
from ..config import resolve_model
from ..data.loader import BlockSampler, SelectionSampler, num_blocks
from ..data.prepare import load_meta, prepare
from ..errors import ConfigError, DataError
from ..fsutil import atomic_write_bytes, atomic_write_json
from ..runtime.batch import batch_plan
from ..runtime.device import autocast_context
from ..runtime.extension import RunContext, TrainerExtension
from ..runtime.loading import load_model_from_checkpoint, run_config_of


@torch.no_grad()
def salt_scores(model, tokens: np.ndarray, starts: np.ndarray, context: int, k: int, batch: int, device,
                amp_dtype) -> np.ndarray:
    """Eq. 10 for the blocks at token offsets `starts` (float64, one per block)."""
    out = []
    for lo in range(0, len(starts), batch):
        rows = np.stack([np.asarray(tokens[s:s + context + 1], dtype=np.int64) for s in starts[lo:lo + batch]])
        data = torch.from_numpy(rows).to(device)
        x, y = data[:, :-1], data[:, 1:]
        with autocast_context(device, amp_dtype):
            logits = model(x)
        logits = logits.float()
        true = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1]
        loss = torch.logsumexp(logits, -1) - true
        learnable = true >= kth  # ties at the k-th value count as inside
        out.append(torch.quantile((loss * learnable).double(), 0.5, dim=-1).cpu().numpy())  # = np.median
    return np.concatenate(out) if out else np.zeros(0)


def trained_mask(n_tokens: int, run_cfg, step: int, tokens: np.ndarray) -> np.ndarray:
    """Tokens the run of `run_cfg` trained on in its first `step` steps (its sampler replayed)."""
    cfg = resolve_model(run_cfg)
    ctx = cfg.model.context
    plan = batch_plan(cfg.train.batch_tokens, ctx, cfg.train.micro_batch)
    sampler = BlockSampler(tokens, ctx, plan.micro, cfg.train.seed)
    mask = np.zeros(n_tokens, dtype=bool)
    for s in sampler.preview_starts(step * plan.accum):
        mask[s:s + ctx] = True  # its inputs (a block's last label is the next block's first input)
    return mask


def select(scores: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m highest scores (ties: the earlier block first)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return np.sort(order[:m])


def salt_selection(checkpoint: str, k: int, run_dir: Path, data_dir, data_meta: dict, tokens: np.ndarray,
                   context: int, m: int, batch: int, device, amp_dtype, resume: bool) -> dict:
    """The KD phase's m sequences (token offsets), scored by `checkpoint`; recorded in RUN/selection.json + .npz."""
    record, arrays = Path(run_dir) / "selection.json", Path(run_dir) / "selection.npz"
    if resume and record.is_file() and arrays.is_file():
        info = json.loads(record.read_text())
        with np.load(arrays) as f:
            return {**info, "starts": f["selected_starts"]}
    if not Path(checkpoint).exists():
        raise ConfigError(f"distill.select_with checkpoint '{checkpoint}' does not exist: give an early checkpoint of the teacher")
    model, meta, ckpt = load_model_from_checkpoint(checkpoint, device)
    if meta.get("tokenizer_sha256") != data_meta["tokenizer_sha256"]:
        raise DataError(f"scoring checkpoint '{ckpt}' was trained with another tokenizer than the student's data: "
                        "score with a checkpoint trained on the same prepared data")
    if model.shape.context < context:
        raise DataError(f"scoring checkpoint context ({model.shape.context}) is shorter than the student's ({context})")
    run_cfg = run_config_of(ckpt)
    same_data = load_meta(prepare(run_cfg.data, progress=False)).get("key") == data_meta.get("key")
    # only a scorer trained on this very stream has seen part of it
    seen = trained_mask(len(tokens), run_cfg, meta["step"], tokens) if same_data else np.zeros(len(tokens), bool)
    starts = np.arange(num_blocks(len(tokens), context)) * context
    fresh = np.array([not seen[s:s + context].any() for s in starts], dtype=bool)
    candidates = starts[fresh]
    if len(candidates) < m:
        raise DataError(f"SALT_DS: the KD phase needs {m} sequences, but only {len(candidates)} training blocks are "
                        f"unseen by '{ckpt}': lower distill.kd_steps or score with an earlier checkpoint")
    scores = salt_scores(model, tokens, candidates, context, k, batch, device, amp_dtype)
    chosen = select(scores, m)
    n_tok = len(candidates) * context
    info = {"checkpoint": str(ckpt), "checkpoint_step": meta["step"], "k": k, "candidates": int(len(candidates)),
            "excluded_seen_by_scorer": int((~fresh).sum()), "selected": int(m),
            "score_selected_min": float(scores[chosen].min()), "score_all_median": float(np.median(scores)),
            "scoring_flops": n_tok * flops_per_token(model.shape, training=False),
            "scoring_flops_exact": n_tok * flops_per_token(model.shape, training=False, exact=True)}
    zero = int((scores[chosen] <= 0).sum())
    if zero:  # ties at 0 go to the earlier block: those picks say nothing about the data
        info["warning"] = (f"SALT_DS: scorer '{ckpt}' scores {zero} of the {m} selected sequences 0 ({int((scores <= 0).sum())} "
                           f"of {len(scores)} candidates): its top-{k} holds the true next token for too few of their "
                           "tokens, so those are simply the first blocks; score with a later checkpoint or a larger "
                           "distill.select_k")
        print(f"warning: {info['warning']}", file=sys.stderr, flush=True)
    buf = io.BytesIO()
    np.savez(buf, candidate_starts=candidates, scores=scores, selected_starts=candidates[chosen])
    return {**info, "starts": candidates[chosen], "_npz": buf.getvalue()}


def write_record(run_dir: Path, selection: dict) -> None:
    """RUN/selection.json (what was selected and why) and RUN/selection.npz (every score)."""
    if "_npz" in selection:
        atomic_write_bytes(Path(run_dir) / "selection.npz", selection.pop("_npz"))
        atomic_write_json(Path(run_dir) / "selection.json", {k: v for k, v in selection.items() if k != "starts"})


class SaltSelection(TrainerExtension):
    """distill.select_with: the KD phase reads the sequences an early teacher checkpoint picks; the scoring passes
    are charged as teacher inference, and RUN/selection.json + .npz record the choice."""

    def __init__(self, ctx: RunContext):
        d = ctx.cfg.distill
        self.ctx, self.kd_batches = ctx, d.kd_steps * ctx.accum
        self.selection = salt_selection(d.select_with, d.select_k, ctx.run_dir, ctx.data_dir, ctx.data_meta,
                                        ctx.train_tokens, ctx.context, self.kd_batches * ctx.micro * ctx.world,
                                        ctx.micro, ctx.device, ctx.amp_dtype, ctx.resume)

    @classmethod
    def from_run(cls, ctx: RunContext) -> SaltSelection | None:
        return cls(ctx) if ctx.cfg.distill.select_with else None

    def sampler(self, sampler):
        c = self.ctx
        return SelectionSampler(c.train_tokens, c.context, c.micro * c.world, c.cfg.train.seed, self.selection["starts"],
                                self.kd_batches, sampler, c.rank, c.world)

    def charge(self, ledger) -> None:
        ledger.add_teacher_flops(self.selection["scoring_flops"], self.selection["scoring_flops_exact"])

    def on_start(self, resumed: bool) -> None:
        if self.ctx.is_main:
            write_record(self.ctx.run_dir, self.selection)

    def summary(self) -> dict:
        return {"selection": {k: v for k, v in self.selection.items() if k != "starts"}}
