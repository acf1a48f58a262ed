"""The distillation losses by name, with the parameters each takes and what it needs (config: distill.loss and
distill.loss_params). No torch here: a config is checked before torch is imported; losses.py pairs each name with
its kernel.

needs_truncation: only defined on a truncated teacher; needs_logits: uses raw teacher logits, which a sparse signal
(log-probabilities) does not carry.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class LossSpec:
    name: str
    defaults: dict = field(default_factory=dict)
    needs_truncation: bool = False
    needs_logits: bool = False
    check: Callable[[dict], None] | None = None

    def bind_params(self, params: dict | None = None) -> dict:
        """The defaults with `params` set; an unknown name or a bad value is one clear ConfigError."""
        params = dict(params or {})
        for key in params:
            if key not in self.defaults:
                from ..config import _closest

                valid = list(self.defaults)
                hint = _closest(key, valid) if valid else " (it takes no parameters)"
                raise ConfigError(f"distill.loss_params.{key} is not a parameter of loss '{self.name}'{hint}")
        merged = {**self.defaults, **params}
        if self.check is not None:
            self.check(merged)
        return merged


def _check_jsd(p: dict) -> None:
    beta = p["beta"]
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
        raise ConfigError(f"jsd beta must be a number in [0, 1], got {beta!r} (set distill.loss_params.beta)")


# Adding a loss = one entry here, its kernel in losses._KERNELS, and its test
LOSS_SPECS: dict[str, LossSpec] = {spec.name: spec for spec in (
    LossSpec("kl"),
    LossSpec("reverse_kl"),
    LossSpec("soft_ce"),
    LossSpec("mse_logits", needs_logits=True),
    LossSpec("mse_probs"),
    LossSpec("jsd", defaults={"beta": 0.5}, check=_check_jsd),
    LossSpec("topk_kl", needs_truncation=True),
)}


def loss_spec(name: str) -> LossSpec:
    """The loss called `name`; an unknown name is one line with a did-you-mean."""
    if name not in LOSS_SPECS:
        close = difflib.get_close_matches(str(name), list(LOSS_SPECS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown distillation loss '{name}'{hint} (choose from {', '.join(LOSS_SPECS)})")
    return LOSS_SPECS[name]
