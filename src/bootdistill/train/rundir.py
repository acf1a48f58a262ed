"""A run directory belongs to one config. Starting over a different run, or restarting one without --resume,
is refused, so nothing a user already has is overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..config import VOLATILE, RunConfig, TrainConfig, flatten, from_dict, to_dict
from ..errors import BootdistillError
from ..fsutil import atomic_write_text, translate_os_errors

LOCK_NAME = ".lock"  # see lock.py


def config_differences(old: dict, new: dict) -> dict[str, list]:
    """{dotted key: [value there, value now]} for every setting that makes a run another run."""
    a, b = flatten(old, VOLATILE), flatten(new, VOLATILE)
    return {key: [a.get(key), b.get(key)] for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def check_allow_change(keys, resume: bool) -> None:
    if keys and not resume:
        raise BootdistillError("--allow-change continues an existing run: use it together with --resume")
    for key in keys:
        if not key.startswith("train.") or key.split(".", 1)[1] not in TrainConfig.__dataclass_fields__:
            raise BootdistillError(f"--allow-change {key}: only training settings (train.KEY) may change on resume; "
                                   "model, data and distill settings make another run")


def _leftover(name: str) -> bool:
    """The lock, or a temp file of a write killed before this directory held a run."""
    return name == LOCK_NAME or (name.startswith(".") and name.endswith(".tmp"))


def check_run_dir(out: Path, cfg, resume: bool, allow_change=()) -> dict[str, list]:
    """Refuse a directory that holds something else; writes nothing (so it runs before any slow work).

    Returns the settings changed on purpose (`allow_change`, with --resume), to be recorded in the history."""
    check_allow_change(allow_change, resume)
    resolved = to_dict(cfg)
    config_path = out / "config.yaml"
    if out.exists() and any(not _leftover(p.name) for p in out.iterdir()):
        if not config_path.is_file():
            raise BootdistillError(f"output directory '{out}' already holds other files and is not a bootdistill run: choose another out_dir")
        old = yaml.safe_load(config_path.read_text()) or {}
        try:  # fill fields added since that run was written with their defaults
            old = to_dict(from_dict(RunConfig, old))
        except BootdistillError:
            pass  # a key removed since: compare as written
        diffs = config_differences(old, resolved)
        allow_change = set(allow_change) | ({"train.lr_min"} if "train.lr_max" in allow_change else set())  # lr_min defaults to lr_max / 10
        for key, (there, now) in diffs.items():
            if key in allow_change and resume:
                continue
            hint = f"; to continue it with the new value: --resume --allow-change {key}" if key.startswith("train.") else ""
            raise BootdistillError(f"output directory '{out}' already holds another run ({key}: {there!r} there, "
                                   f"{now!r} now): choose another out_dir or delete it{hint}")
        if not resume:
            raise BootdistillError(f"output directory '{out}' already holds this run: pass --resume to continue it, or delete it to start over")
        return {k: v for k, v in diffs.items() if k in allow_change}
    return {}


def append_history(out: Path, row: dict) -> None:
    """RUN/history.jsonl: one row per session of the run (start, resume, settings changed on resume)."""
    with translate_os_errors(out), open(out / "history.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def write_run_config(out: Path, cfg) -> Path:
    """Claim the directory for this run once everything it needs has been checked."""
    with translate_os_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return out
