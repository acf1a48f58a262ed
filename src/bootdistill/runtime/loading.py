"""A trained model back from disk: a checkpoint's weights in the shape its meta.json records, the run config
written beside it, and the tokenizer it was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from ..arch import build_model
from ..config import RunConfig, from_dict
from ..data.tokenizer import file_sha256
from ..errors import CheckpointError, DataError
from ..shape import ModelShape
from . import checkpoint as ckpt_io


def load_model_from_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, dict, Path]:
    """Model (eval mode) + checkpoint meta + the checkpoint dir."""
    ckpt = ckpt_io.resolve_checkpoint(Path(path))
    meta = ckpt_io.verify_checkpoint(ckpt)
    try:
        shape = ModelShape(**meta["model"])
    except (KeyError, TypeError):
        raise CheckpointError(f"checkpoint '{ckpt}' has no model shape in meta.json: it was not written by bootdistill") from None
    model = build_model(shape)
    ckpt_io.load_weights(ckpt, model)
    return model.to(device or "cpu").eval(), meta, ckpt


def run_config_of(ckpt: Path) -> RunConfig:
    """The config of the run a checkpoint belongs to (RUN/config.yaml beside RUN/checkpoints/)."""
    config_file = ckpt.parent.parent / "config.yaml"
    if not config_file.is_file():
        raise DataError(f"no config.yaml beside checkpoint '{ckpt}': pass --data PREPARED_DIR")
    return from_dict(RunConfig, yaml.safe_load(config_file.read_text()))


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
