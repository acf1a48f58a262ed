"""The GPT of the bootstrapped-distillation paper (§2.2); its shapes and size presets are in shape.py.

Decoder-only, learned positional embeddings, Pre-LN blocks, GELU FFN of 4x width, LM head tied to the
token embedding, N(0, d^-0.5) init with residual projections scaled by 1/sqrt(2 * n_layers).
The Llama-style block of llama.py (`model.arch: llama`) shares `attend`; arch.py builds either.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .shape import ModelShape


# On CPU, plain matmul attention beat SDPA's flash kernel (forward + backward) at 256 tokens and lost from 512 on,
# where flash skips the masked half (benchmarks/bench_attention.py; docs/benchmarks.md). A forward without
# backward (a teacher, an evaluation) is faster with flash from 256 tokens (1.5x; 11% slower at 128), so
# matmuls serve training only.
CPU_MATMUL_ATTENTION_MAX_T = 256


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax(q k^T / sqrt(d)) v with explicit matmuls: what SDPA computes, as two GEMMs on the CPU.

    The T x T scores dominate the cost, so they see as few passes as possible: the scale goes on q (T x d), and
    the causal mask is the additive term of one baddbmm (27% faster than scaling and masking the scores, bf16,
    Intel Xeon; docs/benchmarks.md)."""
    B, H, T, d = q.shape
    future = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
    scores = torch.baddbmm(future.expand(B * H, T, T), (q * d ** -0.5).flatten(0, 1), k.transpose(-2, -1).flatten(0, 1))
    return scores.softmax(-1).view(B, H, T, T) @ v


class Dropout(nn.Dropout):
    """nn.Dropout, with CPU masks drawn as 16-bit integers: torch's CPU bernoulli_ took 13% of a 5M preset's bf16
    step on an Intel Xeon with AMX, this 5.9 -> 3.4 ms per 1M elements (docs/benchmarks.md). The keep probability
    is rounded to a multiple of 1/65536 (0.1 -> 0.100006); masks come from torch's default generator, which
    checkpoints save, so a resumed run draws the same masks. GPUs keep torch's fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        n = x.numel()
        bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_(-2**31, 2**31).view(torch.int16)[:n]
        keep = bits.view(x.shape) >= round(self.p * 65536) - 32768  # uniform int16 >= threshold: P = 1 - p
        return x * keep * (1.0 / (1.0 - self.p))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, cpu_matmul_max_t: int) -> torch.Tensor:
    """Causal attention of (B, nh, T, hs) heads: matmuls for short CPU training steps, SDPA otherwise."""
    # SDPA picks fused kernels (flash on GPU); attention-weight dropout (the paper's, optional) disables
    # them on CPU and made steps 3-4x slower there, so it is off by default
    if q.device.type == "cpu" and q.size(-2) <= cpu_matmul_max_t and dropout_p == 0.0 and torch.is_grad_enabled():
        return matmul_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)


class CausalSelfAttention(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        assert s.d_model % s.n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = s.n_heads
        self.qkv = nn.Linear(s.d_model, 3 * s.d_model)
        self.proj = nn.Linear(s.d_model, s.d_model)
        self.attn_dropout = s.attn_dropout
        self.cpu_matmul_max_t = CPU_MATMUL_ATTENTION_MAX_T
        self.resid_drop = Dropout(s.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = attend(q, k, v, self.attn_dropout if self.training else 0.0, self.cpu_matmul_max_t)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        self.fc = nn.Linear(s.d_model, s.ffn)
        self.fc2 = nn.Linear(s.ffn, s.d_model)
        self.drop = Dropout(s.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        self.ln1 = nn.LayerNorm(s.d_model)
        self.attn = CausalSelfAttention(s)
        self.ln2 = nn.LayerNorm(s.d_model)
        self.mlp = MLP(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        self.tok_emb = nn.Embedding(shape.vocab_size, shape.d_model)
        self.pos_emb = nn.Embedding(shape.context, shape.d_model)
        self.drop = Dropout(shape.dropout)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layers))
        self.ln_f = nn.LayerNorm(shape.d_model)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        if shape.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        init_weights(self, ("attn.proj.weight", "mlp.fc2.weight"))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V)."""
        B, T = idx.shape
        if T > self.shape.context:
            raise ValueError(f"sequence length {T} exceeds the model's context {self.shape.context}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weight counted once


def init_weights(model: nn.Module, residual_outputs: tuple[str, ...]) -> None:
    """N(0, d^-0.5) for matrices, 1/sqrt(2 L) smaller for the residual branches' output projections; zero biases."""
    std = model.shape.d_model ** -0.5
    resid_std = std / math.sqrt(2 * model.shape.n_layers)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            nn.init.normal_(p, mean=0.0, std=resid_std if name.endswith(residual_outputs) else std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
