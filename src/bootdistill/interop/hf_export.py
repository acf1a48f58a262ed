"""Export a bootdistill checkpoint as a Hugging Face `GPT2LMHeadModel` + fast tokenizer directory.

Our GPT is GPT-2's architecture (learned positions, Pre-LN blocks, 4x GELU FFN, tied LM head, LayerNorm eps
1e-5, biases everywhere but the head) with the exact (erf) GELU, so the mapping is one-to-one: GPT-2's Conv1D
layers store weights as (in, out), the transpose of nn.Linear's. The tokenizer is the prepared data's
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
import yaml

from ..data.tokenizer import SEP_ID, SPECIAL_TOKENS, file_sha256
from ..errors import BootdistillError, CheckpointError, DataError
from ..fsutil import follow_umask, translate_os_errors
from ..model import GPT
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
        n_head=shape.n_heads, n_inner=4 * shape.d_model,
        activation_function="gelu",  # exact erf GELU (F.gelu), not GPT-2's tanh "gelu_new"
        resid_pdrop=shape.dropout, embd_pdrop=shape.dropout, attn_pdrop=shape.attn_dropout,
        layer_norm_epsilon=1e-5,  # nn.LayerNorm's default
        scale_attn_weights=True,  # 1/sqrt(head dim), as SDPA
        tie_word_embeddings=True,
        # [SEP] ends every article in our token stream: the document boundary, so both BOS and EOS
        bos_token_id=SEP_ID, eos_token_id=SEP_ID, pad_token_id=SPECIAL_TOKENS.index("[PAD]"),
        architectures=["GPT2LMHeadModel"],
    )


def to_gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our GPT's weights under `GPT2LMHeadModel`'s names (Linear weights transposed into Conv1D layout)."""
    sd = {"transformer.wte.weight": model.tok_emb.weight, "transformer.wpe.weight": model.pos_emb.weight,
          "transformer.ln_f.weight": model.ln_f.weight, "transformer.ln_f.bias": model.ln_f.bias}
    linears = {"attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj", "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.fc2"}
    for i, b in enumerate(model.blocks):
        h = f"transformer.h.{i}."
        for hf_name, ln in (("ln_1", b.ln1), ("ln_2", b.ln2)):
            sd[h + hf_name + ".weight"], sd[h + hf_name + ".bias"] = ln.weight, ln.bias
        for hf_name, ours in linears.items():
            lin = b.get_submodule(ours)
            sd[h + hf_name + ".weight"] = lin.weight.t()
            sd[h + hf_name + ".bias"] = lin.bias
    sd["lm_head.weight"] = model.tok_emb.weight  # tied
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def to_gpt2(model: GPT):
    """A `GPT2LMHeadModel` (eval mode, fp32) with our model's weights."""
    tf = _transformers()
    hf = tf.GPT2LMHeadModel(gpt2_config(model.shape))
    missing, unexpected = hf.load_state_dict(to_gpt2_state_dict(model), strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias") and not k.endswith(".masked_bias")]  # buffers
    if missing or unexpected:  # a transformers release renamed GPT-2's parameters
        raise BootdistillError(f"transformers {tf.__version__} names GPT-2's weights differently "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]}): use a version from bootdistill[hf]")
    return hf.float().eval()


def hf_tokenizer(tokenizer_json: str | Path, context: int):
    """The prepared data's tokenizer as a `PreTrainedTokenizerFast` with our special tokens."""
    tf = _transformers()
    return tf.PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), model_max_length=context,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        bos_token="[SEP]", eos_token="[SEP]",  # as in gpt2_config
    )


def find_tokenizer(ckpt: Path, tokenizer_sha256: str | None) -> Path:
    """The tokenizer.json a checkpoint was trained with: from the run's summary.json or config.yaml, checked
    against the sha256 the checkpoint recorded (relative paths: from the working directory, as in training)."""
    run = ckpt.parent.parent
    candidates = []
    try:
        candidates.append(json.loads((run / "summary.json").read_text())["data"]["dir"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        candidates.append((yaml.safe_load((run / "config.yaml").read_text()) or {})["data"]["prepared_dir"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        pass
    for c in candidates:
        if c and (Path(c) / "tokenizer.json").is_file():
            path = Path(c) / "tokenizer.json"
            if tokenizer_sha256 is None or file_sha256(path) == tokenizer_sha256:
                return path
    raise DataError(f"cannot find the tokenizer checkpoint '{ckpt}' was trained with (its prepared data is gone "
                    "or was rebuilt): pass --tokenizer PATH/tokenizer.json")


def export_hf(run_or_ckpt: str | Path, out: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write `out`: config.json, model.safetensors, tokenizer files (loadable with AutoModelForCausalLM /
    AutoTokenizer) and bootdistill.json (checkpoint, step, tokens, FLOPs ledger). All of it or nothing: written
    into a temp dir beside `out`, then renamed."""
    from ..train.eval_cli import load_model_from_checkpoint

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
        hf_model, hf_tok = to_gpt2(model), hf_tokenizer(tok_path, model.shape.context)
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
