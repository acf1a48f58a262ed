"""Checkpoints: weights in safetensors, everything else needed for an exact resume in state.pt.

Layout: RUN/checkpoints/step_00001200/{model.safetensors, state.pt, meta.json}. A checkpoint is written
into a temp dir and renamed into place; meta.json (written last) holds sha256 of both files, so a truncated
or corrupt checkpoint is detected on load rather than trained from.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError
from ..fsutil import atomic_dir, translate_os_errors

if TYPE_CHECKING:
    import torch

# torch and safetensors are imported where weights are read or written: listing and archiving runs stay fast
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


def clean_leftovers(run_dir: Path) -> list[str]:
    """Remove what a kill can leave behind: a file being written atomically (.NAME.*.tmp), a checkpoint being written (.step_*.tmp), one being deleted
    (.step_*.del), a step_* directory without meta.json. A replaced one (.step_*.old) whose successor never
    arrived is put back. Returns the names removed."""
    root = Path(run_dir) / "checkpoints"
    removed = []
    for p in Path(run_dir).glob(".*.tmp"):  # an atomic write of config.yaml, metrics or summary, killed
        p.unlink(missing_ok=True)
        removed.append(p.name)
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.name.startswith(".step_") and p.name.endswith(".old") and not (root / p.name[1:-4]).exists():
            p.rename(root / p.name[1:-4])
        elif p.name.startswith(".step_") or (STEP_DIR.match(p.name) and not (p / "meta.json").is_file()):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, state: dict, meta: dict, keep: int,
                    shards: Path | None = None) -> Path:
    """`shards`: a finished torch.distributed.checkpoint directory (FSDP), moved in as dcp/."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_model

    final = Path(run_dir) / "checkpoints" / f"step_{step:08d}"
    with atomic_dir(final) as tmp:
        try:
            save_model(model, str(tmp / "model.safetensors"))
            torch.save(state, tmp / "state.pt")
        except (SafetensorError, RuntimeError) as e:  # a full disk or a file-size limit, reported by Rust / C++
            then = ("continue with --resume from the last checkpoint, which is intact" if checkpoint_dirs(run_dir) else
                    "run again with --resume: no checkpoint was written yet, so the run starts over")
            raise CheckpointError(f"cannot write checkpoint '{final}' ({str(e).splitlines()[0][:120]}): the disk is "
                                  f"probably full or a file-size limit (ulimit -f) was reached; free space, then {then}") from None
        names = ["model.safetensors", "state.pt"]
        if shards is not None:
            os.replace(shards, tmp / "dcp")
            names += sorted(f"dcp/{f.name}" for f in (tmp / "dcp").iterdir())
        files = {name: _sha256(tmp / name) for name in names}
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "files": files}, indent=2))
    found = checkpoint_dirs(run_dir)
    best = min(found, key=_val_loss)  # the best-validation checkpoint stays out of rotation
    for old in found[:-keep]:
        if old != best:
            remove_checkpoint(old)
    return final


def snapshot_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "evals" / f"step_{step:08d}.safetensors"


def save_snapshot(run_dir: Path, step: int, model: torch.nn.Module) -> Path:
    """The weights alone at a scheduled evaluation, so the report can re-evaluate any of them later."""
    from safetensors.torch import save_model

    final = snapshot_path(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    with translate_os_errors(final):
        save_model(model, str(tmp))
        os.replace(tmp, final)
    return final


def _val_loss(ckpt: Path) -> float:
    try:
        return float(json.loads((ckpt / "meta.json").read_text()).get("val_loss", math.inf))
    except (OSError, ValueError, TypeError):
        return math.inf


def remove_checkpoint(ckpt: Path) -> None:
    """Rename, then delete: a kill midway leaves a hidden leftover (cleaned on the next start), never a
    step_* directory with some of its files gone."""
    trash = ckpt.with_name(f".{ckpt.name}.del")
    shutil.rmtree(trash, ignore_errors=True)
    ckpt.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


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
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(model, str(Path(ckpt) / "model.safetensors"), strict=False)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"cannot load weights from '{ckpt}': {str(e).splitlines()[0]}") from None
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{ckpt}' does not fit this model (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")


def load_state(ckpt: Path) -> dict:
    import torch

    try:
        return torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged pickle/zip
        raise CheckpointError(f"cannot read training state from '{ckpt}': {str(e).splitlines()[0]}") from None
