"""The distillation losses, one class each: the one place a loss is defined (config: distill.loss and
distill.loss_params). A class owns its name, its parameters with their defaults (and their check), its flags and
its per-token kernel; KD_LOSSES, the registry every other place reads (config validation, error messages, the
docs table, the tests' parameter matrix), fills itself from the subclasses.

Adding a loss: one subclass here plus its reference formula in tests/distill/test_losses.py (docs/distillation.md).

No torch import: the kernels use the tensors' own methods, so a config is checked, and `experiment --list`
runs, without loading torch.

Kernels take compute-dtype rows: s, t = raw student and teacher logits (..., V) (the teacher's already rescaled
for a teacher-only temperature), tau = the temperature, keep = the teacher's kept set (bool, or None when nothing
is truncated); they return one value per row, with no gradient into t. q = the processed teacher (softmax(t / τ) over the kept set), p = softmax(s / τ), p_S = p
renormalized over the kept set.
"""

from __future__ import annotations

import difflib
import math
from typing import ClassVar

from ..errors import ConfigError

KD_LOSSES: dict[str, type[KDLoss]] = {}  # name -> class, in definition order (filled by KDLoss.__init_subclass__)


class KDLoss:
    """A distillation loss with its parameters bound (distill.loss_params over the class's defaults)."""

    name: ClassVar[str]
    formula: ClassVar[str]  # per-token value, for the docs table
    defaults: ClassVar[dict] = {}  # its parameters, with their defaults
    fused: ClassVar[str | None] = None  # the mode of fused_kd.py's kernel that computes it ("kl", "soft_ce"), if any
    needs_logits: ClassVar[bool] = False  # uses raw teacher logits: a cached (sparse) teacher does not carry them
    needs_truncation: ClassVar[bool] = False  # only defined on a truncated teacher (top_k / top_p)
    tempered_teacher: ClassVar[bool] = True  # the teacher's logits are divided by τ (False: compared raw)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        KD_LOSSES[cls.name] = cls

    def __init__(self, params: dict | None = None):
        params = dict(params or {})
        for key in params:
            if key not in self.defaults:
                valid = list(self.defaults)
                match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
                hint = (f" (did you mean '{match[0]}'?)" if match else f" (valid: {', '.join(valid)})") if valid \
                    else " (it takes no parameters)"
                raise ConfigError(f"distill.loss_params.{key} is not a parameter of loss '{self.name}'{hint}")
        self.params = {**self.defaults, **params}
        self.check(self.params)

    def check(self, params: dict) -> None:
        """Raise a ConfigError naming the setting when a parameter's value is out of range."""

    def check_teacher(self, sparse: bool) -> None:
        """Refuse a sparse (cached, top-k) teacher signal when this loss needs the teacher's raw logits."""
        if sparse and self.needs_logits:
            raise ConfigError(f"loss '{self.name}' needs the teacher's raw logits; a cached (top-k) teacher stores "
                              f"log-probabilities: use {', '.join(loss_names(needs_logits=False))}")

    def kernel(self, s, t, tau: float, keep):
        raise NotImplementedError

    def __call__(self, s, t, tau: float, keep):
        return self.kernel(s, t, tau, keep, **self.params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


def get_loss(name: str, params: dict | None = None) -> KDLoss:
    """The loss `name` with `params` bound; an unknown name or parameter is one line with a did-you-mean."""
    return loss_class(name)(params)


def loss_class(name: str) -> type[KDLoss]:
    if name not in KD_LOSSES:
        close = difflib.get_close_matches(str(name), list(KD_LOSSES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown distillation loss '{name}'{hint} (choose from {', '.join(KD_LOSSES)})")
    return KD_LOSSES[name]


def loss_names(**flags) -> list[str]:
    """The registered names whose flags have the given values, e.g. loss_names(needs_logits=False)."""
    return [n for n, c in KD_LOSSES.items() if all(getattr(c, k) == v for k, v in flags.items())]


def docs_table() -> str:
    """The markdown table of docs/distillation.md's "KD losses" (a test keeps the two equal)."""
    rows = ["| `distill.loss` | per-token value | parameters | cached teacher |", "|---|---|---|---|"]
    for c in KD_LOSSES.values():
        params = ", ".join(f"`{k}` {v}" for k, v in c.defaults.items()) or "—"
        rows.append(f"| `{c.name}` | {c.formula} | {params} | {'no: needs raw logits' if c.needs_logits else 'yes'} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------ helpers


def _teacher(t, tau, keep):
    """q and log q of the processed teacher; log q is -inf off the kept set."""
    t = t / tau
    if keep is not None:
        t = t.masked_fill(~keep, float("-inf"))
    lq = t.log_softmax(-1)
    return lq.exp(), lq


def _zero_where(x, cond):
    return x.masked_fill(cond, 0.0)  # finite products: 0 log 0 = 0 and no inf - inf


def _student_on(s, tau, keep):
    s = s / tau
    return (s if keep is None else s.masked_fill(~keep, float("-inf"))).log_softmax(-1)


# ------------------------------------------------------------------------------------------- losses


class KL(KDLoss):
    name = "kl"
    formula = "KL(q ‖ p) = Σ q (log q − log p), × τ²"
    fused = "kl"

    def kernel(self, s, t, tau, keep):
        q, lq = _teacher(t, tau, keep)
        ls = (s / tau).log_softmax(-1)
        return (q * _zero_where(lq - ls, q == 0)).sum(-1) * tau**2


class ReverseKL(KDLoss):
    name = "reverse_kl"
    formula = "KL(p ‖ q), × τ²; a truncated teacher restricts the student: KL(p_S ‖ q)"

    def kernel(self, s, t, tau, keep):
        q, lq = _teacher(t, tau, keep)
        ls = _student_on(s, tau, keep)  # student restricted to the kept set, else KL(p || q) is infinite
        d = ls - lq
        if keep is not None:
            d = _zero_where(d, ~keep)
        return (ls.exp() * d).sum(-1) * tau**2


class SoftCE(KDLoss):
    name = "soft_ce"
    formula = "−Σ q log p (= kl + H(q), same gradient), × τ²"
    fused = "soft_ce"

    def kernel(self, s, t, tau, keep):
        q, _ = _teacher(t, tau, keep)
        return -(q * (s / tau).log_softmax(-1)).sum(-1) * tau**2


class MSELogits(KDLoss):
    name = "mse_logits"
    formula = "mean over the kept set of (z_s − z_t)² (raw logits, τ unused)"
    needs_logits = True
    tempered_teacher = False

    def kernel(self, s, t, tau, keep):
        d2 = (s - t) ** 2
        if keep is None:
            return d2.mean(-1)
        return d2.masked_fill(~keep, 0.0).sum(-1) / keep.sum(-1)


class MSEProbs(KDLoss):
    name = "mse_probs"
    formula = "Σ_v (p − q)², q = 0 outside the kept set"

    def kernel(self, s, t, tau, keep):
        q, _ = _teacher(t, tau, keep)
        return (((s / tau).softmax(-1) - q) ** 2).sum(-1)


class JSD(KDLoss):
    """β in (0, 1); the endpoints follow GKD (Agarwal et al.) / TRL: β = 0 is forward KL, β = 1 reverse KL.
    JSD_β itself goes to 0 at both ends; forward/reverse KL are the limits of JSD_β / β and JSD_β / (1 − β)."""

    name = "jsd"
    formula = "β KL(q ‖ m) + (1−β) KL(p ‖ m), m = βq + (1−β)p, × τ²; β = 0: kl, β = 1: reverse_kl"
    defaults = {"beta": 0.5}

    def check(self, params):
        beta = params["beta"]
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
            raise ConfigError(f"jsd beta must be a number in [0, 1], got {beta!r} (set distill.loss_params.beta)")

    def kernel(self, s, t, tau, keep, beta=0.5):
        if beta == 0.0:
            return KL.kernel(self, s, t, tau, keep)
        if beta == 1.0:
            return ReverseKL.kernel(self, s, t, tau, keep)
        q, lq = _teacher(t, tau, keep)
        ls = (s / tau).log_softmax(-1)
        lm = (lq + math.log(beta)).logaddexp(ls + math.log1p(-beta))  # finite: p > 0 everywhere
        kl_qm = (q * _zero_where(lq - lm, q == 0)).sum(-1)
        kl_pm = (ls.exp() * (ls - lm)).sum(-1)
        return (beta * kl_qm + (1 - beta) * kl_pm) * tau**2


class TopKKL(KDLoss):
    """SALT's restricted cross-entropy minus the restricted teacher entropy (a constant): same gradient, and 0
    when the student matches the teacher on the kept set. Without any truncation it would equal kl."""

    name = "topk_kl"
    formula = "KL(q ‖ p_S) on the teacher's kept set (SALT App. A.2 eq. 12-13), × τ²; needs top_k or top_p"
    needs_truncation = True

    def kernel(self, s, t, tau, keep):
        q, lq = _teacher(t, tau, keep)
        ls = _student_on(s, tau, keep)
        return (q * _zero_where(lq - ls, q == 0)).sum(-1) * tau**2
