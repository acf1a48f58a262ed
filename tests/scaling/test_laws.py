"""The law formulas: the three properties of eq. 8 (§4.3), the log-space forms and their gradients, and the
App. H FLOPs constants."""

import numpy as np
import pytest

from bootdistill.compute import fixed_aspect_flops_per_token
from bootdistill.scaling import laws
from bootdistill.scaling.laws import TABLE6_DISTILLATION as DIST
from bootdistill.scaling.laws import TABLE6_SUPERVISED as SUP


def test_property1_infinitely_capable_student_matches_teacher():
    for l_t in (1.8, 2.3, 3.0):
        l_s = laws.distillation_loss(1e40, 1e40, l_t, DIST, SUP)
        assert l_s == pytest.approx(l_t, rel=1e-9)


def test_property2_random_teacher_gives_random_student():
    for big in (1e3, 1e5):
        for n_s in (1e8, 1e10):
            l_s = laws.distillation_loss(n_s, 20 * n_s, big, DIST, SUP)
            assert (l_s - big) / big < 1e-9


def test_property3_capacity_gap_is_u_shaped():
    """Student loss against teacher loss falls, then rises: a too-strong teacher hurts (Fig. 4)."""
    for n_s in (3e8, 3e9):
        l_t = np.linspace(1.3, 3.5, 500)
        l_s = laws.distillation_loss(n_s, 20 * n_s, l_t, DIST, SUP)
        i = int(np.argmin(l_s))
        assert 0 < i < len(l_t) - 1
        assert np.all(np.diff(l_s[: i + 1]) <= 1e-12) and np.all(np.diff(l_s[i:]) >= -1e-12)
        assert l_s[0] > l_s[i] + 0.05  # a real rise at strong teachers, not noise


def test_log_forms_equal_natural_forms():
    n, d = np.array([1e8, 3e9]), np.array([2e9, 1e11])
    y = laws.supervised_log_loss(laws.to_theta(SUP, "supervised"), np.log(n), np.log(d))
    assert np.exp(y) == pytest.approx(SUP["E"] + (SUP["A"] / n ** SUP["alpha"] + SUP["B"] / d ** SUP["beta"]) ** SUP["gamma"])
    l_t = np.array([2.0, 2.6])
    lt = laws.supervised_loss(n, d, SUP)
    x = l_t / (lt * DIST["d1"])
    direct = l_t + l_t ** -DIST["c0"] * (1 + x ** (1 / DIST["f1"])) ** (-DIST["c1"] * DIST["f1"]) * (
        DIST["A"] / n ** DIST["alpha"] + DIST["B"] / d ** DIST["beta"]) ** DIST["gamma"]
    assert laws.distillation_loss(n, d, l_t, DIST, SUP) == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("law", ["supervised", "distillation"])
def test_gradients_match_finite_differences(law):
    rng = np.random.default_rng(0)
    ln, ld = rng.uniform(18, 23, 40), rng.uniform(20, 27, 40)
    extra = (np.log(rng.uniform(1.9, 3.5, 40)), np.log(rng.uniform(1.9, 3.5, 40))) if law == "distillation" else ()
    f = laws.supervised_log_loss if law == "supervised" else laws.distillation_log_loss
    theta = laws.to_theta(SUP if law == "supervised" else DIST, law) * (1 + rng.normal(0, 0.01, 6 if law == "supervised" else 9))
    _, jac = f(theta, ln, ld, *extra, grad=True)
    for i in range(len(theta)):
        h = 1e-6 * max(1.0, abs(theta[i]))
        e = np.zeros_like(theta)
        e[i] = h
        fd = (f(theta + e, ln, ld, *extra) - f(theta - e, ln, ld, *extra)) / (2 * h)
        assert np.max(np.abs(fd - jac[:, i])) <= 1e-6 * (np.max(np.abs(jac[:, i])) + 1e-12)


def test_theta_roundtrip():
    for p, law in ((SUP, "supervised"), (DIST, "distillation")):
        back = laws.from_theta(laws.to_theta(p, law), law)
        assert back == pytest.approx(p, rel=1e-12)


def test_app_h_constants_reproduce_table13():
    """C_fwd-approx(2N+sigma) of Table 13 (billions) from N (billions)."""
    rows = [(0.1028, 0.3398), (0.546, 1.415), (2.102, 4.895), (12.61, 27.23)]
    for n, c in rows:
        f = fixed_aspect_flops_per_token(n * 1e9, laws.PAPER_FLOPS_C1, laws.PAPER_FLOPS_C2)
        assert f / 1e9 == pytest.approx(c, rel=3e-3)
    assert laws.fixed_aspect_constants(128, 12, 4096, 32168) == pytest.approx((laws.PAPER_FLOPS_C1, laws.PAPER_FLOPS_C2))


def test_infinite_data_limit_matches_supervised_with_best_teacher():
    """App. E.6: with the best teacher and D_S -> inf, distillation reaches L(N_S, inf) (within 1%)."""
    for n in (1e9, 1e10):
        l_t = np.linspace(1.3, 3.0, 4000)
        best = laws.distillation_loss(n, 1e20, l_t, DIST, SUP).min()
        assert best == pytest.approx(laws.supervised_limit(n, SUP), rel=0.01)
