"""Run directories as the report reads them: config, summary and metrics, what makes two runs the same
experiment (seeds aside), and where a student's teacher lives."""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, dataclass, fields
from functools import cache, cached_property
from pathlib import Path

import yaml

from ..config import NOT_IDENTITY, RunConfig, flatten, to_dict, upgrade_batch_counts
from ..errors import BootdistillError, ConfigError
from ..runtime.metrics import read_metrics
from ..shape import ModelShape, non_embedding_params

# model settings beyond the widths that make two runs different students (absent from older runs: the defaults)
BLOCK_KEYS = (("arch", "gpt2"), ("n_kv_heads", None), ("d_ff", None), ("tie_embeddings", True))

SEED_SUFFIX = re.compile(r"[-_.]?(seed|s)[-_]?\d+$", re.I)
RUN_HASH = re.compile(r"-[0-9a-f]{8}$")  # experiment run directories end in the config hash


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class Run:
    path: Path
    config: dict
    summary: dict | None
    metrics: list[dict]
    flops_eval_reconstructed: bool = False  # its ledger predates flops_eval: rebuilt by report/eval_cost.py

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def cfg(self, section: str, key: str, default=None):
        return (self.config.get(section) or {}).get(key, default)

    @property
    def policy(self) -> str:
        return (self.summary or {}).get("policy", {}).get("policy") or self.cfg("distill", "policy", "classical")

    @property
    def seed(self):
        return self.cfg("train", "seed")

    @property
    def shape(self) -> tuple:
        m = (self.summary or {}).get("model") or {}
        block = tuple((m or self.config.get("model") or {}).get(k, default) for k, default in BLOCK_KEYS)  # a llama is not a gpt2
        if m:
            return tuple(m.get(k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "context")) + block
        c = self.config.get("model") or {}
        shape = (self.cfg("data", "vocab_size"),) + tuple(c.get(k) for k in ("d_model", "n_layers", "n_heads", "context"))
        return (shape if None not in shape else (self.cfg("data", "vocab_size"), c.get("preset"))) + block

    @property
    def n_params_non_embedding(self) -> int | None:
        if self.summary and self.summary.get("n_params_non_embedding"):
            return self.summary["n_params_non_embedding"]
        _, d, layers, *_ = self.shape + (None,) * 3
        return non_embedding_params(d, layers) if isinstance(d, int) and isinstance(layers, int) else None

    @cached_property
    def evals(self) -> list[dict]:
        rows = [r for r in self.metrics if finite(r.get("val_loss"))]
        return sorted(rows, key=lambda r: r.get("step", 0))

    @property
    def last_row(self) -> dict:
        return self.metrics[-1] if self.metrics else {}

    @property
    def final_eval_loss(self) -> float | None:
        return self.evals[-1]["val_loss"] if self.evals else None

    @property
    def identity(self) -> tuple:
        # settings at their defaults drop out, and older batch counts read as sequences: a run trained before a
        # setting existed is the same experiment as one that writes it at its default
        try:
            config = upgrade_batch_counts(self.config)
        except ConfigError:
            config = self.config
        defaults = _defaults()
        flat = {k: repr(v) for k, v in flatten(config, NOT_IDENTITY).items() if k not in defaults or defaults[k] != v}
        teacher = (self.summary or {}).get("teacher") or {}
        # the teacher's path is not identity (each seed has its own), but its shape and training are: a teacher
        # trained twice as long makes another experiment
        model = teacher.get("model")
        if isinstance(model, dict):  # a block setting at its default is the block older runs did not record
            model = dict(sorted((k, v) for k, v in model.items() if _SHAPE_DEFAULTS.get(k, object()) != v))
        return tuple(sorted(flat.items())) + (("teacher_model", str(model)),
                                              ("teacher_train_flops", repr(self.last_row.get("flops_teacher_train"))))

    def teacher_paths(self) -> list[Path]:
        """Where this run's teacher may live: the config's path (as given, from the cwd or beside the run) and
        the checkpoint the trainer recorded."""
        refs = [self.cfg("distill", "teacher"), ((self.summary or {}).get("teacher") or {}).get("checkpoint")]
        out = []
        for ref in filter(None, refs):
            p = Path(ref)
            out += [p] if p.is_absolute() else [p, self.path.parent / p, self.path.parent.parent / p]
            out.append(self.path.parent / p.name)  # archived (or moved) together with its students
        return [p.resolve() for p in out]


_SHAPE_DEFAULTS = {f.name: f.default for f in fields(ModelShape) if f.default is not MISSING}


@cache
def _defaults() -> dict:
    return flatten(to_dict(RunConfig()), NOT_IDENTITY)


def is_run_dir(p: Path) -> bool:
    return (p / "config.yaml").is_file() or (p / "metrics.jsonl").is_file() or (p / "summary.json").is_file()


def load_run(path: Path | str) -> Run:
    p = Path(path)
    if not p.is_dir() or not is_run_dir(p):
        raise BootdistillError(f"'{path}' is not a run directory (no config.yaml, metrics.jsonl or summary.json): "
                               "pass directories written by `bootdistill train`")
    try:
        config = yaml.safe_load((p / "config.yaml").read_text()) or {} if (p / "config.yaml").is_file() else {}
        summary = json.loads((p / "summary.json").read_text()) if (p / "summary.json").is_file() else None
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise BootdistillError(f"run directory '{path}' has a corrupt config.yaml or summary.json: {e}") from None
    return Run(p.resolve(), config, summary, read_metrics(p / "metrics.jsonl"))


def load_runs(paths: list) -> list[Run]:
    """Run dirs in the order given; a directory holding run dirs (not one itself) stands for all of them."""
    if not paths:
        raise BootdistillError("no run directories given: pass one or more directories written by `bootdistill train`")
    dirs: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not is_run_dir(path):
            dirs += sorted(c for c in path.iterdir() if c.is_dir() and is_run_dir(c)) or [path]
        else:
            dirs.append(path)
    runs, seen = [], set()
    for d in dirs:
        run = load_run(d)
        if run.path not in seen:
            seen.add(run.path)
            runs.append(run)
    return runs
