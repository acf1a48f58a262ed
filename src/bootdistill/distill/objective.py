"""The student's objective for one micro-batch: CE, plus KD and Z-loss when asked, from one fused pass."""

from __future__ import annotations

import torch

from .kd_losses import KDLoss, get_loss
from .losses import ce_and_kd, combine
from .policies import StepKnobs
from .signals import DenseSignal, SparseSignal


def kd_loss_of(cfg) -> KDLoss:
    """The run's KD loss with its parameters (distill.loss, distill.loss_params)."""
    return get_loss(cfg.loss, cfg.loss_params)


def student_loss(logits: torch.Tensor, labels: torch.Tensor, signal: DenseSignal | SparseSignal | torch.Tensor | None,
                 knobs: StepKnobs, cfg, kd: KDLoss | None = None) -> tuple[torch.Tensor, float, dict]:
    """(loss to backpropagate, CE value, extra numbers to log). signal None = a classical step.

    The signal is dense (teacher logits) or sparse (a truncated distribution): the loss does not care where it
    came from. knobs.loss names the loss; `kd` carries its parameters (default: from cfg).
    """
    V = logits.shape[-1]
    kd = kd if kd is not None and kd.name == knobs.loss else get_loss(knobs.loss, cfg.loss_params)
    teacher, sparse = None, False
    if isinstance(signal, SparseSignal):
        teacher, sparse = signal.dense_view(V).to(logits.device), True
    elif isinstance(signal, DenseSignal):
        teacher = signal.logits.reshape(-1, V)
    elif signal is not None:  # plain teacher logits
        teacher = signal.reshape(-1, V)
    out = ce_and_kd(logits.reshape(-1, V), labels.reshape(-1), teacher,
                    loss=knobs.loss, temperature=knobs.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                    z_loss=cfg.z_loss > 0, teacher_temperature=knobs.teacher_temperature,
                    reuse_teacher_logits=True,  # the teacher's logits are not needed after this call
                    teacher_support=sparse, **kd.params)
    ce = out.ce.mean()
    extra = {}
    if out.kd is not None:
        kd_mean = out.kd.mean()
        loss = combine(ce, kd_mean, knobs.alpha, cfg.combine)
        extra["kd_loss"] = kd_mean.item()
    else:
        loss = ce
    if out.z is not None:
        loss = loss + cfg.z_loss * out.z.mean()
    return loss, ce.item(), extra


@torch.no_grad()
def teacher_ce(signal: DenseSignal, labels: torch.Tensor, rows: int = 4096) -> float:
    """The teacher's mean cross-entropy on the batch's labels, from the logits KD already has (fp32, in row
    chunks: no logits-sized fp32 copy). A log-sum-exp per token: nothing beside the teacher's forward pass."""
    V = signal.logits.shape[-1]
    z, y = signal.logits.reshape(-1, V), labels.reshape(-1)
    total = 0.0
    for r0 in range(0, z.shape[0], rows):
        chunk = z[r0:r0 + rows].float()
        total += (torch.logsumexp(chunk, -1) - chunk.gather(-1, y[r0:r0 + rows, None]).squeeze(-1)).sum().item()
    return total / z.shape[0]
