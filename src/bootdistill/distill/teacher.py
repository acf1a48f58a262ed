"""Teacher sources: what the trainer asks for a batch's teacher signal. Built from explicit arguments
(`StudentSide`), never from the trainer.

- LiveTeacher: a bootdistill checkpoint, frozen, eval mode, no grad, the student's autocast -> DenseSignal.
- CachedTeacher: a logit cache (cache.py; offline or saved during the teacher's training) -> SparseSignal.
- HFTeacher (hf_teacher.py): a local Hugging Face causal LM (distill.teacher=hf:PATH) -> DenseSignal.

Every source gives: signal(x, starts), shape (None when unknown to bootdistill), params, train_flops
(proxy, exact), upfront_flops (inference charged once, e.g. writing a cache), inference_flops(tokens) (charged
per KD step), val_loss, eval_flops (proxy, exact: the forward passes that measured val_loss),
diagnostics(student) (its `diag_tokens`: tokens each model evaluated), release(), summary(ledger).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..compute import FlopsLedger, flops_per_token
from ..data.loader import eval_shard
from ..errors import CheckpointError, DataError
from ..shape import count_params
from ..runtime import distributed
from ..runtime.evaluate import evaluate
from ..runtime.device import autocast_context
from .cache import LogitCache, is_cache
from .signals import DenseSignal, SparseSignal


@dataclass
class StudentSide:
    """What a teacher source needs to know about the student's run."""

    device: torch.device
    amp_dtype: torch.dtype | None
    vocab_size: int
    context: int
    tokenizer_sha256: str
    data_dir: str
    data_key: str | None
    train_tokens: int  # length of the prepared training stream
    val_tokens: np.ndarray
    eval_batch: int  # sequences per validation forward (the trainer's micro batch): memory only
    eval_sequences: int | None  # the validation set: the split's first N blocks (None: all)
    diag_sequences: int = 64
    teacher_train_flops: float | None = None  # given by the user for teachers without a ledger (HF)


class TeacherSource(Protocol):
    """What the trainer needs from a teacher; LiveTeacher, CachedTeacher and HFTeacher implement it."""

    sparse: bool  # gives SparseSignal (a loss needing raw logits is refused)
    params: int
    train_flops: tuple[float, float]  # (6N proxy, exact) of the teacher's own training
    upfront_flops: tuple[float, float]  # inference spent once for every student (writing a cache)
    val_loss: float | None
    eval_flops: tuple[float, float]  # (6N proxy, exact) of the evaluation that measured val_loss

    def signal(self, x: torch.Tensor, starts: np.ndarray | None) -> DenseSignal | SparseSignal: ...

    def inference_flops(self, tokens: int) -> tuple[float, float]: ...  # charged per KD step

    def diagnostics(self, student: torch.nn.Module) -> dict: ...

    def release(self) -> None: ...

    def summary(self, ledger=None) -> dict: ...


def _model_meta(shape) -> dict:
    return {k: getattr(shape, k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "context", "arch")}


class LiveTeacher:
    sparse = False

    def __init__(self, path: str, side: StudentSide):
        from ..runtime.loading import load_model_from_checkpoint

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


class CachedTeacher:
    """A logit cache as a teacher. Its teacher inference was spent once, when the cache was written: each
    student trained from it is charged that whole cost (`upfront_flops`, in the ledger); the summary also shows
    this student's share, the inference its own tokens needed (what a live teacher would have cost it)."""

    sparse = True

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
        from ..data.loader import num_blocks

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

    def release(self) -> None:
        pass

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


def load_teacher(spec: str, side: StudentSide) -> TeacherSource:
    """The teacher source named by distill.teacher: hf:PATH, a cache directory, or a bootdistill run/checkpoint."""
    if not spec:
        raise CheckpointError("distill.teacher is not set: give the run directory of a trained teacher, a teacher cache, or hf:PATH")
    spec = str(spec)
    if spec.startswith("hf:"):
        from .hf_teacher import HFTeacher

        return HFTeacher(spec[3:], side)
    if is_cache(spec):
        return CachedTeacher(spec, side)
    return LiveTeacher(spec, side)
