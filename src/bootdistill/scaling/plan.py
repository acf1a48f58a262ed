"""Plan budgets with the fitted laws: compute-optimal distillation (eq. 10 under eq. 9, solved with SLSQP),
the supervised alternative, and a before-training prediction for bootstrapped distillation.

Sizes and token counts are searched in [1M, 100P] (App. D.4.1) unless told otherwise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import brentq, minimize, minimize_scalar

from ..compute import SCENARIO_TITLES, SCENARIOS, fixed_aspect_flops_per_token
from ..errors import BootdistillError, ConfigError, DataError
from . import laws

RANGE = (1e6, 1e17)
TABLE6_N_RANGE = (1.0e8, 1.3e10)  # the model sizes Table 6 was fitted on


@dataclass
class Laws:
    """Coefficients of both laws and the FLOPs model F(N) = 2N(1 + c1 N^-1/3 + c2 N^-2/3) (c1 = c2 = 0: 2N)."""

    supervised: dict
    distillation: dict
    c1: float = laws.PAPER_FLOPS_C1
    c2: float = laws.PAPER_FLOPS_C2
    source: str = "Table 6"
    n_range: tuple = TABLE6_N_RANGE

    def F(self, n):
        return fixed_aspect_flops_per_token(np.asarray(n, float), self.c1, self.c2)

    def L(self, n, d):
        return laws.supervised_loss(n, d, self.supervised)

    def LS(self, n_s, d_s, l_t):
        return laws.distillation_loss(n_s, d_s, l_t, self.distillation, self.supervised)

    def tokens_for_loss(self, n, loss) -> float:
        """D with L(N, D) = loss (inf when loss is at or below what N can reach with infinite data)."""
        p = self.supervised
        rest = (loss - p["E"]) ** (1 / p["gamma"]) - p["A"] / n ** p["alpha"] if loss > p["E"] else -1.0
        return (p["B"] / rest) ** (1 / p["beta"]) if rest > 0 else math.inf


def load_laws(path=None, flops: str = "paper") -> Laws:
    """Table 6 (path None), or the JSON written by `bootdistill fit`; flops 'paper', '6n' or 'C1,C2'."""
    if flops == "paper":
        c1, c2 = laws.PAPER_FLOPS_C1, laws.PAPER_FLOPS_C2
    elif flops == "6n":
        c1 = c2 = 0.0
    else:
        try:
            c1, c2 = (float(x) for x in flops.split(","))
        except ValueError:
            raise ConfigError(f"--flops must be 'paper', '6n' or 'C1,C2' (two numbers), got {flops!r}") from None
    if path is None:
        return Laws(dict(laws.TABLE6_SUPERVISED), dict(laws.TABLE6_DISTILLATION), c1, c2)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read coefficients ({e}); pass the scaling_fit.json of `bootdistill fit`") from None
    dist = data.get("distillation")
    if not dist or "coefficients" not in dist or not dist.get("supervised"):
        raise DataError(f"{path} has no distillation fit; fit distillation runs too, or omit --coefficients for Table 6")
    if not dist.get("converged", True):
        raise DataError(f"{path}: its distillation fit did not converge; refit before planning with it")
    n_range = tuple(dist.get("range", {}).get("N", (0, math.inf)))
    return Laws(dict(dist["supervised"]), dict(dist["coefficients"]), c1, c2, str(path), n_range)


def flops(lw: Laws, scenario: str, n_s, d_s, n_t, d_t) -> dict:
    """Eq. 9 split into its terms."""
    dl, dp = SCENARIOS[scenario]
    parts = {"student": 3 * lw.F(n_s) * d_s, "teacher_logits": dl * lw.F(n_t) * d_s,
             "teacher_pretraining": dp * 3 * lw.F(n_t) * d_t}
    parts["total"] = sum(parts.values())
    return {k: float(v) for k, v in parts.items()}


def _check_budget(lw: Laws, scenario: str, n_s: float, budget: float, rng) -> None:
    lo, hi = rng
    need = flops(lw, scenario, n_s, lo, lo, lo)["total"]
    if not budget >= need:
        raise ConfigError(f"budget {budget:.3g} FLOPs is too small for a {n_s:.3g}-parameter student "
                          f"({SCENARIO_TITLES[scenario]}): at least {need:.3g} FLOPs ({lo:.0e} tokens); "
                          "raise --budget or pick a smaller --student")
    if 3 * lw.F(n_s) * hi < budget and scenario == "best":
        raise ConfigError(f"budget {budget:.3g} FLOPs buys more than {hi:.0e} student tokens, the search range; "
                          "lower --budget or widen --range")


def plan_distillation(lw: Laws, n_s: float, budget: float, scenario: str, rng=RANGE) -> dict:
    """Eq. 10: min over (D_S, N_T, D_T) of L_S s.t. FLOPs = budget, by SLSQP from a few starts, best kept."""
    _check_budget(lw, scenario, n_s, budget, rng)
    dl, dp = SCENARIOS[scenario]
    lo, hi = np.log(rng[0]), np.log(rng[1])
    fs = float(lw.F(n_s))

    def loss(x):
        d_s, n_t, d_t = np.exp(x)
        return float(lw.LS(n_s, d_s, lw.L(n_t, d_t)))

    def log_flops(x):
        d_s, n_t, d_t = np.exp(x)
        return math.log(flops(lw, scenario, n_s, d_s, n_t, d_t)["total"]) - math.log(budget)

    starts = []
    for n_t in (n_s / 4, n_s, 4 * n_s):
        ft = float(lw.F(n_t))
        for q in ((0.1, 0.5) if dp else (0.0,)):
            d_t = q * budget / (3 * ft) if dp else 20 * n_t
            d_s = (1 - q) * budget / (3 * fs + dl * ft)
            x0 = np.clip(np.log([d_s, n_t, d_t]), lo, hi)
            starts.append(x0)
    best, tried = None, []
    for x0 in starts:
        r = minimize(loss, x0, method="SLSQP", bounds=[(lo, hi)] * 3,
                     constraints=[{"type": "eq", "fun": log_flops}], options={"ftol": 1e-13, "maxiter": 500})
        tried.append(r.message)
        if r.success and abs(log_flops(r.x)) < 1e-6 and (best is None or r.fun < best.fun):
            best = r
    if best is None:
        raise BootdistillError(f"planner did not converge for a {n_s:.3g} student at {budget:.3g} FLOPs "
                               f"({scenario}): SLSQP said {tried[0]!r}; try another --range")
    d_s, n_t, d_t = np.exp(best.x)
    # project onto the constraint exactly (SLSQP leaves ~1e-10): the budget is spent to the FLOP
    d_s = (budget - dp * 3 * float(lw.F(n_t)) * d_t) / (3 * fs + dl * float(lw.F(n_t)))
    l_t = float(lw.L(n_t, d_t))
    out = {"scenario": scenario, "student_params": n_s, "budget": budget, "student_tokens": float(d_s),
           "teacher_params": float(n_t), "teacher_tokens": float(d_t), "teacher_loss": l_t,
           "student_loss": float(lw.LS(n_s, d_s, l_t)), "flops": flops(lw, scenario, n_s, d_s, n_t, d_t),
           "constraint_residual_slsqp": float(log_flops(best.x))}
    if scenario in ("best", "inference"):  # teacher training is free here: also give the cheapest teacher
        out["cheapest_teacher"] = cheapest_teacher(lw, l_t, rng)
    return out


def supervised_same_size(lw: Laws, n: float, budget: float) -> dict:
    d = budget / (3 * float(lw.F(n)))
    return {"params": n, "tokens": d, "loss": float(lw.L(n, d))}


def supervised_compute_optimal(lw: Laws, budget: float, rng=RANGE) -> dict:
    """Eq. 2: the model size and tokens with the lowest supervised loss for this budget."""
    lo, hi = np.log(rng[0]), np.log(rng[1])
    if 3 * float(lw.F(rng[0])) * rng[0] > budget:
        raise ConfigError(f"budget {budget:.3g} FLOPs is too small for any model: at least "
                          f"{3 * float(lw.F(rng[0])) * rng[0]:.3g} FLOPs ({rng[0]:.0e} parameters and tokens)")
    d_of = lambda ln: budget / (3 * float(lw.F(math.exp(ln))))  # noqa: E731
    # keep D inside the range too: D(N) falls with N, so the range of D bounds N from both sides
    ln_n_hi = hi if d_of(hi) >= rng[0] else brentq(lambda ln: math.log(d_of(ln)) - lo, lo, hi)
    ln_n_lo = lo if d_of(lo) <= rng[1] else brentq(lambda ln: math.log(d_of(ln)) - hi, lo, ln_n_hi)
    r = minimize_scalar(lambda ln: float(lw.L(math.exp(ln), d_of(ln))), bounds=(ln_n_lo, ln_n_hi), method="bounded",
                        options={"xatol": 1e-9})
    n = math.exp(r.x)
    return {"params": n, "tokens": d_of(r.x), "loss": float(r.fun)}


def cheapest_teacher(lw: Laws, l_t: float, rng=RANGE) -> dict | None:
    """The supervised model reaching loss l_t for the least training compute (None if out of range)."""
    lo, hi = np.log(rng[0]), np.log(rng[1])

    def cost(ln):
        d = lw.tokens_for_loss(math.exp(ln), l_t)
        return 3 * float(lw.F(math.exp(ln))) * d if d <= rng[1] else math.inf

    grid = np.linspace(lo, hi, 200)
    costs = np.array([cost(g) for g in grid])
    if not np.isfinite(costs).any():
        return None
    i = int(np.argmin(costs))
    r = minimize_scalar(cost, bounds=(grid[max(i - 1, 0)], grid[min(i + 1, 199)]), method="bounded")
    n = math.exp(r.x)
    return {"params": n, "tokens": lw.tokens_for_loss(n, l_t), "train_flops": float(r.fun)}


def best_teacher_loss(lw: Laws, n_s: float, d_s: float, rng=RANGE) -> float:
    """argmin over reachable teacher losses of L_S(N_S, D_S, L_T): the bottom of the capacity-gap U."""
    l_lo, l_hi = float(lw.L(rng[1], rng[1])), float(lw.L(rng[0], rng[0]))
    grid = np.linspace(l_lo, l_hi, 400)
    i = int(np.argmin(lw.LS(n_s, d_s, grid)))
    r = minimize_scalar(lambda lt: float(lw.LS(n_s, d_s, lt)), bounds=(grid[max(i - 1, 0)], grid[min(i + 1, 399)]),
                        method="bounded", options={"xatol": 1e-10})
    return float(r.x)


def plan_tokens(lw: Laws, n_s: float, d_s: float, scenario: str, rng=RANGE) -> dict:
    """A token budget (§5.2): the teacher loss that gives the best student, the cheapest teacher reaching it,
    and what the plan costs under the scenario's accounting."""
    l_t = best_teacher_loss(lw, n_s, d_s, rng)
    teacher = cheapest_teacher(lw, l_t, rng)
    n_t, d_t = (teacher["params"], teacher["tokens"]) if teacher else (math.nan, math.nan)
    return {"scenario": scenario, "student_params": n_s, "student_tokens": d_s, "teacher_loss": l_t,
            "student_loss": float(lw.LS(n_s, d_s, l_t)), "teacher_params": n_t, "teacher_tokens": d_t,
            "flops": flops(lw, scenario, n_s, d_s, n_t, d_t)}


def decide(distilled_loss: float, supervised_loss: float) -> tuple[str, str]:
    """('distill' | 'supervised', one plain sentence)."""
    gap = (supervised_loss - distilled_loss) / supervised_loss
    if gap > 1e-4:
        return "distill", (f"distill: the student reaches {distilled_loss:.4f} against {supervised_loss:.4f} "
                           f"for supervised training of the same size ({100 * gap:.2f}% lower loss)")
    return "supervised", (f"train supervised: it reaches {supervised_loss:.4f}, distillation "
                          f"{distilled_loss:.4f} ({100 * -gap:.2f}% higher)")


def crossover_compute(lw: Laws, n_s: float, rng=RANGE, scenario: str = "best") -> float | None:
    """The budget above which supervised training of an N_S model beats best-case distillation (None: none in
    range). Below it, the best teacher makes a better student than the same compute spent on data."""
    if scenario != "best":
        raise ConfigError("crossover_compute is defined for the best case only")
    fs = 3 * float(lw.F(n_s))

    def gap(ln_d):
        d = math.exp(ln_d)
        return float(lw.LS(n_s, d, best_teacher_loss(lw, n_s, d, rng))) - float(lw.L(n_s, d))

    grid = np.linspace(np.log(rng[0]), np.log(rng[1]), 60)
    vals = [gap(g) for g in grid]
    for a, b, va, vb in zip(grid[:-1], grid[1:], vals[:-1], vals[1:]):
        if va < 0 <= vb:
            return fs * math.exp(brentq(gap, a, b, xtol=1e-6))
    return None


def predict_bootstrapped(lw: Laws, n_s: float, student_tokens: float, n_t: float, teacher_flops: float,
                         teacher_loss: float | None = None, margin: float = 0.05, count_teacher_training: bool = True,
                         rng=RANGE) -> dict:
    """Compute for an N_S student to reach its classical loss L(N_S, D) without and with an (N_T, C_T) teacher.

    Bootstrapped: distill for D1 tokens, then train classically. The laws do not model the switch; we assume the
    student continues like a classically trained model that had reached the same loss (its 'effective tokens'
    L^-1(L_S(D1))). D1 is reported for the paper's rule (switch within `margin` of the teacher's loss) and at
    the optimum of the predicted total compute."""
    for name, v in (("student params", n_s), ("student tokens", student_tokens), ("teacher params", n_t),
                    ("teacher FLOPs", teacher_flops)):
        if not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"{name} must be a positive number, got {v}")
    fs, ft = float(lw.F(n_s)), float(lw.F(n_t))
    d_t = teacher_flops / (3 * ft)
    l_t = teacher_loss if teacher_loss is not None else float(lw.L(n_t, d_t))
    target = float(lw.L(n_s, student_tokens))
    classical = 3 * fs * student_tokens
    fixed = teacher_flops if count_teacher_training else 0.0
    per_token = 3 * fs + ft

    def total(d1: float) -> float:
        d_eff = lw.tokens_for_loss(n_s, float(lw.LS(n_s, d1, l_t)))
        return fixed + per_token * d1 + 3 * fs * max(student_tokens - d_eff, 0.0)

    ls = lambda d: float(lw.LS(n_s, d, l_t))  # noqa: E731
    lo, hi = math.log(rng[0]), math.log(rng[1])

    def tokens_to(loss):  # L_S falls with D_S: the tokens at which it reaches `loss`, None if never in range
        if not ls(rng[0]) > loss > ls(rng[1]):
            return None
        return math.exp(brentq(lambda x: ls(math.exp(x)) - loss, lo, hi))

    d_distill = tokens_to(target)
    switch_loss = (1 + margin) * l_t
    d_switch = tokens_to(switch_loss)
    if student_tokens <= rng[0]:
        raise ConfigError(f"student tokens {student_tokens:.3g} are below the search range ({rng[0]:.0e}); "
                          "lower --range LO")
    grid = np.linspace(lo, math.log(student_tokens), 60)  # a grid first: the total need not be unimodal
    i = int(np.argmin([total(math.exp(x)) for x in grid]))
    r = minimize_scalar(lambda x: total(math.exp(x)), bounds=(grid[max(i - 1, 0)], grid[min(i + 1, 59)]),
                        method="bounded")
    d_opt = math.exp(r.x)
    out = {
        "student_params": n_s, "student_tokens": student_tokens, "target_loss": target,
        "teacher_params": n_t, "teacher_tokens": d_t, "teacher_loss": l_t, "teacher_flops": teacher_flops,
        "counted_teacher_training": count_teacher_training, "classical_flops": classical, "margin": margin,
        "distill_only": None if d_distill is None else {"tokens": d_distill, "flops": fixed + per_token * d_distill},
        "margin_switch": None if d_switch is None or d_switch > student_tokens else
        {"tokens": d_switch, "loss": switch_loss, "flops": total(d_switch)},
        "best_switch": {"tokens": d_opt, "loss": ls(d_opt), "flops": float(r.fun)},
    }
    best = min([v["flops"] for k, v in out.items() if k in ("distill_only", "margin_switch", "best_switch") and v])
    out["saving"] = 1 - best / classical
    out["decision"] = ("use the teacher" if best < classical else "train classically")
    return out
