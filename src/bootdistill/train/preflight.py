"""Checks that run before any compute is spent: everything a run would otherwise find out only after
preparing data, training a teacher or taking its first steps. `experiment --dry-run` runs them too."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..data.loader import num_blocks
from ..data.prepare import token_file
from ..distill.objective import student_loss
from ..distill.policies import build_policy
from ..distill.source import parse_teacher_spec
from ..errors import CheckpointError, ConfigError, DataError
from ..fsutil import check_writable
from ..shape import count_params, shape_of
from .init_from import check_fits, read_source


def check_policy_and_loss(cfg) -> None:
    """Build the run's policy and evaluate its loss once on a tiny batch, as the first KD step would."""
    policy = build_policy(cfg.distill, cfg.train)
    if not policy.needs_teacher:
        return
    knobs = policy.knobs(0)
    if not knobs.kd_on:
        knobs = type(knobs)(alpha=cfg.distill.alpha or 1.0, temperature=knobs.temperature, loss=knobs.loss)
    V = cfg.data.vocab_size
    logits = torch.arange(2 * V, dtype=torch.float32).view(1, 2, V).sin()  # no RNG: a run's stream stays put
    with torch.no_grad():
        student_loss(logits, torch.zeros(1, 2, dtype=torch.long), logits.cos(), knobs, cfg.distill)


def check_teacher_exists(cfg) -> None:
    """A distilled run needs a finished teacher run (or one of its checkpoints) before it starts."""
    teacher = cfg.distill.teacher
    if cfg.distill.policy == "classical" or teacher is None:
        return
    spec = parse_teacher_spec(teacher)
    if spec.kind != "checkpoint":
        return  # an hf: teacher is checked when it loads, a teacher cache in full when it opens
    path = Path(spec.path)
    if (path / "meta.json").is_file():
        return  # a checkpoints/step_* directory
    if not path.exists():
        raise CheckpointError(f"teacher '{teacher}' does not exist: train the teacher first or fix distill.teacher")
    if not path.is_dir():
        raise CheckpointError(f"teacher '{teacher}' is a file: distill.teacher names a run directory, one of its "
                              "checkpoints/step_* directories, a teacher cache directory or hf:MODEL")
    if not (path / "summary.json").is_file():
        raise CheckpointError(f"teacher run '{teacher}' has not finished (no summary.json): finish it with "
                              "`bootdistill train ... --resume`, or name one of its checkpoints/step_* directories")


def check_splits(data_dir: Path, context: int) -> None:
    """Validation and test splits must hold at least one block of `context` + 1 tokens."""
    for split in ("val", "test"):
        tokens: np.ndarray = token_file(Path(data_dir), split)
        if num_blocks(len(tokens), context) < 1:
            raise DataError(f"the {split} split of '{data_dir}' has {len(tokens)} tokens, fewer than one block of "
                            f"model.context {context} + 1: use a longer {split} text or a shorter model.context")


def check_init_from(cfg) -> None:
    """model.init_from exists, is a supported model and has the run's shape (its vocabulary: once data is prepared)."""
    if cfg.model.init_from:
        check_fits(read_source(cfg.model.init_from), cfg.model)


BYTES_PER_PARAM = 16  # fp32 weights, gradients and AdamW's two moments


def available_memory(device: torch.device) -> int | None:
    """Bytes a run could allocate on `device` now (None: unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg, device: torch.device, shards: int = 1) -> None:
    """Refuse a model whose parameters alone cannot fit, before allocating them (an allocator traceback, or a
    machine swapping to death, otherwise). Activations come on top: passing this does not promise a fit."""
    m = cfg.model
    n = count_params(shape_of(m, cfg.data.vocab_size))["total"]
    need = n * BYTES_PER_PARAM / shards
    have = available_memory(device)
    if have is not None and need > have:
        raise ConfigError(f"the model's {n:.3g} parameters need about {need / 2**30:.3g} GiB "
                          f"for weights, gradients and AdamW state, more than the {have / 2**30:.3g} GiB free on "
                          f"{device}: use a smaller model (model.d_model, model.n_layers), or shard it with "
                          "train.parallel=fsdp over more devices")


def check_batch(n_train_tokens: int, context: int, sequences: int) -> None:
    """A step must not ask for more sequences than the training data holds."""
    have = num_blocks(n_train_tokens, context)
    if sequences > have:
        raise DataError(f"a step of {sequences:,} sequences of {context} tokens (train.batch_tokens) is more than the "
                        f"{have:,} the training data holds: lower train.batch_tokens or use more training text")


def check_run(cfg, teacher_must_exist: bool = True) -> None:
    """Everything about one run that needs neither data nor compute."""
    check_policy_and_loss(cfg)
    check_init_from(cfg)
    if teacher_must_exist:
        check_teacher_exists(cfg)
    check_writable(Path(cfg.out_dir))
