"""Scaling laws for distillation: fit the supervised and distillation laws, plan compute-optimal budgets.

Kept import-light (numpy only): the bootstrap's worker processes import `scaling.fit`, and torch is not needed
there. Import `scaling.plan` (which uses `bootdistill.compute`) explicitly.
"""

from .laws import (
    DISTILLATION_KEYS,
    SUPERVISED_KEYS,
    TABLE6_DISTILLATION,
    TABLE6_SUPERVISED,
    distillation_loss,
    supervised_loss,
)

__all__ = [
    "DISTILLATION_KEYS",
    "SUPERVISED_KEYS",
    "TABLE6_DISTILLATION",
    "TABLE6_SUPERVISED",
    "distillation_loss",
    "supervised_loss",
]
