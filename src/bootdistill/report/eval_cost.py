"""The evaluation FLOPs of a distilled run trained before the ledger counted them (no `flops_eval` in its
metrics), rebuilt from its config and metrics as the trainer counts them (train/trainer.py): the teacher's
validation loss once, then at every scheduled evaluation (a step divisible by train.eval_every) the student's
forward over train.eval_sequences blocks and, where the row holds KD diagnostics, both models' forwards over
distill.diag_sequences blocks. The report charges them like logged ones and marks them as reconstructed."""

from __future__ import annotations

from dataclasses import fields

from ..compute import flops_per_token
from ..config import upgrade_batch_counts
from ..errors import ConfigError
from ..shape import ModelShape

DIAGNOSTICS_KEY = "val_kl_teacher_student"  # present in an evaluation row whose KD diagnostics ran


def _shape(meta: dict | None) -> ModelShape | None:
    known = {f.name for f in fields(ModelShape)}
    try:
        return ModelShape(**{k: v for k, v in (meta or {}).items() if k in known})
    except TypeError:  # a size missing
        return None


def reconstruct_flops_eval(run) -> bool:
    """Fill `flops_eval` and `flops_eval_exact` into every metrics row of a distilled run whose ledger lacks them;
    True where it did. A run whose evaluation set or shapes its files do not give (a whole-split evaluation,
    a teacher without a recorded shape) is left as it is."""
    if run.policy == "classical" or not run.metrics or any("flops_eval" in r for r in run.metrics):
        return False
    try:
        cfg = upgrade_batch_counts(run.config)
    except ConfigError:  # a config no version wrote: nothing to rebuild from
        return False
    train, distill = cfg.get("train") or {}, cfg.get("distill") or {}
    every, sequences, diag = train.get("eval_every"), train.get("eval_sequences"), distill.get("diag_sequences")
    summary = run.summary or {}
    student, teacher = _shape(summary.get("model")), _shape((summary.get("teacher") or {}).get("model"))
    has_diag = any(DIAGNOSTICS_KEY in r for r in run.metrics)
    if not (every and sequences and student and teacher) or (has_diag and not diag):
        return False
    context = student.context
    for key, exact in (("flops_eval", False), ("flops_eval_exact", True)):
        s = flops_per_token(student, training=False, exact=exact)
        t = flops_per_token(teacher, training=False, exact=exact)
        total = sequences * context * t  # the teacher's validation loss, measured once before the first step
        for row in sorted(run.metrics, key=lambda r: r.get("step", 0)):
            if "val_loss" in row and row.get("step", 0) % every == 0:
                total += sequences * context * s
                if DIAGNOSTICS_KEY in row:
                    total += diag * context * (s + t)
            row[key] = total
    return True
