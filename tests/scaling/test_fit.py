"""Fitting: exact recovery of Table 6 from noise-free points, prediction of held-out points under 0.5% noise,
bootstrap intervals, bad input and non-convergence.

Small grids of starts (top_k) keep this file fast; the recovery asserts themselves show the search found the
optimum (a worse local optimum would miss the 1% tolerance by far)."""

import numpy as np
import pytest

from bootdistill.errors import DataError
from bootdistill.scaling import fit, laws, runs
from bootdistill.scaling.laws import TABLE6_DISTILLATION as DIST
from bootdistill.scaling.laws import TABLE6_SUPERVISED as SUP


def _rel(p, q):
    return {k: abs(p[k] / q[k] - 1) for k in q}


def test_supervised_recovers_table6_noise_free():
    d = runs.synthetic_supervised(73, seed=1)
    res = fit.fit(fit.supervised_points(d["N"], d["D"], d["L"]), top_k=16, workers=1)
    assert res.converged, res.message
    assert max(_rel(res.coefficients, SUP).values()) < 0.01, res.coefficients
    assert res.rel_error["max"] < 1e-6


def test_distillation_recovers_table6_noise_free():
    d = runs.synthetic_distillation(150, seed=2)
    res = fit.fit(fit.distillation_points(d["N_S"], d["D_S"], d["L_T"], d["L_S"], SUP), top_k=8, workers=2)
    assert res.converged, res.message
    assert max(_rel(res.coefficients, DIST).values()) < 0.01, res.coefficients


@pytest.fixture(scope="module")
def noisy_distillation_fit():
    d = runs.synthetic_distillation(160, noise=0.005, seed=3)
    pts = fit.distillation_points(d["N_S"], d["D_S"], d["L_T"], d["L_S"], SUP)
    train, held = pts.take(np.arange(120)), pts.take(np.arange(120, 160))
    return fit.fit(train, top_k=8, bootstrap=16, workers=2, seed=0), held


def test_noisy_fit_predicts_heldout_within_1pct(noisy_distillation_fit):
    res, held = noisy_distillation_fit
    err = fit.relative_errors(held, np.array(res.theta))
    assert err["mean"] < 0.01 and err["max"] < 0.025  # 0.5% noise itself puts single points ~1.5% off
    # and against the noise-free truth, point by point
    true = np.exp(held.predict(laws.to_theta(DIST, "distillation")))
    assert np.max(np.abs(np.exp(held.predict(np.array(res.theta))) / true - 1)) < 0.01


def test_bootstrap_reports_intervals(noisy_distillation_fit):
    res, _ = noisy_distillation_fit
    assert res.bootstrap["resamples"] == 16 and res.bootstrap["failed"] <= 2
    for k in laws.DISTILLATION_KEYS + ("a", "b"):
        lo, hi = res.ci90[k]
        assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi


def test_fitted_law_keeps_the_capacity_gap(noisy_distillation_fit):
    res, _ = noisy_distillation_fit
    l_t = np.linspace(1.4, 3.2, 400)
    l_s = laws.distillation_loss(1e9, 2e10, l_t, res.coefficients, SUP)
    i = int(np.argmin(l_s))
    assert 0 < i < len(l_t) - 1 and l_s[0] > l_s[i] + 0.02


def test_bootstrap_is_deterministic_across_worker_counts():
    d = runs.synthetic_supervised(30, noise=0.005, seed=4)
    pts = fit.supervised_points(d["N"], d["D"], d["L"])
    theta = laws.to_theta(SUP, "supervised")
    a, _ = fit.bootstrap_ci(pts, theta, 8, workers=1, seed=5)
    b, _ = fit.bootstrap_ci(pts, theta, 8, workers=2, seed=5)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-9)


@pytest.mark.parametrize(
    "n, d, loss, match",
    [
        ([1e8] * 5, [1e9] * 5, [3.0] * 5, "at least 7 points"),
        (np.geomspace(1e8, 1e9, 8), np.geomspace(1e9, 1e10, 8), [3.0] * 7 + [np.nan], "positive finite"),
        (np.geomspace(1e8, 1e9, 8), np.geomspace(1e9, 1e10, 8), [3.0] * 7 + [0.0], "positive finite"),
        (np.geomspace(1e8, 1e9, 8), np.geomspace(1e9, 1e10, 8), [3.0] * 7 + [-1.0], "positive finite"),
        ([1e8] * 8, np.geomspace(1e9, 1e10, 8), [3.0] * 8, "2 distinct N"),
    ],
)
def test_bad_points_are_one_clear_error(n, d, loss, match):
    with pytest.raises(DataError, match=match) as e:
        fit.supervised_points(n, d, loss)
    assert "\n" not in str(e.value)


def test_distillation_minimum_is_ten_points():
    d = runs.synthetic_distillation(9, seed=0)
    with pytest.raises(DataError, match="at least 10 points"):
        fit.distillation_points(d["N_S"], d["D_S"], d["L_T"], d["L_S"], SUP)


def test_non_convergence_is_reported(monkeypatch):
    monkeypatch.setitem(fit.LBFGS, "maxiter", 2)
    monkeypatch.setitem(fit.LBFGS, "maxfun", 4)
    d = runs.synthetic_supervised(20, seed=6)
    res = fit.fit(fit.supervised_points(d["N"], d["D"], d["L"]), top_k=2, workers=1)
    assert not res.converged and res.message


def test_vanished_power_law_term_is_flagged():
    d = runs.synthetic_supervised(20, seed=7)
    pts = fit.supervised_points(d["N"], d["D"], d["L"])
    theta = laws.to_theta(SUP, "supervised")
    assert fit.vanished_terms(pts, theta) == []
    theta[1] = -45.0  # log B: the data term is gone
    assert fit.vanished_terms(pts, theta) == ["B", "beta"]
