"""The student's objective for one micro-batch: CE, plus KD and Z-loss when asked, from one fused pass."""

from __future__ import annotations

import torch

from .losses import ce_and_kd, combine
from .policies import StepKnobs


def student_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                 knobs: StepKnobs, cfg) -> tuple[torch.Tensor, float, dict]:
    """(loss to backpropagate, CE value, extra numbers to log). teacher_logits None = a classical step."""
    V = logits.shape[-1]
    out = ce_and_kd(logits.reshape(-1, V), labels.reshape(-1),
                    None if teacher_logits is None else teacher_logits.reshape(-1, V),
                    loss=knobs.loss, temperature=knobs.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                    z_loss=cfg.z_loss > 0, teacher_temperature=cfg.teacher_temperature,
                    reuse_teacher_logits=True)  # the teacher's logits are not needed after this call
    ce = out.ce.mean()
    extra = {}
    if out.kd is not None:
        kd = out.kd.mean()
        loss = combine(ce, kd, knobs.alpha, cfg.combine)
        extra["kd_loss"] = kd.item()
    else:
        loss = ce
    if out.z is not None:
        loss = loss + cfg.z_loss * out.z.mean()
    return loss, ce.item(), extra
