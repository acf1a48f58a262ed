"""Knowledge-distillation losses: pure functions on logits, one value per token.

Inputs are student logits z_s and teacher logits z_t of shape (..., V) (the trainer passes (B*T, V)); every
loss returns per-token values of the leading shape, 0 (and no gradient) at ignored positions, so the caller
takes the mean over the tokens it counts (`masked_mean`). Ignored positions come from `mask` (True = use)
and/or `labels == ignore_index`. Teacher logits are treated as constants (no gradient).

Each loss is a class in kd_losses.py (its formula, parameters, flags and kernel; docs/distillation.md lists
them). q = processed teacher (truncation.py: top-p then top-k on softmax(z_t), then softmax(z_t / τ) over the
kept set S), p = softmax(z_s / τ).

τ² keeps gradient magnitudes independent of τ (Hinton et al.; distillation scaling laws eq. 53).
Fast path: the losses with a `fused` mode (kl and soft_ce; and cross-entropy + z-loss, see `ce_and_kd`) run in the fused kernel of
fused_kd.py, which keeps no full-vocabulary fp32 tensor. The other losses are plain autograd code, chunked with
activation checkpointing when the logits are large.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from .fused_kd import FusedCEKD, compute_dtype, rows_per_chunk
from .kd_losses import KDLoss, get_loss
from .signals import SUPPORT_FLOOR
from .truncation import check_truncation, keep_threshold, truncates

Z_LOSS_WEIGHT = 1e-4  # distillation scaling laws App. I ("a Z-loss of 1e-4 is used for stability")
CHECKPOINT_ABOVE = 1 << 24  # reference losses chunk + recompute above this many logits (64 MB in fp32)


# ---------------------------------------------------------------------------------------------- helpers


def valid_mask(n: int, mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               ignore_index: int = -100) -> torch.Tensor | None:
    """(n,) bool of the positions that count, or None when all do."""
    valid = None
    if mask is not None:
        valid = mask.reshape(-1).to(torch.bool)
    if labels is not None:
        lv = labels.reshape(-1) != ignore_index
        valid = lv if valid is None else valid & lv
    if valid is not None and valid.numel() != n:
        raise ValueError(f"mask/labels have {valid.numel()} positions, logits have {n}")
    return valid


def masked_mean(per_token: torch.Tensor, mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                ignore_index: int = -100) -> torch.Tensor:
    """Mean over the positions that count (0 when none do)."""
    flat = per_token.reshape(-1)
    valid = valid_mask(flat.numel(), mask, labels, ignore_index)
    if valid is None:
        return flat.mean()
    return flat.sum() / valid.sum().clamp(min=1).to(flat.dtype)  # ignored positions are already 0


def _check_common(temperature: float, top_p: float, top_k: int | None, teacher_temperature: float | None = None) -> float:
    """Validates the settings; returns the teacher's temperature (the student's unless given)."""
    for name, t in (("temperature", temperature), ("teacher_temperature", teacher_temperature)):
        if t is not None and not (isinstance(t, (int, float)) and t > 0 and math.isfinite(t)):
            raise ConfigError(f"{name} must be a finite number > 0, got {t!r}")
    check_truncation(top_p, top_k)
    return float(temperature if teacher_temperature is None else teacher_temperature)


class CEKD(NamedTuple):
    ce: torch.Tensor | None  # per-token cross-entropy against labels (N,)
    kd: torch.Tensor | None  # per-token distillation loss (N,)
    z: torch.Tensor | None  # per-token (log Z)² of the student (N,)


def ce_and_kd(student_logits: torch.Tensor, labels: torch.Tensor | None, teacher_logits: torch.Tensor | None = None,
              loss: str = "kl", temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None, *,
              mask: torch.Tensor | None = None, ignore_index: int = -100, z_loss: bool = False,
              teacher_temperature: float | None = None, reuse_teacher_logits: bool = False,
              chunk_rows: int | None = None, teacher_support: bool = False, **params) -> CEKD:
    """Cross-entropy, KD and z-loss per token from one pass over the student logits (the trainer's hot path).

    teacher_logits=None skips KD (classical steps); labels=None skips CE. Losses with a `fused` mode (kl, soft_ce)
    are fully fused; the others fall back to `kd_loss` for the KD term (CE and z-loss stay fused). `params` are
    the loss's parameters (distill.loss_params). reuse_teacher_logits as in `kd_loss`: with it, a KD step needs
    no logits-sized memory beyond the teacher's own logits.
    """
    V = student_logits.shape[-1]
    zs = student_logits.reshape(-1, V)
    N = zs.shape[0]
    lab = None if labels is None else labels.reshape(-1)
    valid = valid_mask(N, mask, lab, ignore_index)
    want_kd = teacher_logits is not None
    tau_t = spec = None
    if want_kd:
        tau_t = _check_common(temperature, top_p, top_k, teacher_temperature)
        spec = get_loss(loss, params)  # an unknown loss or parameter: one line with a did-you-mean
    fuse_kd = want_kd and spec.fused is not None
    want_ce = lab is not None
    zt = teacher_logits.reshape(-1, V).detach() if fuse_kd else None
    ce = kd = z = None
    if want_ce or z_loss or fuse_kd:
        ce, kd, z = FusedCEKD.apply(zs, zt, lab, valid, float(temperature), tau_t, top_p, top_k, want_ce, fuse_kd,
                                     fuse_kd and spec.fused == "soft_ce", z_loss, rows_per_chunk(V, chunk_rows, zs.device), reuse_teacher_logits)
    if want_kd and not fuse_kd:
        kd = kd_loss(loss, zs, teacher_logits.reshape(-1, V), temperature, top_p, top_k, mask=valid,
                     teacher_temperature=teacher_temperature, teacher_support=teacher_support, **params)
    shape = student_logits.shape[:-1]
    return CEKD(*(None if v is None else v.reshape(shape) for v in (ce, kd, z)))


# ------------------------------------------------------------------------------------- reference path


def _reference_rows(kd: KDLoss, zs, zt, tau, tau_t, top_p, top_k, support=False):
    cd = compute_dtype(zs, zt)
    t_scale = tau / tau_t if kd.tempered_teacher else 1.0  # kernels divide both sides by τ

    def rows(s, t):
        with torch.autocast(s.device.type, enabled=False):
            thr = keep_threshold(t, top_p, top_k)
            keep = None if thr is None else t >= thr.unsqueeze(-1)
            if support:  # a sparse signal: the kept set is where it has values
                inside = t > SUPPORT_FLOOR
                keep = inside if keep is None else keep & inside
            t = t.to(cd)
            return kd(s.to(cd), t * t_scale if t_scale != 1.0 else t, tau, keep)

    if zs.numel() <= CHECKPOINT_ABOVE or not (torch.is_grad_enabled() and zs.requires_grad):
        return rows(zs, zt)
    c = rows_per_chunk(zs.shape[-1], None, zs.device)  # split (not slicing): its backward concatenates once
    return torch.cat([checkpoint(rows, a, b, use_reentrant=False) for a, b in zip(zs.split(c), zt.split(c))])


def kd_loss(name: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
            top_p: float = 1.0, top_k: int | None = None, *, mask: torch.Tensor | None = None,
            labels: torch.Tensor | None = None, ignore_index: int = -100,
            teacher_temperature: float | None = None, fused: bool = True,
            reuse_teacher_logits: bool = False, chunk_rows: int | None = None,
            teacher_support: bool = False, **params) -> torch.Tensor:
    """Per-token distillation loss `name` (a class of kd_losses.py); 0 at ignored positions.

    params are the loss's own parameters (e.g. jsd's beta; defaults from its class).
    temperature τ divides both sides (and scales by τ²); teacher_temperature, if given, replaces it on the
    teacher side only (SALT's teacher-only temperature: teacher_temperature = 1/ρ with temperature = 1).
    reuse_teacher_logits=True (kl/soft_ce): the teacher logits' memory is overwritten with the saved gradient
      instead of allocating one more logits-sized tensor; the caller must not read them afterwards.
    fused=False forces the plain autograd implementation of a fused loss (benchmarks, tests).
    teacher_support=True: teacher_logits is a sparse signal's dense view (signals.py): log q on the kept set,
      OUTSIDE elsewhere; the kept set is then where it has values (and top_p / top_k may cut it further).
    """
    kd = get_loss(name, params)
    tau_t = _check_common(temperature, top_p, top_k, teacher_temperature)
    V = student_logits.shape[-1]
    kd.check_teacher(sparse=teacher_support)
    if kd.needs_truncation and not teacher_support and not truncates(top_p, top_k, V):
        raise ConfigError(f"loss '{kd.name}' needs top_k < vocab size (or top_p < 1): it is only defined on the "
                          "teacher's kept set (set distill.top_k or distill.top_p)")
    zs = student_logits.reshape(-1, V)
    zt = teacher_logits.reshape(-1, V).detach()
    valid = valid_mask(zs.shape[0], mask, labels, ignore_index)
    if fused and kd.fused is not None:
        _, out, _ = FusedCEKD.apply(zs, zt, None, valid, float(temperature), tau_t, top_p, top_k, False, True,
                                     kd.fused == "soft_ce", False, rows_per_chunk(V, chunk_rows, zs.device), reuse_teacher_logits)
    else:
        out = _reference_rows(kd, zs, zt, float(temperature), tau_t, top_p, top_k, teacher_support)
        if valid is not None:
            out = torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))
    return out.reshape(student_logits.shape[:-1])


# ----------------------------------------------------------------------------------- z-loss and combine


def z_loss(student_logits: torch.Tensor, mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
           ignore_index: int = -100) -> torch.Tensor:
    """Mean over counted tokens of (log Σ_a exp z_a)² (distillation scaling laws eq. 5 / 52).

    Weight it by Z_LOSS_WEIGHT (1e-4, their App. I). `ce_and_kd(..., z_loss=True)` gives it per token, fused.
    """
    valid = valid_mask(student_logits[..., 0].numel(), mask, labels, ignore_index)
    per_token = ce_and_kd(student_logits, None, mask=valid, z_loss=True).z
    return masked_mean(per_token, valid)


def combine(ce_mean: torch.Tensor, kd_mean: torch.Tensor | None, alpha: float, mode: str = "normalized") -> torch.Tensor:
    """Student objective from batch-mean CE and KD.

    normalized (bootstrapped distillation eq. 1-2, α = 1 is the paper): CE + α · KD · (CE / KD), with the ratio
      detached. The paper rescales KD so its batch mean equals CE's "in each step": a per-step constant. Letting
      gradient flow through the ratio would make the KD term identically equal to CE (gradient 2·∇CE, no
      teacher signal at all), so the ratio must be a constant. A KD mean <= 0 (student equals teacher) gives
      ratio 0 instead of a division blow-up.
    normalized_mean: the normalized sum divided by (1 + α). Both terms have CE's magnitude, so the plain sum
      doubles the gradient while KD is on and halves it at the switch, where Adam's second moment lags by
      about 1 / (1 − β2) steps; dividing keeps the gradient's scale continuous across the switch.
    mix (SALT eq. 4, design space eq. 1, scaling laws eq. 7): (1 − α) CE + α KD.
    α = 0 returns ce_mean itself (KD may be None: the caller skips the teacher).
    """
    if mode not in ("normalized", "normalized_mean", "mix"):
        raise ConfigError(f"combine mode must be 'normalized', 'normalized_mean' or 'mix', got '{mode}'")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 0:
        return ce_mean
    if kd_mean is None:
        raise ValueError("combine: kd_mean is required when alpha > 0")
    if mode == "mix":
        return kd_mean if alpha == 1 else (1 - alpha) * ce_mean + alpha * kd_mean
    kd_d, ce_d = kd_mean.detach(), ce_mean.detach()
    ratio = torch.where(kd_d > 0, ce_d / torch.where(kd_d > 0, kd_d, torch.ones_like(kd_d)), torch.zeros_like(kd_d))
    total = ce_mean + (alpha * ratio) * kd_mean
    return total / (1 + alpha) if mode == "normalized_mean" else total
