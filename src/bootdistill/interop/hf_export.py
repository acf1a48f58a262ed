"""Export a bootdistill checkpoint as a Hugging Face `GPT2LMHeadModel` (`model.arch: gpt2`) or `LlamaForCausalLM`
(`llama`) + fast tokenizer directory.

Our GPT is GPT-2's architecture (learned positions, Pre-LN blocks, 4x GELU FFN, tied LM head, LayerNorm eps
1e-5, biases everywhere but the head) with the exact (erf) GELU, so the mapping is one-to-one: GPT-2's Conv1D
layers store weights as (in, out), the transpose of nn.Linear's. The llama block follows LlamaForCausalLM's
conventions (llama.py), so its weights map by name alone. `weight_names` is the table, used both ways
(`model.init_from` a Hugging Face directory reads it backwards). The tokenizer is the prepared data's
`tokenizers` JSON, wrapped as a `PreTrainedTokenizerFast`; it adds no special tokens on encode, like ours.

`transformers` is the optional extra `[hf]`: imported only inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..data.tokenizer import SEP_ID, SPECIAL_TOKENS, file_sha256
from ..errors import BootdistillError, CheckpointError, DataError
from ..fsutil import follow_umask, translate_os_errors
from ..llama import RMS_NORM_EPS, ROPE_THETA
from ..runtime.loading import find_tokenizer, load_model_from_checkpoint
from ..shape import ModelShape


def _transformers():
    try:
        import transformers
    except ImportError:
        raise BootdistillError("exporting to Hugging Face needs the transformers package: "
                               "pip install 'bootdistill[hf]'") from None
    return transformers


def gpt2_config(shape: ModelShape):
    """The `GPT2Config` of a model of this shape."""
    tf = _transformers()
    return tf.GPT2Config(
        vocab_size=shape.vocab_size, n_positions=shape.context, n_embd=shape.d_model, n_layer=shape.n_layers,
        n_head=shape.n_heads, n_inner=shape.ffn,
        activation_function="gelu",  # exact erf GELU (F.gelu), not GPT-2's tanh "gelu_new"
        resid_pdrop=shape.dropout, embd_pdrop=shape.dropout, attn_pdrop=shape.attn_dropout,
        layer_norm_epsilon=1e-5,  # nn.LayerNorm's default
        scale_attn_weights=True,  # 1/sqrt(head dim), as SDPA
        tie_word_embeddings=shape.tie_embeddings,
        # [SEP] ends every article in our token stream: the document boundary, so both BOS and EOS
        bos_token_id=SEP_ID, eos_token_id=SEP_ID, pad_token_id=SPECIAL_TOKENS.index("[PAD]"),
        architectures=["GPT2LMHeadModel"],
    )


def llama_config(shape: ModelShape):
    """The `LlamaConfig` of a `model.arch: llama` model of this shape."""
    tf = _transformers()
    return tf.LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.d_model, intermediate_size=shape.ffn,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads, num_key_value_heads=shape.kv_heads,
        head_dim=shape.d_model // shape.n_heads, max_position_embeddings=shape.context, hidden_act="silu",
        rms_norm_eps=RMS_NORM_EPS, rope_theta=ROPE_THETA, attention_bias=False, mlp_bias=False,
        attention_dropout=shape.attn_dropout, tie_word_embeddings=shape.tie_embeddings,
        bos_token_id=SEP_ID, eos_token_id=SEP_ID, pad_token_id=SPECIAL_TOKENS.index("[PAD]"),  # as gpt2_config
        architectures=["LlamaForCausalLM"],
    )


# our architecture -> (Hugging Face class, its config)
HF_CLASSES = {"gpt2": ("GPT2LMHeadModel", gpt2_config), "llama": ("LlamaForCausalLM", llama_config)}


def weight_names(shape: ModelShape) -> list[tuple[str, str, bool]]:
    """(our name, the Hugging Face class's name, transposed?) of every weight: one table for export and import."""
    if shape.arch == "llama":
        names = [("tok_emb.weight", "model.embed_tokens.weight", False), ("norm_f.weight", "model.norm.weight", False)]
        per_block = {"norm1": "input_layernorm", "norm2": "post_attention_layernorm",
                     **{f"attn.{x}_proj": f"self_attn.{x}_proj" for x in "qkvo"},
                     **{f"mlp.{x}_proj": f"mlp.{x}_proj" for x in ("gate", "up", "down")}}
        for i in range(shape.n_layers):
            names += [(f"blocks.{i}.{ours}.weight", f"model.layers.{i}.{hf}.weight", False) for ours, hf in per_block.items()]
        return names + [("lm_head.weight", "lm_head.weight", False)]
    names = [("tok_emb.weight", "transformer.wte.weight", False), ("pos_emb.weight", "transformer.wpe.weight", False),
             ("ln_f.weight", "transformer.ln_f.weight", False), ("ln_f.bias", "transformer.ln_f.bias", False)]
    # GPT-2's Conv1D layers store weights as (in, out): the transpose of nn.Linear's
    linears = {"attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj", "mlp.fc": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for i in range(shape.n_layers):
        for ours, hf in (("ln1", "ln_1"), ("ln2", "ln_2")):
            names += [(f"blocks.{i}.{ours}.{w}", f"transformer.h.{i}.{hf}.{w}", False) for w in ("weight", "bias")]
        for ours, hf in linears.items():
            names += [(f"blocks.{i}.{ours}.weight", f"transformer.h.{i}.{hf}.weight", True),
                      (f"blocks.{i}.{ours}.bias", f"transformer.h.{i}.{hf}.bias", False)]
    return names + [("lm_head.weight", "lm_head.weight", False)]


def to_hf_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our model's weights under its Hugging Face class's names."""
    ours = model.state_dict()  # a tied head appears under both names
    return {hf: (ours[o].t() if t else ours[o]).detach().contiguous().clone() for o, hf, t in weight_names(model.shape)}


def to_hf(model: torch.nn.Module):
    """The Hugging Face model (GPT2LMHeadModel or LlamaForCausalLM; eval mode, fp32) with our model's weights."""
    tf = _transformers()
    cls_name, make_config = HF_CLASSES[model.shape.arch]
    hf = getattr(tf, cls_name)(make_config(model.shape))
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias") and not k.endswith(".masked_bias")]  # buffers
    if missing or unexpected:  # a transformers release renamed the parameters
        raise BootdistillError(f"transformers {tf.__version__} names {cls_name}'s weights differently "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]}): use a version from bootdistill[hf]")
    return hf.float().eval()


def given_separator(tokenizer_json: Path) -> tuple[str, int] | None:
    """(name, id) of the document separator when the prepared data beside `tokenizer_json` used a given tokenizer
    (data.tokenizer other than bpe); None for our BPE."""
    try:
        meta = json.loads((Path(tokenizer_json).parent / "meta.json").read_text())
        if meta["settings"].get("tokenizer_spec", "bpe") == "bpe":
            return None
        return next((t, i) for t, i in meta["special_tokens"].items() if i == meta["sep_id"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None


def hf_tokenizer(tokenizer_json: str | Path, context: int):
    """The prepared data's tokenizer as a `PreTrainedTokenizerFast` with our special tokens (a given tokenizer:
    its own separator as bos and eos, no others added)."""
    tf = _transformers()
    given = given_separator(Path(tokenizer_json))
    if given is not None:
        return tf.PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), model_max_length=context,
                                          bos_token=given[0], eos_token=given[0])
    return tf.PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), model_max_length=context,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        bos_token="[SEP]", eos_token="[SEP]",  # as in gpt2_config
    )


def export_hf(run_or_ckpt: str | Path, out: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write `out`: config.json, model.safetensors, tokenizer files (loadable with AutoModelForCausalLM /
    AutoTokenizer) and bootdistill.json (checkpoint, step, tokens, FLOPs ledger). All of it or nothing: written
    into a temp dir beside `out`, then renamed."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BootdistillError(f"output '{out}' already exists and is not an empty directory: choose a new one")
    if not Path(run_or_ckpt).exists():
        raise CheckpointError(f"run or checkpoint '{run_or_ckpt}' does not exist")
    _transformers()  # fail before any slow work
    tmp = None
    try:
        with translate_os_errors(out):  # claim the place first: an unwritable OUT fails before loading anything
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
        model, meta, ckpt = load_model_from_checkpoint(run_or_ckpt)
        tok_path = _tokenizer_path(ckpt, meta.get("tokenizer_sha256"), tokenizer)
        hf_model, hf_tok = to_hf(model), hf_tokenizer(tok_path, model.shape.context)
        given = given_separator(tok_path)
        if given is not None:  # the given tokenizer's separator, not our [SEP]/[PAD] ids
            hf_model.config.bos_token_id = hf_model.config.eos_token_id = given[1]
            hf_model.config.pad_token_id = None
        with translate_os_errors(out):
            hf_model.save_pretrained(tmp)
            hf_tok.save_pretrained(tmp)
            provenance = {"checkpoint": str(ckpt), **{k: meta.get(k) for k in ("step", "tokens", "tokenizer_sha256", "ledger")}}
            (tmp / "bootdistill.json").write_text(json.dumps(provenance, indent=2) + "\n")  # where it came from
            follow_umask(tmp)  # mkdtemp makes 0700; the export is an ordinary directory
            if out.exists():
                out.rmdir()  # empty (checked above)
            os.replace(tmp, out)
    except OSError as e:  # what translate_os_errors leaves: e.g. a parent that is a file
        raise BootdistillError(f"cannot write '{out}': {e.strerror or e}; choose a writable output directory") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _tokenizer_path(ckpt: Path, want_sha: str | None, given: str | Path | None) -> Path:
    if given is None:
        return find_tokenizer(ckpt, want_sha)
    path = Path(given) / "tokenizer.json" if Path(given).is_dir() else Path(given)
    if Path(given).is_dir() and not path.is_file():
        raise DataError(f"tokenizer directory '{given}' holds no tokenizer.json: give a tokenizer.json or a "
                        "prepared-data directory")
    if not path.is_file():
        raise DataError(f"tokenizer '{given}' does not exist: give a tokenizer.json or a prepared-data directory")
    if want_sha and file_sha256(path) != want_sha:
        raise DataError(f"tokenizer '{path}' is not the one checkpoint '{ckpt}' was trained with (sha256 differs)")
    return path
