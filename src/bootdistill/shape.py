"""Model shapes, the size presets of the bootstrapped-distillation paper (Table 1), and exact parameter counts.

Plain arithmetic without torch, so that planning, listing and reporting stay fast; model.py builds the GPT.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    context: int
    dropout: float = 0.1  # on embeddings and after attention / FFN (residual branches)
    attn_dropout: float = 0.0  # on the attention weights; > 0 forces SDPA's slow math kernel on CPU


@dataclass(frozen=True)
class Preset:
    name: str
    d_model: int
    n_layers: int
    n_heads: int
    context: int
    batch_tokens: int
    lr_max: float
    lr_min: float
    paper_params: float  # Table 1's #Params column, for comparison
    note: str = ""


K = 1024
# Table 1. "16k"/"32k" batches are 16 x 1024 and 32 x 1024 tokens (the paper's 32 x 1024 context blocks).
# 10M and 17M: their shapes in the table give 11.81M and 16.51M parameters, not the 14.9M / 18.45M of
# their #Params column. We keep width, heads and context and pick the layer count whose total is closest
# to the published #Params (the number the paper's compute figures are built on).
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("1M", 128, 5, 8, 512, 16 * K, 1e-3, 1e-4, 1.70e6),
        Preset("2M", 128, 11, 8, 512, 16 * K, 1e-3, 1e-4, 2.89e6),
        Preset("5M", 256, 6, 8, 1024, 16 * K, 1e-3, 1e-4, 6.28e6),
        Preset("10M", 256, 17, 8, 1024, 16 * K, 8e-4, 8e-5, 14.9e6,
               "table shape (13 layers) gives 11.81M; 17 layers gives 14.97M, closest to 14.9M"),
        Preset("17M", 384, 9, 16, 1024, 16 * K, 1e-3, 1e-4, 18.45e6,
               "table shape (8 layers) gives 16.51M; 9 layers gives 18.28M, closest to 18.45M"),
        Preset("30M", 512, 10, 16, 1024, 32 * K, 8e-4, 8e-5, 34.59e6),
        Preset("70M", 512, 23, 16, 1024, 32 * K, 6e-4, 6e-5, 75.56e6),
        Preset("150M", 512, 48, 16, 1024, 32 * K, 3e-4, 3e-5, 154.33e6),
    ]
}


def non_embedding_params(d_model: int, n_layers: int) -> int:
    """The blocks and the final LayerNorm: the N of the scaling laws (vocabulary and context do not enter)."""
    per_block = 12 * d_model * d_model + 13 * d_model  # qkv, proj, fc, fc2 weights + biases, two LayerNorms
    return n_layers * per_block + 2 * d_model  # + final LayerNorm


def count_params(shape: ModelShape) -> dict[str, int]:
    """Exact parameter counts of GPT(shape), without building it."""
    d, L, V, T = shape.d_model, shape.n_layers, shape.vocab_size, shape.context
    non_embedding = non_embedding_params(d, L)
    return {
        "total": V * d + T * d + non_embedding,
        "non_embedding": non_embedding,
        "embedding": V * d + T * d,
        # weights that take part in a matmul per token: block linears + the (tied) LM head
        "matmul": L * 12 * d * d + V * d,
    }
