"""`bootdistill eval`: load any checkpoint and measure its loss on a prepared split, or its loss and bits per
byte on any UTF-8 text file (`--text FILE`), tokenized with the run's own tokenizer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..data.prepare import load_meta, prepare, sep_id_of, token_file
from ..data.tokenizer import load_tokenizer
from ..errors import ConfigError, DataError
from ..runtime.device import resolve_device, resolve_precision
from ..runtime.evaluate import evaluate, text_nats
from ..runtime.loading import find_tokenizer, load_model_from_checkpoint, run_config_of


def evaluate_checkpoint(path, split="val", data_dir=None, context=None, max_batches=None, bucket=64, device="auto",
                        precision="auto") -> dict:
    for name, value in (("--context", context), ("--batches", max_batches), ("--bucket", bucket)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    dev = resolve_device(device, "--device ")
    amp, _ = resolve_precision(precision, dev)
    model, meta, ckpt = load_model_from_checkpoint(path, dev)
    if data_dir is None:
        data_dir = prepare(run_config_of(ckpt).data, progress=False)
    data_meta = load_meta(Path(data_dir))
    if data_meta["tokenizer_sha256"] != meta.get("tokenizer_sha256"):
        raise DataError(f"the tokenizer of '{data_dir}' does not match the one checkpoint '{ckpt}' was trained with: "
                        "evaluate on data prepared with the run's tokenizer")
    ctx = context or model.shape.context
    if ctx > model.shape.context:
        raise ConfigError(f"--context {ctx} is longer than the model's context {model.shape.context}: use at most {model.shape.context}")
    batch = 8  # sequences per forward; --batches counts these
    result = evaluate(model, token_file(Path(data_dir), split), ctx, batch, dev, amp,
                      max_batches and max_batches * batch, bucket)
    return {"checkpoint": str(ckpt), "step": meta["step"], "split": split, "context": ctx, **result}


def run_data_dir(ckpt: Path, tokenizer_sha256: str | None) -> Path:
    """The prepared-data directory (tokenizer.json + meta.json) a checkpoint was trained on: the one its run's
    summary.json or config.yaml names, else the run's data settings' directory if it is still prepared (reused,
    never re-tokenized while it is complete)."""
    try:
        return find_tokenizer(ckpt, tokenizer_sha256).parent
    except DataError:
        return prepare(run_config_of(ckpt).data, progress=False)


def read_text(path: str | Path) -> str:
    """A UTF-8 file's text exactly (no newline translation), so its characters are the file's bytes."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"text file '{path}' does not exist") from None
    except IsADirectoryError:
        raise DataError(f"'{path}' is a directory: give one UTF-8 text file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"'{path}' is not UTF-8 text ({e.reason} at byte {e.start}): convert it to UTF-8") from None


def evaluate_text(path, text_file, context=None, device="auto", precision="auto") -> dict:
    """Loss (nats per token) and bits per byte of a checkpoint on a UTF-8 text file, as one document.

    The text is tokenized with the run's tokenizer and preceded by the document separator (as every document of
    the training stream is), so every token of the text is predicted. Bits per byte = total nats / ln 2 / the
    file's size in bytes (all of its UTF-8 text, newlines included)."""
    if context is not None and context < 1:
        raise ConfigError(f"--context must be a positive integer, got {context}")
    text = read_text(text_file)
    if not text.strip():
        raise DataError(f"text file '{text_file}' holds no text")
    dev = resolve_device(device, "--device ")
    amp, _ = resolve_precision(precision, dev)
    model, meta, ckpt = load_model_from_checkpoint(path, dev)
    ctx = context or model.shape.context
    if ctx > model.shape.context:
        raise ConfigError(f"--context {ctx} is longer than the model's context {model.shape.context}: use at most {model.shape.context}")
    data_dir = run_data_dir(ckpt, meta.get("tokenizer_sha256"))
    tok = load_tokenizer(data_dir)
    ids = np.array([sep_id_of(load_meta(data_dir)), *tok.encode(text, add_special_tokens=False).ids], dtype=np.int64)
    nats = text_nats(model, ids, ctx, dev, amp)
    n_bytes, n_tokens = len(text.encode("utf-8")), len(ids) - 1
    return {"checkpoint": str(ckpt), "step": meta["step"], "text": str(text_file), "context": ctx,
            "tokens": n_tokens, "bytes": n_bytes, "loss": nats / n_tokens,
            "bits_per_byte": nats / math.log(2) / n_bytes}
