"""Divergence guard: stop a run whose loss is non-finite or far above its recent level, and never let such
weights into a checkpoint.

"Far above" means more than `train.divergence_factor` (default 2) times the reference level: the median of
the last WINDOW step losses, capped at ln(V), the loss of guessing uniformly. The cap catches a loss that
climbs slowly; the median ignores the ordinary step-to-step noise.
"""

from __future__ import annotations

import math
import statistics

import torch

from ..errors import BootdistillError

WINDOW = 20


class DivergenceError(BootdistillError):
    """Training diverged: nothing from the diverged steps was saved."""


class DivergenceGuard:
    def __init__(self, factor: float | None, vocab_size: int):
        self.factor = factor  # None or 0: only non-finite losses stop the run
        self.uniform = math.log(vocab_size)
        self.recent: list[float] = []

    def reference(self) -> float:
        return min(statistics.median(self.recent), self.uniform) if self.recent else self.uniform

    def problem(self, loss: float) -> str | None:
        """Why `loss` means divergence, or None."""
        if not math.isfinite(loss):
            return f"loss {loss}"
        if self.factor and loss > self.factor * self.reference():
            return f"loss {loss:.4g} > {self.factor:g} x its recent level {self.reference():.4g}"
        return None

    def check_step(self, step: int, loss: float, hint: str) -> None:
        """After each optimizer step: raise on divergence, else remember the loss."""
        why = self.problem(loss)
        if why:
            raise DivergenceError(f"training diverged at step {step} ({why}); {hint}")
        self.recent = (self.recent + [loss])[-WINDOW:]

    def check_checkpoint(self, step: int, model: torch.nn.Module, val_loss: float, hint: str) -> None:
        """Before a checkpoint is written: its weights and its validation loss must be sane."""
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise DivergenceError(f"training diverged at step {step} (non-finite weights); {hint}")
        why = self.problem(val_loss)
        if why:
            raise DivergenceError(f"training diverged at step {step} (validation {why}); {hint}")

    def state_dict(self) -> dict:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.recent = list(state.get("recent", []))
