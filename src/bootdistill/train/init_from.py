"""`model.init_from`: start a run from existing weights instead of a random init.

The source is a run or checkpoint directory of this project, or a Hugging Face model directory of a supported
class (GPT2LMHeadModel, LlamaForCausalLM; read through interop/hf_export.py's weight-name table). Its shape is
read from meta.json / config.json alone, so a mismatch is one line before any data is prepared; the weights
load after the model is built and before its first step (a resumed run restores its own checkpoint instead).

Compute: a checkpoint of this project brings its ledger, whose total the new run counts (model.init_flops
overrides it); a Hugging Face model's training compute is unknown and counted as 0 unless model.init_flops is
given. Either way summary.json says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from ..interop.hf_export import _transformers, weight_names
from ..runtime import checkpoint as ckpt_io
from ..shape import ModelShape

HF_ARCHS = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama"}


@dataclass
class InitSource:
    path: Path  # the checkpoint dir, or the Hugging Face model dir
    kind: str  # checkpoint | hf
    shape: ModelShape  # vocabulary, widths, heads, context, FFN and head tying as the source has them
    ledger: dict | None = None  # a checkpoint's FLOPs ledger
    step: int | None = None
    tokenizer_sha256: str | None = None
    notes: tuple[str, ...] = ()  # what differs from our block beyond the shape (the weights still load)


def _hf_shape(path: Path, config: dict) -> tuple[ModelShape, tuple[str, ...]]:
    archs = config.get("architectures") or [config.get("model_type", "?")]
    arch = next((HF_ARCHS[a] for a in archs if a in HF_ARCHS), None)
    if arch is None:
        raise ConfigError(f"model.init_from '{path}' is a {archs[0]} model: supported are "
                          f"{' and '.join(HF_ARCHS)} (bootdistill's gpt2 and llama blocks)")
    c = config.get
    if arch == "gpt2":
        shape = ModelShape(c("vocab_size"), c("n_embd"), c("n_layer"), c("n_head"), c("n_positions"), arch=arch,
                           d_ff=c("n_inner") or 4 * c("n_embd"), tie_embeddings=c("tie_word_embeddings", True))
        notes = () if c("activation_function") == "gelu" else (
            f"its activation is {c('activation_function')}, ours the exact (erf) GELU",)
        return shape, notes
    shape = ModelShape(c("vocab_size"), c("hidden_size"), c("num_hidden_layers"), c("num_attention_heads"),
                       c("max_position_embeddings"), arch=arch, n_kv_heads=c("num_key_value_heads"),
                       d_ff=c("intermediate_size"), tie_embeddings=c("tie_word_embeddings", False))
    rope = c("rope_parameters") or c("rope_scaling") or {}
    theta = rope.get("rope_theta", c("rope_theta", 10000.0))
    notes = tuple(f"its {what}" for what, odd in (
        (f"rope_theta is {theta:g}, ours 10000", theta != 10000.0),
        (f"rope type is {rope.get('rope_type')}, ours default", rope.get("rope_type", "default") != "default"),
        (f"rms_norm_eps is {c('rms_norm_eps')}, ours 1e-05", c("rms_norm_eps", 1e-5) != 1e-5),
        (f"activation is {c('hidden_act')}, ours silu", c("hidden_act", "silu") != "silu")) if odd)
    return shape, notes


def read_source(path: str) -> InitSource:
    """What model.init_from names, from its small metadata files only."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"model.init_from '{path}' does not exist: give a run or checkpoint directory of "
                          "bootdistill, or a Hugging Face model directory")
    if (p / "config.json").is_file() and not (p / "meta.json").is_file():
        try:
            config = json.loads((p / "config.json").read_text())
        except ValueError as e:
            raise ConfigError(f"model.init_from '{path}': config.json is not valid JSON ({e})") from None
        shape, notes = _hf_shape(p, config)
        return InitSource(p, "hf", shape, notes=notes)
    ckpt = ckpt_io.resolve_checkpoint(p)
    meta = ckpt_io.read_meta(ckpt)
    try:
        shape = ModelShape(**meta["model"])
    except (KeyError, TypeError):
        raise ConfigError(f"model.init_from '{ckpt}' has no model shape in meta.json: it was not written by bootdistill") from None
    return InitSource(ckpt, "checkpoint", shape, meta.get("ledger"), meta.get("step"), meta.get("tokenizer_sha256"))


def check_fits(source: InitSource, m, vocab_size: int | None = None) -> None:
    """One line naming every setting where the source's shape differs from the run's `model:` section `m`
    (vocab_size too once the data's vocabulary is known)."""
    s = source.shape
    ours = ModelShape(vocab_size or s.vocab_size, m.d_model, m.n_layers, m.n_heads, m.context, arch=m.arch,
                      n_kv_heads=m.n_kv_heads, d_ff=m.d_ff, tie_embeddings=m.tie_embeddings)
    pairs = [("arch", s.arch, ours.arch), ("d_model", s.d_model, ours.d_model), ("n_layers", s.n_layers, ours.n_layers),
             ("n_heads", s.n_heads, ours.n_heads), ("n_kv_heads", s.kv_heads, ours.kv_heads),
             ("d_ff", s.ffn, ours.ffn), ("tie_embeddings", s.tie_embeddings, ours.tie_embeddings)]
    wrong = [f"model.{k} {there} there, {here} here" for k, there, here in pairs if there != here]
    if s.vocab_size != ours.vocab_size:
        wrong.append(f"vocabulary {s.vocab_size} there, {ours.vocab_size} in the prepared data (prepare with its tokenizer)")
    # a position table must match; RoPE has none, so a llama may train at a shorter context than its source's
    if s.context != ours.context and not (s.arch == ours.arch == "llama" and ours.context < s.context):
        wrong.append(f"model.context {s.context} there, {ours.context} here")
    if wrong:
        raise ConfigError(f"model.init_from '{source.path}' does not fit this model ({'; '.join(wrong)}): "
                          "set the model settings to the source's shape")


def load_into(model: torch.nn.Module, source: InitSource) -> None:
    """Copy the source's weights into `model` (built with a fitting shape)."""
    if source.kind == "checkpoint":
        ckpt_io.verify_checkpoint(source.path)
        ckpt_io.load_weights(source.path, model)
        return
    tf = _transformers()
    hf_state = tf.AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32).state_dict()
    names = weight_names(model.shape)
    ours = {o: (hf_state[h].t() if t else hf_state[h]) for o, h, t in names if h in hf_state}
    if model.shape.tie_embeddings:
        ours["lm_head.weight"] = ours.get("tok_emb.weight")
    used = {h for _, h, _ in names}
    extra = sorted(k for k in hf_state if k not in used and not k.endswith((".attn.bias", ".masked_bias")))
    missing = sorted(set(model.state_dict()) - set(ours))
    if extra or missing:  # e.g. a Llama with attention or MLP biases
        raise ConfigError(f"model.init_from '{source.path}' does not match bootdistill's {model.shape.arch} block "
                          f"(weights without a place: {extra[:3]}; places without weights: {missing[:3]})")
    with torch.no_grad():
        model.load_state_dict({k: v.contiguous() for k, v in ours.items()})
