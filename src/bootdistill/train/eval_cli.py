"""`bootdistill eval`: load any checkpoint and measure its loss on a prepared split."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ..config import from_dict, RunConfig
from ..data.prepare import load_meta, prepare, token_file
from ..errors import ConfigError, DataError
from ..model import GPT
from ..shape import ModelShape
from . import checkpoint as ckpt_io
from .evaluate import evaluate
from .precision import resolve_device, resolve_precision


def load_model_from_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[GPT, dict, Path]:
    """Model (eval mode) + checkpoint meta + the checkpoint dir."""
    ckpt = ckpt_io.resolve_checkpoint(Path(path))
    meta = ckpt_io.verify_checkpoint(ckpt)
    try:
        shape = ModelShape(**meta["model"])
    except (KeyError, TypeError):
        from ..errors import CheckpointError

        raise CheckpointError(f"checkpoint '{ckpt}' has no model shape in meta.json: it was not written by bootdistill") from None
    model = GPT(shape)
    ckpt_io.load_weights(ckpt, model)
    return model.to(device or "cpu").eval(), meta, ckpt


def run_config_of(ckpt: Path) -> RunConfig:
    config_file = ckpt.parent.parent / "config.yaml"
    if not config_file.is_file():
        raise DataError(f"no config.yaml beside checkpoint '{ckpt}': pass --data PREPARED_DIR")
    return from_dict(RunConfig, yaml.safe_load(config_file.read_text()))


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
