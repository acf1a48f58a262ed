"""The Llama-style block beside the paper's GPT (`model.arch: llama`): what current small models use.

Rotary position embeddings (no position table), RMSNorm, SwiGLU FFN, no biases, optional grouped-query
attention (`n_kv_heads` key/value heads shared by groups of query heads). The layout and conventions are
those of Hugging Face's `LlamaForCausalLM` (rotate-half RoPE with theta 1e4, RMSNorm eps 1e-5), so `export`
maps the weights one to one. Init and attention kernels are the GPT's (model.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import CPU_MATMUL_ATTENTION_MAX_T, Dropout, attend, init_weights
from .shape import ModelShape

ROPE_THETA = 10000.0
RMS_NORM_EPS = 1e-5


def rope_tables(context: int, head_dim: int, theta: float = ROPE_THETA) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every (position, channel), (T, head_dim), in HF's rotate-half layout (frequencies twice)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
    angles = torch.outer(torch.arange(context).float(), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class GroupedQueryAttention(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = s.n_heads, s.kv_heads, s.d_model // s.n_heads
        self.q_proj = nn.Linear(s.d_model, s.d_model, bias=False)
        self.k_proj = nn.Linear(s.d_model, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(s.d_model, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(s.d_model, s.d_model, bias=False)
        self.attn_dropout = s.attn_dropout
        self.cpu_matmul_max_t = CPU_MATMUL_ATTENTION_MAX_T
        self.resid_drop = Dropout(s.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k, v = (p(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2) for p in (self.k_proj, self.v_proj))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.n_kv_heads != self.n_heads:  # each key/value head serves n_heads / n_kv_heads consecutive query heads
            k, v = (t.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1) for t in (k, v))
        y = attend(q, k, v, self.attn_dropout if self.training else 0.0, self.cpu_matmul_max_t)
        return self.resid_drop(self.o_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class SwiGLU(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        self.gate_proj = nn.Linear(s.d_model, s.ffn, bias=False)
        self.up_proj = nn.Linear(s.d_model, s.ffn, bias=False)
        self.down_proj = nn.Linear(s.ffn, s.d_model, bias=False)
        self.drop = Dropout(s.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class LlamaBlock(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        self.norm1 = nn.RMSNorm(s.d_model, eps=RMS_NORM_EPS)
        self.attn = GroupedQueryAttention(s)
        self.norm2 = nn.RMSNorm(s.d_model, eps=RMS_NORM_EPS)
        self.mlp = SwiGLU(s)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class Llama(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        self.tok_emb = nn.Embedding(shape.vocab_size, shape.d_model)
        self.drop = Dropout(shape.dropout)
        self.blocks = nn.ModuleList(LlamaBlock(shape) for _ in range(shape.n_layers))
        self.norm_f = nn.RMSNorm(shape.d_model, eps=RMS_NORM_EPS)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        if shape.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = rope_tables(shape.context, shape.d_model // shape.n_heads)
        self.register_buffer("rope_cos", cos, persistent=False)  # derived, not weights: not in checkpoints
        self.register_buffer("rope_sin", sin, persistent=False)
        init_weights(self, ("attn.o_proj.weight", "mlp.down_proj.weight"))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V)."""
        T = idx.size(1)
        if T > self.shape.context:
            raise ValueError(f"sequence length {T} exceeds the model's context {self.shape.context}")
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.drop(self.tok_emb(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.lm_head(self.norm_f(x))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weight counted once
