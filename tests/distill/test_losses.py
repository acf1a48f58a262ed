"""KD losses against straightforward float64 reference formulas: values, gradients, truncation edge cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from bootdistill.distill import fused_kd, losses as L
from bootdistill.distill.kd_losses import KD_LOSSES, docs_table, get_loss, loss_names
from bootdistill.distill.losses import Z_LOSS_WEIGHT, ce_and_kd, combine, kd_loss, masked_mean, z_loss
from bootdistill.distill.truncation import keep_mask, teacher_distribution
from bootdistill.errors import ConfigError

NAMES = list(KD_LOSSES)  # every registered loss: a new one is tested against its reference formula below
TRUNC = [(1.0, None), (0.9, None), (1.0, 3), (0.8, 2), (1.0, 1)]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: an OpenMP team only adds wake-up latency (seconds per test on a busy shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------- float64 references


def ref_support(t_row: torch.Tensor, top_p: float, top_k: int | None) -> torch.Tensor:
    """Kept set of one row, by hand: walk the sorted τ=1 distribution, then cut to k; ties at a cut kept."""
    V = t_row.numel()
    probs = torch.softmax(t_row.double(), -1)
    keep = torch.zeros(V, dtype=torch.bool)
    if top_p < 1.0:
        mass = 0.0
        for i in sorted(range(V), key=lambda i: -probs[i].item()):
            if mass < top_p:
                keep[i] = True
                mass += probs[i].item()
        keep |= probs >= probs[keep].min()
    else:
        keep[:] = True
    if top_k is not None and top_k < V:
        kept_vals = sorted(t_row[keep].tolist(), reverse=True)
        if len(kept_vals) > top_k:
            keep &= t_row >= kept_vals[top_k - 1]
    return keep


def ref_loss(name, s, t, tau, top_p=1.0, top_k=None, beta=0.5, keep_row=None):
    """Per-token reference, row by row, float64, formulas as written in the losses module table."""
    out = []
    for sr, tr in zip(s.double(), t.double()):
        S = ref_support(tr, top_p, top_k) if keep_row is None else keep_row
        p = torch.exp(sr / tau - torch.logsumexp(sr / tau, 0))
        q = torch.zeros_like(p)
        q[S] = torch.exp(tr[S] / tau - torch.logsumexp(tr[S] / tau, 0))
        pS = torch.zeros_like(p)
        pS[S] = p[S] / p[S].sum()
        if name == "kl":
            v = tau**2 * (q[S] * (q[S].log() - p[S].log())).sum()
        elif name == "soft_ce":
            v = -(tau**2) * (q[S] * p[S].log()).sum()
        elif name == "reverse_kl":
            v = tau**2 * (pS[S] * (pS[S].log() - q[S].log())).sum()
        elif name == "topk_kl":
            v = tau**2 * (q[S] * (q[S].log() - pS[S].log())).sum()
        elif name == "mse_logits":
            v = ((sr[S] - tr[S]) ** 2).mean()
        elif name == "mse_probs":
            v = ((p - q) ** 2).sum()
        elif name == "jsd":
            if beta == 0:
                return ref_loss("kl", s, t, tau, top_p, top_k)
            if beta == 1:
                return ref_loss("reverse_kl", s, t, tau, top_p, top_k)
            m = beta * q + (1 - beta) * p
            v = tau**2 * (beta * (q[S] * (q[S] / m[S]).log()).sum() + (1 - beta) * (p * (p / m).log()).sum())
        else:
            raise AssertionError(f"no reference formula for loss '{name}': add one here")
        out.append(v)
    return torch.stack(out)


def rand_logits(n=6, v=11, seed=0, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g, dtype=torch.float64) * scale).to(dtype)


def value_and_grad(fn, s):
    s = s.detach().clone().requires_grad_()
    out = fn(s)
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)  # unequal weights per token
    (g,) = torch.autograd.grad((out * w).sum(), s)
    return out.detach(), g


# -------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("tau", [1.0, 2.0, 0.05])
# a loss that needs truncation is refused without it (test_topk_kl_without_truncation_and_bad_combine_mode)
@pytest.mark.parametrize("name,top_p,top_k", [(n, p, k) for n in NAMES for p, k in TRUNC
                                              if not (KD_LOSSES[n].needs_truncation and p == 1.0 and k is None)])
def test_loss_matches_reference_value_and_grad(name, tau, top_p, top_k):
    s, t = rand_logits(seed=1), rand_logits(seed=2, scale=3.0)
    got, g_got = value_and_grad(lambda x: kd_loss(name, x, t, tau, top_p, top_k), s)
    ref, g_ref = value_and_grad(lambda x: ref_loss(name, x, t, tau, top_p, top_k), s)
    assert torch.isfinite(got).all() and torch.isfinite(g_got).all()
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("name", ["kl", "soft_ce"])
@pytest.mark.parametrize("tau", [1.0, 2.0, 0.05])
@pytest.mark.parametrize("top_p,top_k", TRUNC)
def test_fused_matches_plain_autograd(name, tau, top_p, top_k):
    s, t = rand_logits(n=13, v=17, seed=3), rand_logits(n=13, v=17, seed=4, scale=3.0)
    fused = value_and_grad(lambda x: kd_loss(name, x, t, tau, top_p, top_k, chunk_rows=4), s)
    plain = value_and_grad(lambda x: kd_loss(name, x, t, tau, top_p, top_k, fused=False), s)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_kl_gradient_is_tau_times_p_minus_q():
    s, t = rand_logits(seed=5), rand_logits(seed=6)
    tau = 2.0
    x = s.clone().requires_grad_()
    (g,) = torch.autograd.grad(kd_loss("kl", x, t, tau).sum(), x)
    torch.testing.assert_close(g, tau * (torch.softmax(s / tau, -1) - torch.softmax(t / tau, -1)))


def test_fused_bf16_matches_reference_to_bf16_tolerance():
    """The autocast path: bf16 logits in, fp32 math, bf16 gradient out."""
    s, t = rand_logits(n=40, v=300, seed=7, dtype=torch.bfloat16), rand_logits(n=40, v=300, seed=8, dtype=torch.bfloat16)
    got, g_got = value_and_grad(lambda x: kd_loss("kl", x, t, 2.0, chunk_rows=16), s)  # 3 chunks
    ref, g_ref = value_and_grad(lambda x: ref_loss("kl", x, t, 2.0), s.double())
    assert got.dtype == torch.float32 and g_got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_got.double(), g_ref, rtol=2e-2, atol=2e-5)


def test_many_chunks_and_worker_pool_agree_with_one_chunk():
    s, t = rand_logits(n=100, v=23, seed=9, dtype=torch.float32), rand_logits(n=100, v=23, seed=10, dtype=torch.float32)
    y = torch.randint(0, 23, (100,), generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # exercise the worker pool even on a 1-core runner
    try:
        outs = [value_and_grad(lambda x: torch.stack(ce_and_kd(x, y, t, "kl", 2.0, 0.9, 5, chunk_rows=c)[:2]), s)
                for c in (7, 100)]
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------- truncation edges


@pytest.mark.parametrize("name", ["kl", "soft_ce", "topk_kl"])
def test_top_k_1_is_the_teacher_argmax(name):
    s, t = rand_logits(seed=11), rand_logits(seed=12)
    tau = 2.0
    got = kd_loss(name, s, t, tau, top_k=1)
    log_p = torch.log_softmax(s / tau, -1).gather(-1, t.argmax(-1, keepdim=True)).squeeze(-1)
    expect = torch.zeros_like(got) if name == "topk_kl" else -(tau**2) * log_p  # one-hot q: KL = CE = -log p
    torch.testing.assert_close(got, expect)


def test_ties_at_the_cut_are_all_kept():
    t = torch.tensor([[3.0, 3.0, 1.0, 0.0, -1.0], [2.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    keep = keep_mask(t, top_k=1)
    assert keep.tolist()[0] == [True, True, False, False, False]  # two tied maxima, both kept
    keep = keep_mask(t, top_k=2)
    assert keep.tolist()[1] == [True, True, True, True, False]  # tie at the 2nd place: all three stay
    q, _, _ = teacher_distribution(t, 1.0, top_k=1)
    torch.testing.assert_close(q[0], torch.tensor([0.5, 0.5, 0, 0, 0], dtype=torch.float64))
    s = rand_logits(n=2, v=5, seed=13)
    for name in NAMES:
        torch.testing.assert_close(kd_loss(name, s, t, 1.0, top_k=1), ref_loss(name, s, t, 1.0, top_k=1))


def test_top_p_keeps_smallest_prefix_reaching_p_then_top_k():
    t = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64))
    assert keep_mask(t, top_p=0.5).tolist() == [[True, False, False, False]]  # 0.5 >= 0.5 already
    assert keep_mask(t, top_p=0.51).tolist() == [[True, True, False, False]]
    assert keep_mask(t, top_p=0.9).tolist() == [[True, True, True, False]]
    assert keep_mask(t, top_p=0.9, top_k=2).tolist() == [[True, True, False, False]]
    assert keep_mask(t, top_p=0.01).tolist() == [[True, False, False, False]]  # argmax always stays


def test_top_p_prefixes_longer_than_the_first_look_are_exact():
    """Rows of different sharpness: prefixes of a few, ~100s and ~1000s of tokens (topk 64, 512, full sort)."""
    g = torch.Generator().manual_seed(36)
    z = torch.randn(5, 2000, generator=g, dtype=torch.float64) * torch.tensor([[0.05], [0.5], [1.5], [3.0], [8.0]],
                                                                              dtype=torch.float64)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        zz = z.to(dtype)
        for top_p, top_k in [(0.9, None), (0.5, None), (0.9, 300)]:
            want = torch.stack([ref_support(r.double(), top_p, top_k) for r in zz])
            assert torch.equal(keep_mask(zz, top_p, top_k), want), (dtype, top_p, top_k)


def test_p_1_and_k_ge_vocab_are_exactly_untruncated():
    s, t = rand_logits(seed=14), rand_logits(seed=15)
    base = kd_loss("kl", s, t, 2.0)
    assert keep_mask(t, top_p=1.0, top_k=None) is None
    for top_p, top_k in [(1.0, None), (1.0, 11), (1.0, 50)]:
        assert torch.equal(kd_loss("kl", s, t, 2.0, top_p, top_k), base)


def test_truncated_teacher_has_mass_only_on_support_and_temperature_applies_after():
    t = rand_logits(seed=16)
    q, log_q, keep = teacher_distribution(t, 0.5, top_p=0.8, top_k=4)
    assert (q[~keep] == 0).all() and torch.isinf(log_q[~keep]).all()
    torch.testing.assert_close(q.sum(-1), torch.ones(6, dtype=torch.float64))
    expect = torch.softmax((t / 0.5).masked_fill(~keep, float("-inf")), -1)
    torch.testing.assert_close(q, expect)
    assert torch.equal(keep, torch.stack([ref_support(r, 0.8, 4) for r in t]))


@pytest.mark.parametrize("name", NAMES)
def test_small_temperature_is_finite(name):
    s, t = rand_logits(seed=17, scale=10.0, dtype=torch.float32), rand_logits(seed=18, scale=10.0, dtype=torch.float32)
    got, g = value_and_grad(lambda x: kd_loss(name, x, t, 0.05, 0.9, 3), s)
    assert torch.isfinite(got).all() and torch.isfinite(g).all()


def test_jsd_limits_and_bound():
    s, t = rand_logits(seed=19), rand_logits(seed=20)
    torch.testing.assert_close(kd_loss("jsd", s, t, 1.0, beta=0.0), kd_loss("kl", s, t, 1.0))
    torch.testing.assert_close(kd_loss("jsd", s, t, 1.0, beta=1.0), kd_loss("reverse_kl", s, t, 1.0))
    j = kd_loss("jsd", s, t, 1.0, beta=0.5)
    assert (j >= 0).all() and (j <= math.log(2) + 1e-12).all()
    # forward KL is the β → 0 limit of JSD_β / β
    torch.testing.assert_close(kd_loss("jsd", s, t, 1.0, beta=1e-6) / 1e-6, kd_loss("kl", s, t, 1.0), rtol=1e-4, atol=0)


def test_topk_kl_is_salt_restricted_cross_entropy_minus_teacher_entropy():
    s, t = rand_logits(seed=21), rand_logits(seed=22)
    q, log_q, keep = teacher_distribution(t, 1.0, top_k=4)
    log_pS = torch.log_softmax(s.masked_fill(~keep, float("-inf")), -1)
    salt_ce = -(q * log_pS.masked_fill(~keep, 0)).sum(-1)  # SALT App. A.2 eq. 12 per token
    entropy = -(q * log_q.masked_fill(~keep, 0)).sum(-1)
    torch.testing.assert_close(kd_loss("topk_kl", s, t, 1.0, top_k=4), salt_ce - entropy)


# ---------------------------------------------------------------------------------------- masking


@pytest.mark.parametrize("name", NAMES)
def test_masked_positions_contribute_zero(name):
    s, t = rand_logits(seed=23), rand_logits(seed=24)
    y = torch.tensor([1, -100, 3, 4, -100, 0])
    mask = y != -100
    for kw in ({"labels": y}, {"mask": mask}):
        got, g = value_and_grad(lambda x: kd_loss(name, x, t, 2.0, 0.9, 4, **kw), s)
        assert (got[~mask] == 0).all() and (g[~mask] == 0).all()
        ref = ref_loss(name, s, t, 2.0, 0.9, 4)
        torch.testing.assert_close(got[mask], ref[mask])
    torch.testing.assert_close(masked_mean(got, labels=y), ref[mask].mean())


def test_ce_and_kd_matches_separate_losses_with_ignored_labels_and_z_loss():
    s, t = rand_logits(n=9, v=13, seed=25), rand_logits(n=9, v=13, seed=26)
    y = torch.tensor([0, 5, -100, 12, 7, -100, 3, 3, 1])
    valid = y != -100
    for tau in (1.0, 2.0):
        x = s.clone().requires_grad_()
        out = ce_and_kd(x, y, t, "kl", tau, z_loss=True, chunk_rows=4)
        total = (out.ce * 1.3 + out.kd * 0.7 + out.z * 0.11).sum()
        (g,) = torch.autograd.grad(total, x)
        x2 = s.clone().requires_grad_()
        ce_ref = F.cross_entropy(x2, y, reduction="none")
        kd_ref = torch.where(valid, ref_loss("kl", x2, t, tau), 0.0)
        z_ref = torch.where(valid, torch.logsumexp(x2, -1) ** 2, 0.0)
        (g2,) = torch.autograd.grad((ce_ref * 1.3 + kd_ref * 0.7 + z_ref * 0.11).sum(), x2)
        for a, b in ((out.ce, ce_ref), (out.kd, kd_ref), (out.z, z_ref), (g, g2)):
            torch.testing.assert_close(a.detach(), b.detach())
        assert (g[~valid] == 0).all()


def test_ce_and_kd_other_loss_falls_back_and_classical_mode():
    s, t = rand_logits(seed=27), rand_logits(seed=28)
    y = torch.tensor([1, 2, 3, 4, 5, 6])
    out = ce_and_kd(s, y, t, "jsd", 2.0, beta=0.3)
    torch.testing.assert_close(out.kd, ref_loss("jsd", s, t, 2.0, beta=0.3))
    out = ce_and_kd(s, y)  # classical: no teacher
    assert out.kd is None and out.z is None
    torch.testing.assert_close(out.ce, F.cross_entropy(s, y, reduction="none"))


def test_fused_backward_twice_is_an_error_and_no_grad_works():
    s, t = rand_logits(seed=29).requires_grad_(), rand_logits(seed=30)
    loss = kd_loss("kl", s, t, 2.0).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()
    with torch.no_grad():
        assert torch.isfinite(kd_loss("kl", s, t, 2.0)).all()


def test_z_loss():
    s = rand_logits(seed=31)
    y = torch.tensor([1, -100, 3, 4, 5, 6])
    assert Z_LOSS_WEIGHT == 1e-4
    torch.testing.assert_close(z_loss(s), (torch.logsumexp(s, -1) ** 2).mean())
    torch.testing.assert_close(z_loss(s, labels=y), (torch.logsumexp(s, -1)[y != -100] ** 2).mean())


# ---------------------------------------------------------------------------------------- combine


def test_combine_normalized_matches_hand_computation():
    ce = torch.tensor(2.0, requires_grad=True)
    kd = torch.tensor(0.5, requires_grad=True)
    for alpha in (1.0, 0.25):
        total = combine(ce, kd, alpha, "normalized")
        assert total.item() == pytest.approx(2.0 + alpha * 0.5 * (2.0 / 0.5))  # KD rescaled to CE's mean
        g_ce, g_kd = torch.autograd.grad(total, (ce, kd))
        assert g_ce.item() == pytest.approx(1.0)  # ratio detached: no gradient through CE/KD
        assert g_kd.item() == pytest.approx(alpha * 4.0)


def test_combine_mix_and_degenerate_kd():
    ce, kd = torch.tensor(2.0), torch.tensor(0.5)
    assert combine(ce, kd, 0.3, "mix").item() == pytest.approx(0.7 * 2.0 + 0.3 * 0.5)
    assert combine(ce, kd, 1.0, "mix") is kd
    assert combine(ce, torch.tensor(0.0), 1.0, "normalized").item() == 2.0  # student == teacher: no blow-up


@pytest.mark.parametrize("mode", ["normalized", "mix"])
def test_alpha_zero_is_exactly_ce(mode):
    ce = torch.tensor(2.345678, requires_grad=True)
    assert combine(ce, torch.tensor(float("nan")), 0.0, mode) is ce
    assert combine(ce, None, 0.0, mode) is ce


# ---------------------------------------------------------------------------------------- errors


def test_registry_classes_own_their_names_parameters_and_flags():
    assert all(KD_LOSSES[n].name == n for n in NAMES)
    assert loss_names(fused="kl") == ["kl"] and loss_names(fused="soft_ce") == ["soft_ce"]
    assert "mse_logits" in loss_names(needs_logits=True) and "topk_kl" in loss_names(needs_truncation=True)
    jsd = get_loss("jsd", {"beta": 0.3})
    assert jsd.name == "jsd" and jsd.params == {"beta": 0.3} and get_loss("jsd").params == {"beta": 0.5}
    s, t = rand_logits(seed=32), rand_logits(seed=33)
    torch.testing.assert_close(kd_loss("jsd", s, t, 2.0, beta=0.3), ref_loss("jsd", s, t, 2.0, beta=0.3))
    with pytest.raises(ConfigError, match="jsd beta must be a number in"):
        kd_loss("jsd", s, t, 2.0, beta=1.5)
    with pytest.raises(ConfigError, match="did you mean 'beta'"):
        kd_loss("jsd", s, t, 2.0, betta=0.3)


def test_the_docs_table_lists_exactly_the_registry():
    assert docs_table() in (REPO / "docs" / "distillation.md").read_text(), \
        "docs/distillation.md's KD loss table is stale: paste docs_table()'s output over it"


def test_unknown_loss_is_a_config_error_with_suggestion():
    s = rand_logits()
    with pytest.raises(ConfigError, match="did you mean 'reverse_kl'") as e:
        kd_loss("reverse_kll", s, s, 1.0)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown distillation loss"):
        ce_and_kd(s, None, s, "kld")


@pytest.mark.parametrize("kw,match", [
    ({"temperature": 0.0}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_k": 0}, "top_k"),
])
def test_bad_settings_are_config_errors(kw, match):
    s = rand_logits()
    args = {"temperature": 1.0, "top_p": 1.0, "top_k": None} | kw
    with pytest.raises(ConfigError, match=match):
        kd_loss("kl", s, s, **args)


def test_topk_kl_without_truncation_and_bad_combine_mode():
    s = rand_logits()
    with pytest.raises(ConfigError, match="top_k"):
        kd_loss("topk_kl", s, s, 1.0)
    with pytest.raises(ConfigError, match="combine mode"):
        combine(torch.tensor(1.0), torch.tensor(1.0), 0.5, "sum")
    assert fused_kd.CHUNK_ELEMENTS > 0


def test_large_inputs_use_checkpointed_chunks_with_same_result(monkeypatch):
    s, t = rand_logits(n=20, v=9, seed=34), rand_logits(n=20, v=9, seed=35)
    plain = value_and_grad(lambda x: kd_loss("jsd", x, t, 2.0, 0.9, 4), s)
    monkeypatch.setattr(L, "CHECKPOINT_ABOVE", 10)
    monkeypatch.setattr(fused_kd, "CHUNK_ELEMENTS", 27)  # 3 rows per chunk
    chunked = value_and_grad(lambda x: kd_loss("jsd", x, t, 2.0, 0.9, 4), s)
    for a, b in zip(plain, chunked):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_teacher_temperature_applies_to_the_teacher_only(name):
    """SALT: teacher at its own temperature, student untempered; equals pre-scaling the teacher logits."""
    s, t = rand_logits(seed=37), rand_logits(seed=38)
    tau, tau_t = 2.0, 0.25
    got, g = value_and_grad(lambda x: kd_loss(name, x, t, tau, 0.9, 4, teacher_temperature=tau_t), s)
    keep = keep_mask(t, 0.9, 4)  # the kept set comes from the raw teacher, whatever the temperatures
    scaled = t if name == "mse_logits" else t * (tau / tau_t)
    want, g_want = value_and_grad(
        lambda x: torch.stack([ref_loss(name, x[i:i + 1], scaled[i:i + 1], tau, 1.0, None, keep_row=keep[i])[0]
                               for i in range(len(x))]), s)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g, g_want)
    if name in ("kl", "soft_ce"):
        y = torch.tensor([1, 2, 3, 4, 5, 6])
        out = ce_and_kd(s, y, t, name, tau, 0.9, 4, teacher_temperature=tau_t)
        torch.testing.assert_close(out.kd, got)


def test_reuse_teacher_logits_gives_the_same_loss_and_gradient():
    s = rand_logits(n=30, v=19, seed=39, dtype=torch.bfloat16)
    t = rand_logits(n=30, v=19, seed=40, dtype=torch.bfloat16)
    y = torch.randint(0, 19, (30,), generator=torch.Generator().manual_seed(1))
    want = value_and_grad(lambda x: torch.stack(ce_and_kd(x, y, t, "kl", 2.0, 0.9, 5, chunk_rows=7)[:2]), s)
    t2 = t.clone()
    got = value_and_grad(lambda x: torch.stack(ce_and_kd(x, y, t2, "kl", 2.0, 0.9, 5, chunk_rows=7,
                                                         reuse_teacher_logits=True)[:2]), s)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert not torch.equal(t2, t)  # its memory now held the KD gradient
    t3 = t.clone()
    got = value_and_grad(lambda x: kd_loss("kl", x, t3, 2.0, reuse_teacher_logits=True, chunk_rows=7), s)
    want = value_and_grad(lambda x: kd_loss("kl", x, t, 2.0, chunk_rows=7), s)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_ce_only_gradient_matches_cross_entropy(tau):
    """A classical step through the fused path (no teacher) must give F.cross_entropy's value and gradient."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    z = torch.randn(64, 50, requires_grad=True)
    y = torch.randint(0, 50, (64,))
    ce_and_kd(z, y, temperature=tau).ce.mean().backward()
    fused = z.grad.clone()
    z.grad = None
    F.cross_entropy(z, y).backward()
    assert torch.allclose(fused, z.grad, atol=1e-6)


def test_normalized_mean_is_the_normalized_sum_over_one_plus_alpha():
    from bootdistill.distill.losses import combine

    ce = torch.tensor(5.0, requires_grad=True)
    kd = torch.tensor(0.25, requires_grad=True)
    out = combine(ce, kd, 0.5, "normalized_mean")
    assert out.item() == pytest.approx((5.0 + 0.5 * (5.0 / 0.25) * 0.25) / 1.5)
    out.backward()
    # the ratio is a constant: d/dCE = 1 / 1.5, d/dKD = alpha * CE/KD / 1.5
    assert ce.grad.item() == pytest.approx(1 / 1.5) and kd.grad.item() == pytest.approx(0.5 * 20 / 1.5)
