"""A run directory belongs to one config. Starting over a different run, or restarting one without --resume,
is refused, so nothing a user already has is overwritten."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..config import RunConfig, from_dict, to_dict
from ..errors import BootdistillError
from ..fsutil import atomic_write_text, translate_os_errors

# keys that may change between a run and its resume without making it another run
VOLATILE = {("log",), ("train", "max_steps"), ("train", "threads"), ("train", "device"), ("out_dir",),
            ("data", "prepared_dir"), ("train", "keep_checkpoints"), ("train", "checkpoint_every"),
            ("train", "parallel")}  # the same run on more processes: same batches, same curve


def _identity(d: dict, prefix=()) -> dict:
    out = {}
    for k, v in d.items():
        key = prefix + (k,)
        if key in VOLATILE:
            continue
        if isinstance(v, dict):
            out.update(_identity(v, key))
        else:
            out[".".join(key)] = v
    return out


def config_difference(old: dict, new: dict) -> str | None:
    a, b = _identity(old), _identity(new)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} there, {b.get(key)!r} now"
    return None


def check_run_dir(out: Path, cfg, resume: bool) -> None:
    """Refuse a directory that holds something else; writes nothing (so it runs before any slow work)."""
    resolved = to_dict(cfg)
    config_path = out / "config.yaml"
    if out.exists() and any(out.iterdir()):
        if not config_path.is_file():
            raise BootdistillError(f"output directory '{out}' already holds other files and is not a bootdistill run: choose another out_dir")
        old = yaml.safe_load(config_path.read_text()) or {}
        try:  # fill fields added since that run was written with their defaults
            old = to_dict(from_dict(RunConfig, old))
        except BootdistillError:
            pass  # a key removed since: compare as written
        diff = config_difference(old, resolved)
        if diff:
            raise BootdistillError(f"output directory '{out}' already holds another run ({diff}): choose another out_dir or delete it")
        if not resume:
            raise BootdistillError(f"output directory '{out}' already holds this run: pass --resume to continue it, or delete it to start over")


def write_run_config(out: Path, cfg) -> Path:
    """Claim the directory for this run once everything it needs has been checked."""
    with translate_os_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return out
