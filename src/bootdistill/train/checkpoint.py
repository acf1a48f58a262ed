"""Checkpoints: weights in safetensors, everything else needed for an exact resume in state.pt.

Layout: RUN/checkpoints/step_00001200/{model.safetensors, state.pt, meta.json}. A checkpoint is written
into a temp dir and renamed into place; meta.json (written last) holds sha256 of both files, so a truncated
or corrupt checkpoint is detected on load rather than trained from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from ..errors import CheckpointError
from ..fsutil import atomic_dir

STEP_DIR = re.compile(r"^step_(\d{8})$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if STEP_DIR.match(p.name) and (p / "meta.json").is_file())


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, state: dict, meta: dict, keep: int,
                    shards: Path | None = None) -> Path:
    """`shards`: a finished torch.distributed.checkpoint directory (FSDP), moved in as dcp/."""
    final = Path(run_dir) / "checkpoints" / f"step_{step:08d}"
    with atomic_dir(final) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        names = ["model.safetensors", "state.pt"]
        if shards is not None:
            os.replace(shards, tmp / "dcp")
            names += sorted(f"dcp/{f.name}" for f in (tmp / "dcp").iterdir())
        files = {name: _sha256(tmp / name) for name in names}
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "files": files}, indent=2))
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint dir, or a run dir (-> its latest checkpoint)."""
    path = Path(path)
    if (path / "meta.json").is_file() and (path / "model.safetensors").exists():
        return path
    found = checkpoint_dirs(path)
    if found:
        return found[-1]
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist: give a run directory or a checkpoints/step_* directory")
    raise CheckpointError(f"no checkpoint found in '{path}': it must be a run directory with checkpoints/ or a step_* directory")


def read_meta(ckpt: Path) -> dict:
    try:
        return json.loads((Path(ckpt) / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint '{ckpt}' has a missing or unreadable meta.json: it is corrupt; delete it and resume from an earlier one") from None


def verify_checkpoint(ckpt: Path) -> dict:
    """Check both files against the hashes in meta.json; return meta."""
    meta = read_meta(ckpt)
    for name, digest in meta.get("files", {}).items():
        f = Path(ckpt) / name
        if not f.is_file() or _sha256(f) != digest:
            raise CheckpointError(
                f"checkpoint '{ckpt}' is corrupt or truncated ({name} does not match its recorded sha256): "
                "delete that step_* directory to resume from the previous checkpoint"
            )
    return meta


def load_weights(ckpt: Path, model: torch.nn.Module) -> None:
    try:
        missing, unexpected = load_model(model, str(Path(ckpt) / "model.safetensors"), strict=False)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"cannot load weights from '{ckpt}': {str(e).splitlines()[0]}") from None
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{ckpt}' does not fit this model (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")


def load_state(ckpt: Path) -> dict:
    try:
        return torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged pickle/zip
        raise CheckpointError(f"cannot read training state from '{ckpt}': {str(e).splitlines()[0]}") from None
