"""Fit the scaling laws as App. F does: Huber loss (delta = 1e-4) on log L in log-sum-exp form, L-BFGS-B from
the paper's grid of initialisations, best fit kept; 90% intervals from a bootstrap over the points.

Search. The paper's grids hold 9,600 (supervised) and 216,000 (distillation) starting points. We evaluate the
objective at every one of them (vectorised, cheap) and run L-BFGS-B from the `top_k` best (`top_k=0` runs it
from all of them, the literal procedure). Noise-free, the top 8 already find the exact optimum; with 0.5% noise
the top 32 matched searches with hundreds of extra starts in most trials, and once stopped at a local optimum
0.05% higher with the same predictions (docs/scaling.md, "Search").

Precision. The distillation law is badly conditioned (c1 ~ 500 next to f1 ~ 0.1, and c1 f1 trades against
d1^(-1/f1)), so L-BFGS-B in raw variables stalls far from the optimum. We run it on diagonally rescaled
variables (same objective, same minimiser), then restart it with Jacobi scaling (1 / column norm of the
Jacobian at the current point) until a restart no longer improves: noise-free points are then recovered to
~1e-9. The objective is divided by delta^2 so that tolerances are not lost under the tiny Huber values.

Bootstrap. Each resample (rows drawn with replacement) is refit warm-started from the point estimate (Jacobi
scaling from the first step), in worker processes over the cores; intervals are the 5th and 95th percentiles of
the converged refits, and the refits that did not converge are counted.
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from ..errors import DataError
from . import laws

HUBER_DELTA = 1e-4
_F = [0.0, 5.0, 10.0, 15.0, 20.0]
PAPER_GRID = {
    # (log A, log B, log E, alpha, beta, gamma), App. F.1
    "supervised": [_F, _F, [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]] + [[0.0, 0.5, 1.0, 1.5]] * 3,
    # (log A', log B', alpha', beta', gamma', c0, c1, f1, log d1), App. F.2
    "distillation": [_F, _F] + [[0.0, 0.5, 1.0]] * 3 + [[0.0, 0.5, 1.0, 1.5]] * 3 + [[-1.0, -0.5, 0.0, 0.5, 1.0]],
}
# Grid values of 0 for f1 (a division) are lifted to its lower bound. log A, log B are bounded below only so that
# a vanishing term stops at exp(-50) instead of underflowing to 0 (an upper bound slowed L-BFGS-B down 3-10x).
_LOG_AB = (-50.0, None)
BOUNDS = {
    "supervised": [_LOG_AB, _LOG_AB, (-10.0, 10.0), (0.0, 3.0), (0.0, 3.0), (0.0, 3.0)],
    "distillation": [_LOG_AB, _LOG_AB, (0.0, 3.0), (0.0, 3.0), (0.0, 3.0),
                     (0.0, 20.0), (0.0, 1e4), (1e-3, 10.0), (-3.0, 3.0)],
}
# Typical magnitudes: the first preconditioner, before Jacobi scaling takes over.
FIXED_SCALE = {
    "supervised": np.array([1.0, 1.0, 0.1, 0.1, 0.1, 0.1]),
    "distillation": np.array([1.0, 1.0, 0.1, 0.1, 0.1, 1.0, 100.0, 0.01, 0.1]),
}
N_COEF = {"supervised": 6, "distillation": 9}
LBFGS = {"maxiter": 20000, "maxfun": 40000, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 30}


@dataclass
class Points:
    """Observations in the fitter's columns: supervised (log N, log D); distillation (log N_S, log D_S, log L_T,
    log L~_S) with L~_S from a fixed supervised law; y = log of the observed loss."""

    law: str
    cols: tuple
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx) -> "Points":
        return Points(self.law, tuple(c[idx] for c in self.cols), self.y[idx])

    def predict(self, theta, grad=False):
        f = laws.supervised_log_loss if self.law == "supervised" else laws.distillation_log_loss
        return f(theta, *self.cols, grad=grad)


def supervised_points(n, d, loss) -> Points:
    n, d, loss = _check("supervised", {"N": n, "D": d, "L": loss})
    return Points("supervised", (np.log(n), np.log(d)), np.log(loss))


def distillation_points(n_s, d_s, l_t, l_s, supervised: dict) -> Points:
    n_s, d_s, l_t, l_s = _check("distillation", {"N_S": n_s, "D_S": d_s, "L_T": l_t, "L_S": l_s})
    l_tilde = laws.supervised_loss(n_s, d_s, supervised)
    cols = (np.log(n_s), np.log(d_s), np.log(l_t), np.log(l_tilde))
    return Points("distillation", cols, np.log(l_s))


def _check(law: str, columns: dict) -> list:
    arrays = [np.asarray(v, float).ravel() for v in columns.values()]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise DataError(f"{law} points: columns {list(columns)} have different lengths; give one value per run")
    for name, a in zip(columns, arrays):
        bad = np.flatnonzero(~np.isfinite(a) | (a <= 0))
        if bad.size:
            raise DataError(f"{law} points: {name} must be a positive finite number, got {a[bad[0]]!r} at point "
                            f"{bad[0]} ({bad.size} bad); drop that run or fix its value")
    need = N_COEF[law] + 1
    if n < need:
        raise DataError(f"{law} fit needs at least {need} points ({N_COEF[law]} coefficients + 1), got {n}; "
                        "add runs")
    for name, a in list(zip(columns, arrays))[:2]:
        if np.unique(a).size < 2:
            raise DataError(f"{law} fit needs at least 2 distinct {name} values to identify its exponent; "
                            "add runs of another size or length")
    return arrays


# ---- objective ----------------------------------------------------------------------------------------


def objective(points: Points, theta):
    """sum Huber_delta(log L_pred - log L_obs) / delta^2 (same minimiser as App. F) and its gradient."""
    with np.errstate(all="ignore"):  # far-off trial points may overflow; they are rejected below
        pred, vjp = points.predict(theta, grad="vjp")
        u = (pred - points.y) / HUBER_DELTA
        a = np.abs(u)
        f = float(np.where(a <= 1.0, 0.5 * u * u, a - 0.5).sum())
        g = vjp(np.clip(u, -1.0, 1.0) / HUBER_DELTA)
    if not (np.isfinite(f) and np.isfinite(g).all()):
        return 1e300, np.zeros_like(theta)
    return f, g


def _huber_rows(pred, y) -> np.ndarray:
    a = np.abs(pred - y) / HUBER_DELTA
    v = np.where(a <= 1.0, 0.5 * a * a, a - 0.5).sum(axis=-1)
    return np.where(np.isfinite(v), v, np.inf)


# The grid is a product: an "inner" part (log A, log B, alpha, beta) that fixes the shared power-law term and an
# "outer" part (the rest). Scores are computed as an (inner, outer) table without materialising every start.
_SPLIT = {"supervised": ([0, 1, 3, 4], [2, 5]), "distillation": ([0, 1, 2, 3], [4, 5, 6, 7, 8])}


def grid_parts(law: str, grid=None):
    """(inner, outer) start components of the grid, clipped into the bounds."""
    axes = grid or PAPER_GRID[law]
    lo, hi = _bound_arrays(law)
    parts = []
    for cols in _SPLIT[law]:
        mesh = np.meshgrid(*[np.asarray(axes[c], float) for c in cols], indexing="ij")
        parts.append(np.clip(np.stack([m.ravel() for m in mesh], axis=1), lo[cols], hi[cols]))
    return parts[0], parts[1]


def grid_theta(law: str, inner, outer) -> np.ndarray:
    """Full start vectors from matching rows of inner and outer."""
    inner_cols, outer_cols = _SPLIT[law]
    theta = np.empty((len(inner), len(inner_cols) + len(outer_cols)))
    theta[:, inner_cols], theta[:, outer_cols] = inner, outer
    return theta


def grid_values(points: Points, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Objective at every (inner, outer) pair of starts, shape (len(inner), len(outer))."""
    c = points.cols
    m = np.logaddexp(inner[:, :1] - inner[:, 2:3] * c[0], inner[:, 1:2] - inner[:, 3:4] * c[1])  # (I, n)
    out = np.empty((len(inner), len(outer)))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for j, o in enumerate(outer):
            if points.law == "supervised":
                pred = np.logaddexp(o[0], o[1] * m)
            else:
                gamma, c0, c1, f1, ld1 = o
                h = np.logaddexp(0.0, (c[2] - c[3] - ld1) / f1)
                pred = np.logaddexp(c[2], (-c0 * c[2] - c1 * f1 * h) + gamma * m)
            out[:, j] = _huber_rows(pred, points.y)
    return out


def _bound_arrays(law):
    b = BOUNDS[law]
    return (np.array([-np.inf if x[0] is None else x[0] for x in b]),
            np.array([np.inf if x[1] is None else x[1] for x in b]))


# ---- local refinement -----------------------------------------------------------------------------------


def _lbfgs(points: Points, theta0, scale, options=None):
    bounds = [(None if a is None else a / s, None if b is None else b / s) for (a, b), s in zip(BOUNDS[points.law], scale)]

    def fun(v):
        f, g = objective(points, v * scale)
        return f, g * scale

    r = minimize(fun, theta0 / scale, jac=True, method="L-BFGS-B", bounds=bounds, options=options or LBFGS)
    return r.x * scale, float(r.fun), r


def _jacobi_scale(points: Points, theta):
    _, jac = points.predict(theta, grad=True)
    d = np.sqrt((jac**2).sum(axis=0))
    d = np.where(np.isfinite(d), d, 0.0)
    return 1.0 / np.maximum(d, 1e-8 * max(d.max(), 1e-300))


def refine(points: Points, theta0, max_restarts: int = 8, warm: bool = False, maxiter: int | None = None):
    """L-BFGS-B from theta0, then Jacobi-rescaled restarts until one no longer improves. warm: theta0 is already
    near an optimum (a bootstrap refit), so Jacobi scaling is used from the start (half the iterations).
    Returns (theta, objective, converged, message, iterations)."""
    lo, hi = _bound_arrays(points.law)
    theta0 = np.clip(np.asarray(theta0, float), lo, hi)
    opts = dict(LBFGS, maxiter=maxiter) if maxiter else LBFGS
    theta, f, r = _lbfgs(points, theta0, _jacobi_scale(points, theta0) if warm else FIXED_SCALE[points.law], opts)
    nit, msg = r.nit, str(r.message)
    for _ in range(max_restarts):
        t2, f2, r2 = _lbfgs(points, theta, _jacobi_scale(points, theta), opts)
        nit += r2.nit
        if not f2 < f - 1e-9 * abs(f) - 1e-14:
            # a fresh L-BFGS-B from here cannot improve: a numerical local minimum (unless it ran out of steps)
            if r2.status == 1:
                return theta, f, False, f"iteration limit reached ({r2.message})", nit
            return theta, f, bool(np.isfinite(f) and f < 1e299), msg, nit
        theta, f, msg = t2, f2, str(r2.message)
    return theta, f, False, f"still improving after {max_restarts} restarts ({msg})", nit


# ---- worker plumbing -----------------------------------------------------------------------------------


def _openblas_handles() -> list:
    """(get, set) thread-count functions of every OpenBLAS loaded in this process (numpy's and scipy's)."""
    handles = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ln.split()[-1].startswith("/")})
    except OSError:
        return handles
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in itertools.product(("scipy_openblas", "openblas"), ("64_", "")):
            get, put = f"{prefix}_get_num_threads{suffix}", f"{prefix}_set_num_threads{suffix}"
            if hasattr(lib, get) and hasattr(lib, put):
                handles.append((getattr(lib, get), getattr(lib, put)))
                break
    return handles


@contextmanager
def single_blas_thread():
    """L-BFGS-B calls BLAS on tiny matrices; OpenBLAS threads then only spin against each other and against
    other processes (20x slower on 2 busy cores), so fits run with one BLAS thread."""
    handles = _openblas_handles()
    before = [get() for get, _ in handles]
    for _, put in handles:
        put(1)
    try:
        yield
    finally:
        for (_, put), n in zip(handles, before):
            put(n)


_WORKER_POINTS: Points | None = None


def _init_worker(points: Points, pin_blas: bool = False) -> None:
    global _WORKER_POINTS
    _WORKER_POINTS = points
    if pin_blas:
        for _, put in _openblas_handles():
            put(1)


def _task_grid(parts):
    return grid_values(_WORKER_POINTS, *parts)


def _task_refine(thetas):
    return [refine(_WORKER_POINTS, t) for t in thetas]


def _task_bootstrap(args):
    theta0, index_rows = args
    out = []
    for idx in index_rows:
        # iterations capped: a rare resample that wanders along a flat direction is counted as failed
        theta, f, ok, _, _ = refine(_WORKER_POINTS.take(idx), theta0, max_restarts=3, warm=True, maxiter=5000)
        out.append((theta, ok))
    return out


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _map(points: Points, fn, chunks, workers: int) -> list:
    """fn over chunks, in worker processes when workers > 1 (fork: the workers import no torch)."""
    if workers <= 1 or len(chunks) <= 1:
        _init_worker(points)
        return [fn(c) for c in chunks]
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(points, True)) as ex:
        return list(ex.map(fn, chunks))


# ---- the fit -------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    law: str
    coefficients: dict
    theta: list
    objective: float
    converged: bool
    message: str
    n_points: int
    n_starts: int
    rel_error: dict
    at_bound: list = field(default_factory=list)
    unidentified: list = field(default_factory=list)
    ci90: dict | None = None
    bootstrap: dict | None = None
    seconds: float = 0.0
    supervised: dict | None = None  # the supervised coefficients L~_S came from (distillation only)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["derived"] = derived(self.coefficients)
        return d


def derived(p: dict) -> dict:
    """Chinchilla exponents: N* ~ C^a, D* ~ C^b with a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
    s = p["alpha"] + p["beta"]
    return {"a": p["beta"] / s, "b": p["alpha"] / s} if s > 0 else {}


def vanished_terms(points: Points, theta) -> list:
    """Coefficients of a power-law term (A/N^alpha or B/D^beta) that is < 1e-6 of the sum at every point: the
    data do not constrain them (their bootstrap interval is then a single value)."""
    ia, ib, ial, ibe = (0, 1, 3, 4) if points.law == "supervised" else (0, 1, 2, 3)
    s1, s2 = theta[ia] - theta[ial] * points.cols[0], theta[ib] - theta[ibe] * points.cols[1]
    m = np.logaddexp(s1, s2)
    out = []
    if np.max(s1 - m) < np.log(1e-6):
        out += ["A", "alpha"]
    if np.max(s2 - m) < np.log(1e-6):
        out += ["B", "beta"]
    return out


def relative_errors(points: Points, theta) -> dict:
    rel = np.abs(np.exp(points.predict(theta) - points.y) - 1.0)
    return {"mean": float(rel.mean()), "median": float(np.median(rel)), "max": float(rel.max())}


def fit(points: Points, *, top_k: int = 32, bootstrap: int = 0, workers: int | None = None, seed: int = 0,
        grid=None, supervised: dict | None = None) -> FitResult:
    """Fit one law: grid scores, L-BFGS-B from the top_k starts (0 = all), best kept, optional bootstrap."""
    with single_blas_thread():
        return _fit(points, top_k, bootstrap, workers, seed, grid, supervised)


def _fit(points, top_k, bootstrap, workers, seed, grid, supervised) -> FitResult:
    t0 = time.perf_counter()
    workers = workers or default_workers()
    inner, outer = grid_parts(points.law, grid)
    if top_k and top_k < len(inner) * len(outer):
        chunks = [(part, outer) for part in np.array_split(inner, min(workers, len(inner)))]
        values = np.concatenate(_map(points, _task_grid, chunks, workers)).ravel()
        best = np.argsort(values, kind="stable")[:top_k]
        i, j = np.unravel_index(best, (len(inner), len(outer)))
        starts = grid_theta(points.law, inner[i], outer[j])
    else:
        i, j = np.unravel_index(np.arange(len(inner) * len(outer)), (len(inner), len(outer)))
        starts = grid_theta(points.law, inner[i], outer[j])
    results = [r for part in _map(points, _task_refine, np.array_split(starts, min(len(starts), workers * 4)), workers)
               for r in part]
    theta, f, ok, msg, _ = min(results, key=lambda r: r[1])
    if not np.isfinite(f) or f >= 1e299:
        ok, msg = False, "objective is not finite at any start: the law cannot describe these points"
    lo, hi = _bound_arrays(points.law)
    keys = laws.SUPERVISED_KEYS if points.law == "supervised" else laws.DISTILLATION_KEYS
    at_bound = [k for k, t, a, b in zip(keys, theta, lo, hi) if np.isclose(t, a, atol=1e-6) or np.isclose(t, b, rtol=1e-6)]
    res = FitResult(points.law, laws.from_theta(theta, points.law), [float(t) for t in theta], f, ok, msg, len(points),
                    len(starts), relative_errors(points, theta), at_bound, vanished_terms(points, theta),
                    supervised=supervised)
    if bootstrap:
        res.ci90, res.bootstrap = bootstrap_ci(points, theta, bootstrap, workers, seed)
    res.seconds = time.perf_counter() - t0
    return res


def bootstrap_ci(points: Points, theta, n_resamples: int, workers: int | None = None, seed: int = 0):
    """90% percentile intervals from n_resamples refits on rows drawn with replacement."""
    with single_blas_thread():
        return _bootstrap_ci(points, theta, n_resamples, workers, seed)


def _bootstrap_ci(points, theta, n_resamples, workers, seed):
    t0 = time.perf_counter()
    workers = workers or default_workers()
    idx = np.random.default_rng(seed).integers(0, len(points), size=(n_resamples, len(points)))
    chunks = [(np.asarray(theta), c) for c in np.array_split(idx, min(n_resamples, workers * 8))]
    fits = [r for part in _map(points, _task_bootstrap, chunks, workers) for r in part]
    good = [laws.from_theta(t, points.law) for t, ok in fits if ok]
    info = {"resamples": n_resamples, "failed": n_resamples - len(good), "seconds": time.perf_counter() - t0}
    if not good:
        return None, info
    ci = {}
    for k in good[0]:
        v = np.array([g[k] for g in good])
        ci[k] = [float(np.percentile(v, 5)), float(np.percentile(v, 95))]
    for k in ("a", "b"):
        v = np.array([derived(g).get(k, np.nan) for g in good])
        ci[k] = [float(np.nanpercentile(v, 5)), float(np.nanpercentile(v, 95))]
    return ci, info
