import math

import pytest
import torch

from bootdistill.compute import flops_per_token
from bootdistill.arch import build_model
from bootdistill.model import GPT, matmul_attention
from bootdistill.shape import PRESETS, ModelShape, count_params


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_param_counts_match_table1(name):
    p = PRESETS[name]
    n = count_params(ModelShape(5000, p.d_model, p.n_layers, p.n_heads, p.context))["total"]
    # 10M and 17M rows contradict their own shapes (see model.py); all rows land within 1% of #Params
    assert abs(n / p.paper_params - 1) < (0.01 if p.note else 0.002)


@pytest.mark.parametrize("name", ["1M", "2M", "5M"])
def test_count_params_equals_built_model(name):
    p = PRESETS[name]
    shape = ModelShape(5000, p.d_model, p.n_layers, p.n_heads, p.context)
    assert GPT(shape).num_params() == count_params(shape)["total"]


def test_init_scales_and_tied_head():
    torch.manual_seed(0)
    s = ModelShape(1000, 128, 4, 4, 64)
    m = GPT(s)
    assert m.lm_head.weight is m.tok_emb.weight
    std = 128 ** -0.5
    assert m.blocks[0].mlp.fc.weight.std().item() == pytest.approx(std, rel=0.05)
    assert m.blocks[0].attn.proj.weight.std().item() == pytest.approx(std / math.sqrt(8), rel=0.05)
    assert m.blocks[0].mlp.fc2.weight.std().item() == pytest.approx(std / math.sqrt(8), rel=0.05)
    assert torch.all(m.blocks[0].attn.qkv.bias == 0)


def test_causal_and_context_limit():
    torch.manual_seed(0)
    m = GPT(ModelShape(100, 32, 2, 2, 16, dropout=0.0)).eval()
    x = torch.randint(0, 100, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 100
    with torch.no_grad():
        a, b = m(x), m(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])
    with pytest.raises(ValueError, match="exceeds the model's context"):
        m(torch.randint(0, 100, (1, 17)))


def test_presets_cli_json_and_table():
    import json

    from conftest import run_cli

    r = run_cli("presets", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == set(PRESETS)
    p = rows["150M"]
    assert p["params"] == count_params(ModelShape(5000, 512, 48, 16, 1024))["total"]
    assert p["train_flops_per_token_6N"] == 6 * p["params"]
    assert p["train_flops_per_token_exact"] > p["train_flops_per_token_6N"] * 0.5
    r = run_cli("presets")
    assert r.returncode == 0 and "150M" in r.stdout and "note 17M" in r.stdout


def test_matmul_attention_equals_sdpa_forward_and_backward():
    """The CPU fast path (short contexts) computes what SDPA computes, gradients included."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 40, 16, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ours = matmul_attention(q, k, v)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, ref)
    w = torch.randn(ours.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((ours * w).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref * w).sum(), (q, k, v))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_model_uses_the_same_attention_on_both_paths(monkeypatch, arch):
    """On CPU, short contexts train through matmul attention; a forward without gradients (a teacher, an
    evaluation) and longer contexts go through SDPA. The logits agree either way."""
    import bootdistill.model as model_module

    torch.manual_seed(0)
    m = build_model(ModelShape(100, 32, 2, 4, 16, dropout=0.0, arch=arch, n_kv_heads=2 if arch == "llama" else None)).eval()
    x = torch.randint(0, 100, (2, 16))
    calls = []
    monkeypatch.setattr(model_module, "matmul_attention", lambda *a: calls.append(1) or matmul_attention(*a))
    training_path = m(x)
    assert len(calls) == 2  # one per layer
    with torch.no_grad():
        forward_only = m(x)
        assert len(calls) == 2  # SDPA
        for b in m.blocks:
            b.attn.cpu_matmul_max_t = 0  # long contexts: SDPA, gradients or not
    long_path = m(x)
    assert len(calls) == 2
    torch.testing.assert_close(training_path.detach(), forward_only, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(long_path.detach(), forward_only, atol=1e-5, rtol=1e-5)


# gpt2 and llama, tied and untied, default and given FFN widths, grouped-query attention (n_kv_heads < n_heads)
SHAPES = [ModelShape(1000, 64, 3, 4, 32), ModelShape(1000, 64, 2, 4, 32, d_ff=100, tie_embeddings=False),
          ModelShape(1000, 64, 3, 4, 32, arch="llama"), ModelShape(777, 96, 2, 6, 48, arch="llama", n_kv_heads=2),
          ModelShape(1000, 64, 2, 8, 32, arch="llama", n_kv_heads=1, d_ff=160, tie_embeddings=False)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.arch}-kv{s.kv_heads}-ff{s.ffn}-tied{s.tie_embeddings}")
def test_count_params_and_flops_equal_the_built_model(shape):
    """Parameter counts and the 6N / exact FLOPs models against the parameters of the model itself."""
    model = build_model(shape)
    n = count_params(shape)
    assert n["total"] == sum(p.numel() for p in model.parameters())
    embeddings = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    untied_head = 0 if shape.tie_embeddings else model.lm_head.weight.numel()
    assert n["embedding"] == embeddings + untied_head
    linears = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))  # the head included
    assert n["matmul"] == linears
    assert flops_per_token(shape) == 6 * n["total"]
    assert flops_per_token(shape, exact=True) == 6 * n["matmul"] + 12 * shape.n_layers * shape.context * shape.d_model
    if shape.arch == "llama":
        assert not any(name.endswith("bias") for name, _ in model.named_parameters())
        assert (model.lm_head.weight is model.tok_emb.weight) == shape.tie_embeddings


def test_llama_is_causal_and_gqa_equals_repeated_heads():
    """A grouped-query model computes what a full multi-head model with each k/v head copied per group does."""
    torch.manual_seed(0)
    gqa = build_model(ModelShape(100, 32, 2, 4, 16, dropout=0.0, arch="llama", n_kv_heads=2)).eval()
    full = build_model(ModelShape(100, 32, 2, 4, 16, dropout=0.0, arch="llama")).eval()
    sd = gqa.state_dict()
    for name in list(sd):
        if name.endswith(("k_proj.weight", "v_proj.weight")):  # (kv * hs, d): each head's 8 rows, twice
            sd[name] = sd[name].view(2, 1, 8, 32).expand(2, 2, 8, 32).reshape(32, 32)
    full.load_state_dict(sd)
    x = torch.randint(0, 100, (2, 16))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 100
    with torch.no_grad():
        a, b = gqa(x), gqa(y)
        torch.testing.assert_close(full(x), a, atol=1e-5, rtol=1e-5)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6) and not torch.allclose(a[:, 10:], b[:, 10:])
    with pytest.raises(ValueError, match="exceeds the model's context"):
        gqa(torch.randint(0, 100, (1, 17)))


def test_cpu_dropout_keeps_one_minus_p_scaled_and_its_gradient_is_the_mask():
    from bootdistill.model import Dropout

    drop = Dropout(0.1).train()
    x = torch.randn(4, 1000, 63, requires_grad=True)  # odd element count: the last 16-bit draw is cut
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005  # 252k draws: 5 standard deviations is 0.003
    assert torch.allclose(y[kept], x[kept] / 0.9)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.9)
    torch.manual_seed(0)
    assert torch.equal(drop(x.detach()), y.detach())  # masks come from the default generator: seeded, resumable
    assert torch.equal(drop.eval()(x), x)
