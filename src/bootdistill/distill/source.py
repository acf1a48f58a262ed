"""What a teacher source is: the interface the trainer may ask (`TeacherSource`), what a source knows about the
student's run (`StudentSide`), and what a `distill.teacher` spec names (`parse_teacher_spec`). No torch: the
planner and preflight read specs without loading a model.

A new source is one subclass of TeacherSource plus one entry in teachers.py's SOURCES.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .signals import DenseSignal, SparseSignal

HF_PREFIX = "hf:"  # distill.teacher=hf:PATH: a local Hugging Face causal LM
CACHE_META = "cache.json"  # a finished logit cache's description (cache.py)
CACHE_COVERED = "covered.u8"  # which blocks a cache covers: created with the cache, so an unfinished one has it too


@dataclass(frozen=True)
class TeacherSpec:
    kind: str  # "hf" (a Hugging Face model directory) | "cache" (a logit cache) | "checkpoint" (a bootdistill run or checkpoint)
    path: str

    @property
    def external(self) -> bool:
        """Trained outside bootdistill: no run of a recipe trains it, and it has no ledger."""
        return self.kind == "hf"


def is_cache(path) -> bool:
    """A cache directory, finished or not (an unfinished one is refused by LogitCache with a clear line)."""
    return (Path(path) / CACHE_META).is_file() or (Path(path) / CACHE_COVERED).is_file()


def parse_teacher_spec(spec) -> TeacherSpec:
    """distill.teacher: hf:PATH, a teacher cache directory, or a bootdistill run/checkpoint directory."""
    if not spec:
        raise CheckpointError("distill.teacher is not set: give the run directory of a trained teacher, a teacher cache, or hf:PATH")
    spec = str(spec)
    if spec.startswith(HF_PREFIX):
        return TeacherSpec("hf", spec[len(HF_PREFIX):])
    return TeacherSpec("cache" if is_cache(spec) else "checkpoint", spec)


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


class TeacherSource:
    """Everything the trainer may ask a teacher. Subclasses set the attributes in __init__ and implement
    `signal`, `inference_flops` and `summary`; the rest has defaults that suit a source without them."""

    sparse: bool = False  # gives SparseSignal (a loss needing raw logits is refused)
    positional: bool = False  # signals are looked up by the blocks' positions (a cache): check_coverage applies
    train_flops_known: bool = True  # False: its training compute is unknown (counted as 0 in the ledger)
    params: int
    train_flops: tuple[float, float]  # (6N proxy, exact) of the teacher's own training
    upfront_flops: tuple[float, float] = (0.0, 0.0)  # inference spent once for every student (writing a cache)
    val_loss: float | None = None
    eval_flops: tuple[float, float] = (0.0, 0.0)  # (6N proxy, exact) of the evaluation that measured val_loss

    def signal(self, x: torch.Tensor, starts: np.ndarray | None) -> DenseSignal | SparseSignal:
        raise NotImplementedError

    def inference_flops(self, tokens: int) -> tuple[float, float]:  # charged per KD step
        raise NotImplementedError

    def summary(self, ledger=None) -> dict:
        raise NotImplementedError

    def check_coverage(self, starts: np.ndarray) -> None:
        """DataError when a positional source cannot serve the blocks at `starts` (the KD steps' blocks)."""

    def shard(self, shard_fn) -> None:
        """Under FSDP, `shard_fn(module)` shards a bootdistill model in place; a source holding one applies it."""

    def diagnostics(self, student: torch.nn.Module) -> dict:
        """KD diagnostics against the student on the validation blocks (`diag_tokens`: tokens each model read)."""
        return {}

    def release(self) -> None:
        """Free the teacher's memory once the policy needs it no more."""
