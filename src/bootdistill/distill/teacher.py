"""The teacher sources of bootdistill's own files (the interface: source.py; the list of sources: teachers.py).
Built from explicit arguments (`StudentSide`), never from the trainer.

- LiveTeacher: a bootdistill checkpoint, frozen, eval mode, no grad, the student's autocast -> DenseSignal.
- CachedTeacher: a logit cache (cache.py; offline or saved during the teacher's training) -> SparseSignal.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..compute import FlopsLedger, flops_per_token
from ..data.loader import eval_shard, num_blocks
from ..errors import CheckpointError, DataError
from ..runtime import distributed
from ..runtime.device import autocast_context
from ..runtime.evaluate import evaluate
from ..runtime.loading import load_model_from_checkpoint
from ..shape import count_params
from .cache import LogitCache
from .signals import DenseSignal, SparseSignal
from .source import StudentSide, TeacherSource


def _model_meta(shape) -> dict:
    return {k: getattr(shape, k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "context", "arch")}


class LiveTeacher(TeacherSource):

    def __init__(self, path: str, side: StudentSide):
        if not Path(path).exists():
            raise CheckpointError(f"teacher checkpoint '{path}' does not exist: train the teacher first or fix distill.teacher")
        self.model, meta, self.ckpt = load_model_from_checkpoint(path, side.device)
        self.shape = self.model.shape
        if meta.get("tokenizer_sha256") != side.tokenizer_sha256:
            raise DataError(f"teacher '{self.ckpt}' was trained with another tokenizer than the student's data "
                            f"('{side.data_dir}'): train the teacher on data prepared with the same tokenizer")
        if self.shape.vocab_size != side.vocab_size:
            raise DataError(f"teacher vocabulary ({self.shape.vocab_size}) differs from the student's ({side.vocab_size}): "
                            "both must use the same tokenizer")
        if self.shape.context < side.context:
            raise DataError(f"teacher context ({self.shape.context}) is shorter than the student's ({side.context}): "
                            f"use a teacher trained with context >= {side.context} or lower model.context")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.side = side
        ledger = FlopsLedger.from_state(meta["ledger"]) if "ledger" in meta else FlopsLedger()
        # a teacher's training cost is everything its own run spent (its own teacher included, if any)
        self.train_flops = (ledger.total, ledger.total_exact)
        self.upfront_flops = (0.0, 0.0)
        self.params = count_params(self.shape)["total"]
        self._measure_val_loss()

    def shard(self, shard_fn) -> None:
        shard_fn(self.model)

    def _measure_val_loss(self) -> None:
        """The teacher's loss on the student's in-training validation set, and the forward FLOPs it took."""
        s = self.side
        val = evaluate(self.model, s.val_tokens, s.context, s.eval_batch, s.device, s.amp_dtype, s.eval_sequences)
        self.val_loss, self.eval_flops = val["loss"], self.inference_flops(val["tokens"])

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.side.device, self.side.amp_dtype):
            return self.model(x)

    def signal(self, x: torch.Tensor, starts=None) -> DenseSignal:
        return DenseSignal(self.logits(x))

    def inference_flops(self, tokens: int) -> tuple[float, float]:
        return (tokens * flops_per_token(self.shape, training=False),
                tokens * flops_per_token(self.shape, training=False, exact=True))

    @torch.no_grad()
    def diagnostics(self, student) -> dict:
        """KL(teacher || student), entropies and top-1 agreement on the first distill.diag_sequences validation
        blocks, the same on any layout: each rank reads its share and the sums are added up over the ranks."""
        if self.model is None:
            return {}
        s = self.side
        was_training = student.training
        student.eval()
        kl = ent_s = ent_t = agree = n = 0.0
        for x, _, real in eval_shard(s.val_tokens, s.context, s.eval_batch, s.diag_sequences, distributed.rank(),
                                     distributed.world()):
            x = x.to(s.device)
            with autocast_context(s.device, s.amp_dtype):
                s_logp = F.log_softmax(student(x).float(), -1)[:real]
                t_logp = F.log_softmax(self.logits(x).float(), -1)[:real]
            kl += (t_logp.exp() * (t_logp - s_logp)).sum(-1).double().sum().item()
            ent_s += -(s_logp.exp() * s_logp).sum(-1).double().sum().item()
            ent_t += -(t_logp.exp() * t_logp).sum(-1).double().sum().item()
            agree += (s_logp.argmax(-1) == t_logp.argmax(-1)).sum().item()
            n += real * x.shape[1]
        student.train(was_training)
        if distributed.world() > 1:
            kl, ent_s, ent_t, agree, n = distributed.sum_(torch.tensor([kl, ent_s, ent_t, agree, n], dtype=torch.float64)).tolist()
        return {"val_kl_teacher_student": kl / n, "student_entropy": ent_s / n, "teacher_entropy": ent_t / n,
                "top1_agreement": agree / n, "diag_tokens": int(n)}

    def release(self) -> None:
        if self.model is not None:
            self.model = None
            gc.collect()
            if self.side.device.type == "cuda":
                torch.cuda.empty_cache()

    def summary(self, ledger=None) -> dict:
        return {"source": "live", "checkpoint": str(self.ckpt), "n_params": self.params, "val_loss": self.val_loss,
                "train_flops": self.train_flops[0], "train_flops_exact": self.train_flops[1],
                "model": _model_meta(self.shape)}


class CachedTeacher(TeacherSource):
    """A logit cache as a teacher. Its teacher inference was spent once, when the cache was written: each
    student trained from it is charged that whole cost (`upfront_flops`, in the ledger); the summary also shows
    this student's share, the inference its own tokens needed (what a live teacher would have cost it)."""

    sparse = True
    positional = True

    def __init__(self, path: str, side: StudentSide):
        self.cache = c = LogitCache(path)
        m = c.meta
        fix = f"write the cache from the student's prepared data ('{side.data_dir}')"
        if m["tokenizer_sha256"] != side.tokenizer_sha256:
            raise DataError(f"teacher cache '{c.path}' was made with another tokenizer than the student's data: {fix}")
        if m["vocab_size"] != side.vocab_size:
            raise DataError(f"teacher cache '{c.path}' has vocabulary {m['vocab_size']}, the student {side.vocab_size}: {fix}")
        if m["train_tokens"] != side.train_tokens or (m.get("data_key") and side.data_key and m["data_key"] != side.data_key):
            raise DataError(f"teacher cache '{c.path}' was written over another training stream "
                            f"({m['train_tokens']:,} tokens, the student's has {side.train_tokens:,}): {fix}")
        if c.context != side.context:
            raise DataError(f"teacher cache '{c.path}' holds blocks of {c.context} tokens, the student's context is "
                            f"{side.context}: set model.context={c.context} or write a cache with --context {side.context}")
        self.side = side
        t = m["teacher"]
        self.shape = None
        self.params = t["n_params"]
        self.train_flops = (t["train_flops"], t["train_flops_exact"])
        self.upfront_flops = (m["inference_flops"], m["inference_flops_exact"])
        self.per_token = (t["inference_flops_per_token"], t["inference_flops_per_token_exact"])
        self.val_loss = self._val_loss(side)
        self.eval_flops = (0.0, 0.0)  # read from the cache: spent when it was written

    def _val_loss(self, side: StudentSide) -> float:
        """The teacher's val loss over exactly the blocks a live teacher's evaluation would read."""
        n = num_blocks(len(side.val_tokens), side.context)
        if side.eval_sequences is not None:
            n = min(n, side.eval_sequences)
        if n > len(self.cache.val_losses):
            raise DataError(f"teacher cache '{self.cache.path}' holds the teacher's loss on {len(self.cache.val_losses)} "
                            f"validation blocks, the student evaluates {n}: lower train.eval_sequences")
        return float(self.cache.val_losses[:n].astype(np.float64).mean())

    def check_coverage(self, starts: np.ndarray) -> None:
        miss = self.cache.missing(starts)
        if miss.size:
            raise DataError(f"teacher cache '{self.cache.path}' covers {self.cache.covered_range()}, but the student's KD "
                            f"steps read {len(np.unique(miss))} blocks outside it (first at token {int(miss.min()):,}): "
                            "write the cache over the whole training stream or shorten the KD phase")

    def signal(self, x: torch.Tensor, starts) -> SparseSignal:
        return self.cache.read(starts, x.device)

    def inference_flops(self, tokens: int) -> tuple[float, float]:
        return (0.0, 0.0)  # already spent when the cache was written (upfront_flops)

    def diagnostics(self, student) -> dict:
        return {}  # the cache holds no validation distributions

    def summary(self, ledger=None) -> dict:
        m = self.cache.meta
        tokens = ledger.teacher_tokens if ledger is not None else 0
        return {"source": "cache", "cache": str(self.cache.path), "kind": m["kind"], "n_params": self.params,
                "val_loss": self.val_loss, "train_flops": self.train_flops[0], "train_flops_exact": self.train_flops[1],
                "checkpoint": m["teacher"].get("checkpoint"), "model": m["teacher"].get("model"),
                "top_p": m["top_p"], "top_k": m["top_k"], "storage": m["storage"],
                "inference_flops_charged": self.upfront_flops[0],
                "inference_flops_share": tokens * self.per_token[0],
                "inference_note": "the ledger charges this student the whole cost of writing the cache "
                                  "(inference_flops_charged); inference_flops_share is the part its own tokens used, "
                                  "what each student pays when students reading the whole cache split its cost"}
