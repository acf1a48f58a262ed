"""Model shapes, the size presets of the bootstrapped-distillation paper (Table 1), and exact parameter counts.

Plain arithmetic without torch, so that planning, listing and reporting stay fast; model.py builds the models:
`gpt2` (the paper's block, the default) or `llama` (RoPE, RMSNorm, SwiGLU, no biases, grouped-query attention).
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
    arch: str = "gpt2"  # gpt2 | llama
    n_kv_heads: int | None = None  # llama: key/value heads (grouped-query attention); None = n_heads
    d_ff: int | None = None  # hidden width of the FFN; None = the architecture's default (ffn_width)
    tie_embeddings: bool = True  # LM head shares the token embedding

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn(self) -> int:
        return self.d_ff or ffn_width(self.arch, self.d_model)


def ffn_width(arch: str, d_model: int) -> int:
    """Default FFN width: 4d for GPT-2; for SwiGLU 8d/3 (the same parameters as 4d with two matrices), rounded up
    to a multiple of 32 (Llama rounds to 256; 32 keeps small models close to 8d/3)."""
    if arch == "llama":
        return -(-(8 * d_model // 3) // 32) * 32
    return 4 * d_model


def shape_of(model_cfg, vocab_size: int, dropout: bool = True) -> ModelShape:
    """The ModelShape of a resolved `model:` config section (config.ModelConfig) for this vocabulary."""
    m = model_cfg
    return ModelShape(vocab_size, m.d_model, m.n_layers, m.n_heads, m.context,
                      **({"dropout": m.dropout, "attn_dropout": m.attn_dropout} if dropout else {}),
                      arch=m.arch, n_kv_heads=m.n_kv_heads, d_ff=m.d_ff, tie_embeddings=m.tie_embeddings)


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
    """The blocks and the final LayerNorm of the paper's GPT: the N of the scaling laws (vocabulary and context
    do not enter)."""
    per_block = 12 * d_model * d_model + 13 * d_model  # qkv, proj, fc, fc2 weights + biases, two LayerNorms
    return n_layers * per_block + 2 * d_model  # + final LayerNorm


def _block_linears(shape: ModelShape) -> int:
    """Weights of one block's linear layers (biases excluded)."""
    d, f = shape.d_model, shape.ffn
    if shape.arch == "llama":
        kv = shape.kv_heads * (d // shape.n_heads)  # width of k and of v
        return 2 * d * d + 2 * d * kv + 3 * d * f  # q, o; k, v; gate, up, down
    return 4 * d * d + 2 * d * f  # qkv, proj; fc, fc2


def count_params(shape: ModelShape) -> dict[str, int]:
    """Exact parameter counts of the model of this shape, without building it."""
    d, L, V, T = shape.d_model, shape.n_layers, shape.vocab_size, shape.context
    if shape.arch == "llama":  # no biases, two RMSNorms per block + final, no position table (RoPE)
        non_embedding = L * (_block_linears(shape) + 2 * d) + d
        embedding = V * d
    else:  # biases of qkv, proj, fc, fc2; two LayerNorms per block + final
        non_embedding = L * (_block_linears(shape) + 3 * d + d + shape.ffn + d + 4 * d) + 2 * d
        embedding = V * d + T * d
    head = 0 if shape.tie_embeddings else V * d  # an untied LM head counts with the embeddings
    return {
        "total": embedding + head + non_embedding,
        "non_embedding": non_embedding,
        "embedding": embedding + head,
        # weights that take part in a matmul per token: block linears + the LM head
        "matmul": L * _block_linears(shape) + V * d,
    }
