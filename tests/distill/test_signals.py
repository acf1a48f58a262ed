"""Dense and sparse teacher signals through every loss, against reference formulas; loss objects and their parameters."""

import math

import pytest
import torch

from bootdistill.config import load_config
from bootdistill.distill.kd_losses import get_loss, loss_names
from bootdistill.distill.losses import kd_loss
from bootdistill.distill.objective import student_loss
from bootdistill.distill.policies import StepKnobs
from bootdistill.distill.signals import OUTSIDE, DenseSignal, SparseSignal, sparsify
from bootdistill.errors import ConfigError

SPARSE_OK = loss_names(needs_logits=False)


def brute_sparse_kl(s, sig: SparseSignal, tau, tau_t):
    """Σ_{v∈S} q_v (log q_v − log p_v), q = softmax(log q_S / τ_t), p = softmax(s / τ), times τ², row by row."""
    out = []
    for r in range(s.shape[0]):
        lq = sig.logprobs[r].double()
        kept = torch.isfinite(lq)
        idx, lq = sig.indices[r][kept], lq[kept] / tau_t
        q = torch.softmax(lq, -1)
        lp = torch.log_softmax(s[r].double() / tau, -1)[idx]
        out.append(float((q * (torch.log(q) - lp)).sum()) * tau * tau)
    return torch.tensor(out, dtype=torch.float64)


def test_sparsify_is_top_p_then_top_k_renormalised():
    torch.manual_seed(0)
    z = torch.randn(6, 40, dtype=torch.float64) * 3
    sig = sparsify(z, top_p=0.8, top_k=5)
    assert sig.indices.shape == (6, 5)
    for r in range(6):
        p = torch.softmax(z[r], -1)
        order = torch.argsort(p, descending=True)
        mass_before = torch.cumsum(p[order], 0) - p[order]
        n = min(5, int((mass_before < 0.8).sum()))  # top-p prefix, capped by k
        kept = torch.isfinite(sig.logprobs[r])
        assert int(kept.sum()) == n
        assert set(sig.indices[r][kept].tolist()) == set(order[:n].tolist())
        ref = torch.log(p[order[:n]] / p[order[:n]].sum())
        assert float(sig.log_kept_mass[r]) == pytest.approx(math.log(float(p[order[:n]].sum())), abs=1e-6)
        torch.testing.assert_close(sig.logprobs[r][kept].double().sort().values, ref.sort().values.float().double(),
                                   atol=1e-6, rtol=0)


def test_dense_view_puts_log_q_on_the_kept_set_only():
    sig = SparseSignal(torch.tensor([[3, 1, 0]]), torch.tensor([[math.log(0.7), math.log(0.3), float("-inf")]]))
    d = sig.dense_view(5)
    assert d[0, 3] == pytest.approx(math.log(0.7)) and d[0, 1] == pytest.approx(math.log(0.3))
    assert d[0, 0] == OUTSIDE and d[0, 2] == OUTSIDE and d[0, 4] == OUTSIDE


@pytest.mark.parametrize("tau,tau_t", [(1.0, 1.0), (2.0, 2.0), (1.0, 4.0)])
def test_sparse_kl_matches_brute_force(tau, tau_t):
    torch.manual_seed(1)
    s, t = torch.randn(12, 30) * 2, torch.randn(12, 30) * 3
    sig = sparsify(t, 0.9, 6)
    got = kd_loss("kl", s, sig.dense_view(30), tau, teacher_temperature=tau_t, teacher_support=True)
    torch.testing.assert_close(got.double(), brute_sparse_kl(s, sig, tau, tau_t), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", SPARSE_OK)
def test_sparse_signal_equals_live_teacher_truncated_the_same_way(name):
    """A cache stores what a live teacher with the same top-p / top-k keeps: every loss gives the same values and gradients."""
    torch.manual_seed(2)
    s, t = torch.randn(16, 50, requires_grad=True), torch.randn(16, 50) * 3
    sig = sparsify(t, 0.9, 8)
    live = kd_loss(name, s, t, 2.0, 0.9, 8)
    (g_live,) = torch.autograd.grad(live.sum(), s)
    cached = kd_loss(name, s, sig.dense_view(50), 2.0, teacher_support=True)
    (g_cached,) = torch.autograd.grad(cached.sum(), s)
    torch.testing.assert_close(cached, live, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(g_cached, g_live, atol=2e-5, rtol=1e-4)


def test_mse_logits_refuses_a_sparse_signal():
    s, t = torch.randn(4, 20), torch.randn(4, 20)
    with pytest.raises(ConfigError, match="raw logits"):
        kd_loss("mse_logits", s, sparsify(t, 1.0, 5).dense_view(20), teacher_support=True)


def test_student_loss_takes_either_signal_the_same_way():
    torch.manual_seed(3)
    cfg = load_config(None, ["distill.top_k=7", "distill.top_p=0.95"]).distill
    logits, t = torch.randn(2, 5, 40), torch.randn(2, 5, 40) * 2
    y = torch.randint(0, 40, (2, 5))
    knobs = StepKnobs(alpha=0.5, temperature=2.0, loss="kl")
    dense = student_loss(logits, y, DenseSignal(t.clone()), knobs, cfg)
    cfg_untruncated = load_config(None, []).distill  # the sparse signal is already truncated
    sparse = student_loss(logits, y, sparsify(t, 0.95, 7), knobs, cfg_untruncated)
    assert dense[1] == sparse[1]  # same CE
    assert dense[2]["kd_loss"] == pytest.approx(sparse[2]["kd_loss"], rel=1e-5)


def test_jsd_beta_is_a_parameter_of_the_loss_object():
    torch.manual_seed(4)
    s, t = torch.randn(6, 20), torch.randn(6, 20)
    jsd = get_loss("jsd", {"beta": 0.1})
    assert jsd.params == {"beta": 0.1} and get_loss("jsd").params == {"beta": 0.5}
    torch.testing.assert_close(kd_loss("jsd", s, t, 1.0, **jsd.params), kd_loss("jsd", s, t, 1.0, beta=0.1))
    assert not torch.allclose(kd_loss("jsd", s, t, 1.0, **jsd.params), kd_loss("jsd", s, t, 1.0))
    cfg = load_config(None, ["distill.loss=jsd", "distill.loss_params.beta=0.1"]).distill
    y = torch.randint(0, 20, (6,))
    _, _, extra = student_loss(s, y, DenseSignal(t), StepKnobs(alpha=1.0, loss="jsd"), cfg)
    assert extra["kd_loss"] == pytest.approx(float(kd_loss("jsd", s, t, 1.0, beta=0.1).mean()), rel=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (["distill.loss=jsd", "distill.loss_params.betta=0.1"], "did you mean 'beta'"),
    (["distill.loss=jsd", "distill.loss_params.beta=2"], "beta must be"),
    (["distill.loss=kl", "distill.loss_params.beta=0.1"], "takes no parameters"),
])
def test_bad_loss_params_are_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_recipes_grid_over_a_loss_parameter(tmp_path):
    from conftest import REPO
    from bootdistill.experiment import load_recipe

    _, order = load_recipe(REPO / "configs" / "ablations" / "loss-truncation.yaml", [f"data.corpus={tmp_path}"])
    by = {p.name: p for p in order}
    assert by["jsd-beta-beta0.1"].cfg.distill.loss_params == {"beta": 0.1}
    assert by["jsd-beta-beta0.9"].cfg.distill.loss == "jsd"
    assert by["jsd-beta-beta0.1"].run_dir != by["jsd-beta-beta0.9"].run_dir


def test_recipes_take_a_hugging_face_teacher_as_it_is(tmp_path):
    import yaml

    from bootdistill.experiment import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "hf", "out_dir": str(tmp_path / "out"), "runs": {
        "student": {"model": {"preset": "1M"}, "distill": {"policy": "kd", "teacher": "hf:/models/gpt2-tiny"}}}}))
    _, order = load_recipe(recipe)
    assert order[0].cfg.distill.teacher == "hf:/models/gpt2-tiny" and order[0].teacher is None
