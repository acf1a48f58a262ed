"""Knowledge-distillation losses: pure functions on logits, one value per token.

Inputs are student logits z_s and teacher logits z_t of shape (..., V) (the trainer passes (B*T, V)); every
loss returns per-token values of the leading shape, 0 (and no gradient) at ignored positions, so the caller
takes the mean over the tokens it counts (`masked_mean`). Ignored positions come from `mask` (True = use)
and/or `labels == ignore_index`. Teacher logits are treated as constants (no gradient).

q = processed teacher (truncation.py: top-p then top-k on softmax(z_t), then softmax(z_t / τ) over the kept
set S), p = softmax(z_s / τ), p_S = p renormalized over S.

| name        | per-token value                                   | τ² | truncated teacher                       |
|-------------|---------------------------------------------------|----|-----------------------------------------|
| kl          | KL(q ‖ p) = Σ q (log q − log p)                  | ✓  | sum over S only                          |
| reverse_kl  | KL(p ‖ q)                                         | ✓  | student restricted: KL(p_S ‖ q)          |
| soft_ce     | −Σ q log p  (= kl + H(q), same gradient)          | ✓  | sum over S only                          |
| mse_logits  | mean_v (z_s − z_t)²  (raw logits, τ unused)       |    | mean over S                              |
| mse_probs   | Σ_v (p − q)²                                      |    | q = 0 outside S                          |
| jsd         | β KL(q ‖ m) + (1−β) KL(p ‖ m), m = βq + (1−β)p    | ✓  | q = 0 outside S (always finite)          |
| topk_kl     | KL(q ‖ p_S) (SALT App. A.2 eq. 12-13)             | ✓  | needs top_k / top_p; S = the kept set    |

τ² keeps gradient magnitudes independent of τ (Hinton et al.; distillation scaling laws eq. 53).
jsd: β in (0, 1); the endpoints follow GKD (Agarwal et al.) / TRL: β = 0 is forward KL, β = 1 is reverse KL.
JSD_β itself goes to 0 at both ends; forward/reverse KL are the limits of JSD_β / β and JSD_β / (1 − β).
topk_kl is SALT's restricted cross-entropy minus the restricted teacher entropy (a constant): same gradient,
and 0 when the student matches the teacher on S. Without any truncation it equals kl.

Fast path: kl and soft_ce (and cross-entropy + z-loss, see `ce_and_kd`) run in the fused kernel of
fused_kd.py, which keeps no full-vocabulary fp32 tensor. The other losses are plain autograd code, chunked with
activation checkpointing when the logits are large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from .fused_kd import FusedCEKD, compute_dtype, rows_per_chunk
from .loss_specs import LOSS_SPECS, LossSpec, loss_spec
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
              chunk_rows: int | None = None, **kw) -> CEKD:
    """Cross-entropy, KD and z-loss per token from one pass over the student logits (the trainer's hot path).

    teacher_logits=None skips KD (classical steps); labels=None skips CE. kl/soft_ce are fully fused; other
    losses fall back to `kd_loss` for the KD term (CE and z-loss stay fused). reuse_teacher_logits as in
    `kd_loss`: with it, a KD step needs no logits-sized memory beyond the teacher's own logits.
    """
    V = student_logits.shape[-1]
    zs = student_logits.reshape(-1, V)
    N = zs.shape[0]
    lab = None if labels is None else labels.reshape(-1)
    valid = valid_mask(N, mask, lab, ignore_index)
    want_kd = teacher_logits is not None
    tau_t = None
    if want_kd:
        tau_t = _check_common(temperature, top_p, top_k, teacher_temperature)
        _resolve(loss)
    fuse_kd = want_kd and loss in ("kl", "soft_ce")
    want_ce = lab is not None
    zt = teacher_logits.reshape(-1, V).detach() if fuse_kd else None
    ce = kd = z = None
    if want_ce or z_loss or fuse_kd:
        ce, kd, z = FusedCEKD.apply(zs, zt, lab, valid, float(temperature), tau_t, top_p, top_k, want_ce, fuse_kd,
                                     loss == "soft_ce", z_loss, rows_per_chunk(V, chunk_rows, zs.device), reuse_teacher_logits)
    if want_kd and not fuse_kd:
        kd = kd_loss(loss, zs, teacher_logits.reshape(-1, V), temperature, top_p, top_k, mask=valid,
                     teacher_temperature=teacher_temperature, **kw)
    shape = student_logits.shape[:-1]
    return CEKD(*(None if v is None else v.reshape(shape) for v in (ce, kd, z)))


# ------------------------------------------------------------------------------------- reference path
# Plain autograd on compute-dtype rows; s, t are raw logits chunks, keep the kept set (or None).


def _teacher(t, tau, keep):
    """q and log q of the processed teacher; log q is -inf off the kept set."""
    t = t / tau
    if keep is not None:
        t = t.masked_fill(~keep, float("-inf"))
    lq = torch.log_softmax(t, -1)
    return lq.exp(), lq


def _zero_where(x, cond):
    return x.masked_fill(cond, 0.0)  # finite products: 0 log 0 = 0 and no inf - inf


def _student_on(s, tau, keep):
    s = s / tau
    return torch.log_softmax(s if keep is None else s.masked_fill(~keep, float("-inf")), -1)


def _kl(s, t, tau, keep, **_):
    q, lq = _teacher(t, tau, keep)
    ls = torch.log_softmax(s / tau, -1)
    return (q * _zero_where(lq - ls, q == 0)).sum(-1) * tau**2


def _soft_ce(s, t, tau, keep, **_):
    q, _ = _teacher(t, tau, keep)
    return -(q * torch.log_softmax(s / tau, -1)).sum(-1) * tau**2


def _reverse_kl(s, t, tau, keep, **_):
    q, lq = _teacher(t, tau, keep)
    ls = _student_on(s, tau, keep)  # student restricted to the kept set, else KL(p || q) is infinite
    d = ls - lq
    if keep is not None:
        d = _zero_where(d, ~keep)
    return (ls.exp() * d).sum(-1) * tau**2


def _topk_kl(s, t, tau, keep, **_):
    q, lq = _teacher(t, tau, keep)
    ls = _student_on(s, tau, keep)
    return (q * _zero_where(lq - ls, q == 0)).sum(-1) * tau**2


def _jsd(s, t, tau, keep, beta: float = 0.5, **_):
    if beta == 0.0:
        return _kl(s, t, tau, keep)
    if beta == 1.0:
        return _reverse_kl(s, t, tau, keep)
    q, lq = _teacher(t, tau, keep)
    ls = torch.log_softmax(s / tau, -1)
    lm = torch.logaddexp(lq + math.log(beta), ls + math.log1p(-beta))  # finite: p > 0 everywhere
    kl_qm = (q * _zero_where(lq - lm, q == 0)).sum(-1)
    kl_pm = (ls.exp() * (ls - lm)).sum(-1)
    return (beta * kl_qm + (1 - beta) * kl_pm) * tau**2


def _mse_logits(s, t, tau, keep, **_):
    d2 = (s - t) ** 2
    if keep is None:
        return d2.mean(-1)
    return d2.masked_fill(~keep, 0.0).sum(-1) / keep.sum(-1)


def _mse_probs(s, t, tau, keep, **_):
    q, _ = _teacher(t, tau, keep)
    return ((torch.softmax(s / tau, -1) - q) ** 2).sum(-1)


@dataclass(frozen=True)
class KDLoss:
    """One distillation loss: its spec (name, parameters, needs; loss_specs.py), its per-token kernel and the
    parameters bound to it (config: distill.loss_params)."""

    spec: LossSpec
    kernel: Callable
    params: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def needs_truncation(self) -> bool:
        return self.spec.needs_truncation

    @property
    def needs_logits(self) -> bool:
        return self.spec.needs_logits

    def bind(self, params: dict | None = None) -> "KDLoss":
        """This loss with its parameters set (unknown names and bad values are one clear ConfigError)."""
        return replace(self, params=self.spec.bind_params(params))


_KERNELS: dict[str, Callable] = {"kl": _kl, "reverse_kl": _reverse_kl, "soft_ce": _soft_ce, "mse_logits": _mse_logits,
                                 "mse_probs": _mse_probs, "jsd": _jsd, "topk_kl": _topk_kl}
KD_LOSSES: dict[str, KDLoss] = {name: KDLoss(spec, _KERNELS[name], dict(spec.defaults)) for name, spec in LOSS_SPECS.items()}


def _resolve(name: str) -> Callable:
    loss_spec(name)  # an unknown name: one line with a did-you-mean
    return _KERNELS[name]


def get_loss(name: str, params: dict | None = None) -> KDLoss:
    """The loss `name` with its parameters bound (distill.loss + distill.loss_params)."""
    _resolve(name)
    return KD_LOSSES[name].bind(params)


def _reference_rows(name, zs, zt, tau, tau_t, top_p, top_k, kw, support=False):
    cd = compute_dtype(zs, zt)
    fn = _KERNELS[name]
    t_scale = tau / tau_t if name != "mse_logits" else 1.0  # kernels divide both sides by τ

    def rows(s, t):
        with torch.autocast(s.device.type, enabled=False):
            thr = keep_threshold(t, top_p, top_k)
            keep = None if thr is None else t >= thr.unsqueeze(-1)
            if support:  # a sparse signal: the kept set is where it has values
                inside = t > SUPPORT_FLOOR
                keep = inside if keep is None else keep & inside
            t = t.to(cd)
            return fn(s.to(cd), t * t_scale if t_scale != 1.0 else t, tau, keep, **kw)

    if zs.numel() <= CHECKPOINT_ABOVE or not (torch.is_grad_enabled() and zs.requires_grad):
        return rows(zs, zt)
    c = rows_per_chunk(zs.shape[-1], None, zs.device)  # split (not slicing): its backward concatenates once
    return torch.cat([checkpoint(rows, a, b, use_reentrant=False) for a, b in zip(zs.split(c), zt.split(c))])


def kd_loss(name: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
            top_p: float = 1.0, top_k: int | None = None, *, mask: torch.Tensor | None = None,
            labels: torch.Tensor | None = None, ignore_index: int = -100, beta: float = 0.5,
            teacher_temperature: float | None = None, fused: bool = True,
            reuse_teacher_logits: bool = False, chunk_rows: int | None = None,
            teacher_support: bool = False) -> torch.Tensor:
    """Per-token distillation loss `name` (see the module table); 0 at ignored positions.

    temperature τ divides both sides (and scales by τ²); teacher_temperature, if given, replaces it on the
    teacher side only (SALT's teacher-only temperature: teacher_temperature = 1/ρ with temperature = 1).
    reuse_teacher_logits=True (kl/soft_ce): the teacher logits' memory is overwritten with the saved gradient
      instead of allocating one more logits-sized tensor; the caller must not read them afterwards.
    fused=False forces the plain autograd implementation of kl/soft_ce (benchmarks, tests).
    teacher_support=True: teacher_logits is a sparse signal's dense view (signals.py): log q on the kept set,
      OUTSIDE elsewhere; the kept set is then where it has values (and top_p / top_k may cut it further).
    """
    _resolve(name)
    tau_t = _check_common(temperature, top_p, top_k, teacher_temperature)
    V = student_logits.shape[-1]
    if teacher_support and KD_LOSSES[name].needs_logits:
        raise ConfigError(f"loss '{name}' needs the teacher's raw logits; a cached (top-k) teacher stores log-probabilities: "
                          "use kl, soft_ce, topk_kl, reverse_kl, jsd or mse_probs")
    if name == "topk_kl" and not teacher_support and not truncates(top_p, top_k, V):
        raise ConfigError("loss 'topk_kl' needs top_k < vocab size (or top_p < 1): it is KL on the teacher's top-k set")
    if name == "jsd" and not 0.0 <= beta <= 1.0:
        raise ConfigError(f"jsd beta must be in [0, 1], got {beta}")
    zs = student_logits.reshape(-1, V)
    zt = teacher_logits.reshape(-1, V).detach()
    valid = valid_mask(zs.shape[0], mask, labels, ignore_index)
    if fused and name in ("kl", "soft_ce"):
        _, out, _ = FusedCEKD.apply(zs, zt, None, valid, float(temperature), tau_t, top_p, top_k, False, True,
                                     name == "soft_ce", False, rows_per_chunk(V, chunk_rows, zs.device), reuse_teacher_logits)
    else:
        out = _reference_rows(name, zs, zt, float(temperature), tau_t, top_p, top_k,
                              {"beta": beta} if name == "jsd" else {}, teacher_support)
        if valid is not None:
            out = torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))
    return out.reshape(student_logits.shape[:-1])


def _named(name: str) -> Callable[..., torch.Tensor]:
    def f(student_logits, teacher_logits, temperature=1.0, top_p=1.0, top_k=None, **kw):
        return kd_loss(name, student_logits, teacher_logits, temperature, top_p, top_k, **kw)

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"Per-token '{name}' distillation loss; arguments as `kd_loss`."
    return f


LOSSES: dict[str, Callable[..., torch.Tensor]] = {name: _named(name) for name in _KERNELS}


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
