"""The trainer's plug-in points. An extension changes what the loop reads or keeps without the loop naming it:
SALT_DS selection (distill/selection.py) and online logit saving (distill/cache_write.py) are two, listed in
distill/extensions.py; a user's extension is one more factory passed to `Trainer(..., extensions=...)`.

A factory gets the run's `RunContext` and returns a `TrainerExtension`, or None when its settings are off. Hooks,
in the order the trainer calls them: `sampler` (wrap or replace the batch sampler), `charge` (one-time FLOPs
into the ledger), `on_start` (the run directory is claimed, a resume restored), `on_forward` (each micro-batch's
student logits), `on_finish` (training done, before the final evaluation), `summary` (entries for summary.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class RunContext:
    """What an extension may know about the run it plugs into."""

    cfg: Any  # the resolved RunConfig
    run_dir: Path
    data_dir: Path
    data_meta: dict
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    context: int
    micro: int  # sequences per forward, on one process
    accum: int  # forwards per step, on one process
    rank: int
    world: int
    device: torch.device
    amp_dtype: torch.dtype | None
    resume: bool  # the run was asked to resume (it may still start over: no checkpoint yet)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class TrainerExtension:
    """Every hook defaults to doing nothing."""

    def sampler(self, sampler):
        """The batch sampler to train with, given the default one (BlockSampler over the training stream)."""
        return sampler

    def charge(self, ledger) -> None:
        """Add compute spent once for this run (e.g. scoring passes) to the FLOPs ledger."""

    def on_start(self, resumed: bool) -> None:
        """The run directory is claimed (this process writes it) and, when `resumed`, a checkpoint restored."""

    def on_forward(self, step: int, starts: np.ndarray, logits: torch.Tensor) -> None:
        """The student's logits of one micro-batch of `step` (token offsets `starts`), before the loss."""

    def on_finish(self, model: torch.nn.Module, step: int) -> None:
        """Training has ended at `step` (the last checkpoint is written); the final evaluation follows."""

    def summary(self) -> dict:
        """Entries for the run's summary.json."""
        return {}
