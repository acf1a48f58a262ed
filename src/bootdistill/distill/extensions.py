"""The trainer extensions distillation brings (runtime/extension.py): each factory returns None when its
settings are off. The save_logits check comes first: it refuses a torchrun job before any scoring runs."""

from __future__ import annotations

from .cache_write import OnlineLogits
from .selection import SaltSelection

EXTENSIONS = (OnlineLogits.from_run, SaltSelection.from_run)
