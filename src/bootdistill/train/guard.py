"""Divergence guard: stop a run whose loss is non-finite or far above its recent level, or whose validation loss
has given back much of what it had learned, and never let such weights into a checkpoint.

- A step's loss diverges above `train.divergence_factor` (default 2) times the reference level: the median of
  the last WINDOW step losses, capped at ln(V), the loss of guessing uniformly. The median ignores the ordinary
  step-to-step noise.
- A validation loss (every evaluation, and the one each checkpoint is written with) diverges above the same
  level, or once it has lost more than 1 - 1/factor (half, by default) of the best validation loss's gain over
  guessing: above ln V - (ln V - best) / factor, and more than MIN_RISE above the best (early on, when little
  is gained, a small bump is not a divergence). This catches a loss that climbs slowly, which the step level
  follows up.
- The learning rate suggested for continuing is a quarter of the one whose step led to the best validation
  loss: a climb after it means that rate was already at the edge.
"""

from __future__ import annotations

import math
import statistics

import torch

from ..errors import BootdistillError

WINDOW = 20
MIN_RISE = 0.05  # a validation loss within 5% of the best is never a divergence
LR_CUT = 4  # the suggested learning rate: this many times below the one that reached the best validation loss


class DivergenceError(BootdistillError):
    """Training diverged: nothing from the diverged steps was saved."""


def _text(hint) -> str:
    return hint() if callable(hint) else hint


class DivergenceGuard:
    def __init__(self, factor: float | None, vocab_size: int):
        self.factor = factor  # None or 0: only non-finite losses stop the run
        self.uniform = math.log(vocab_size)
        self.recent: list[float] = []
        self.last_lr: float | None = None  # the learning rate of the latest step
        self.best_val = math.inf  # the best validation loss so far, and the learning rate of the step before it
        self.best_lr: float | None = None

    def reference(self) -> float:
        return min(statistics.median(self.recent), self.uniform) if self.recent else self.uniform

    def problem(self, loss: float) -> str | None:
        """Why a step's `loss` means divergence, or None."""
        if not math.isfinite(loss):
            return f"loss {loss}"
        if self.factor and loss > self.factor * self.reference():
            return f"loss {loss:.4g} > {self.factor:g} x its recent level {self.reference():.4g}"
        return None

    def val_problem(self, loss: float) -> str | None:
        """Why a validation `loss` means divergence, or None."""
        why = self.problem(loss)
        if why or not self.factor or self.best_val >= self.uniform:
            return why
        allowed = max(self.uniform - (self.uniform - self.best_val) / self.factor, self.best_val * (1 + MIN_RISE))
        if loss > allowed:
            return (f"loss {loss:.4g} > {allowed:.4g}: it lost more than 1 - 1/{self.factor:g} of the best validation "
                    f"loss's ({self.best_val:.4g}) gain over guessing, ln V = {self.uniform:.4g}")
        return None

    def check_step(self, step: int, loss: float, hint, lr: float | None = None) -> None:
        """After each optimizer step (at learning rate `lr`): raise on divergence, else remember the loss.
        `hint`: what to do (a string, or a function that says it, called only when needed)."""
        why = self.problem(loss)
        if why:
            raise DivergenceError(f"training diverged at step {step} ({why}); {_text(hint)}")
        self.recent = (self.recent + [loss])[-WINDOW:]
        self.last_lr = lr

    def check_val(self, step: int, val_loss: float, hint, record: bool = True) -> None:
        """After each validation: raise on divergence, else remember the best loss and its learning rate (with
        `record`: only scheduled validations count, so an early stop and --resume change nothing)."""
        why = self.val_problem(val_loss)
        if why:
            raise DivergenceError(f"training diverged at step {step} (validation {why}); {_text(hint)}")
        if record and val_loss < self.best_val:
            self.best_val, self.best_lr = val_loss, self.last_lr

    def check_checkpoint(self, step: int, model: torch.nn.Module, val_loss: float, hint, record: bool = True) -> None:
        """Before a checkpoint is written: its weights and its validation loss must be sane."""
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise DivergenceError(f"training diverged at step {step} (non-finite weights); {_text(hint)}")
        self.check_val(step, val_loss, hint, record)

    def suggested_lr(self, lr_max: float) -> float:
        """train.lr_max to continue with: well below the rate that reached the best validation loss (lr_max
        when there is none yet)."""
        return min(self.best_lr or lr_max, lr_max) / LR_CUT

    def state_dict(self) -> dict:
        return {"recent": list(self.recent), "last_lr": self.last_lr, "best_val": self.best_val, "best_lr": self.best_lr}

    def load_state_dict(self, state: dict) -> None:
        self.recent = list(state.get("recent", []))
        self.last_lr = state.get("last_lr")
        self.best_val = float(state.get("best_val", math.inf))
        self.best_lr = state.get("best_lr")
