"""Learning-rate schedules: linear warmup, then cosine decay (paper), warmup-stable-decay, or constant; and the LR
of a training step under a policy's knobs (`step_lr`): the one place a learning rate is computed."""

from __future__ import annotations

import math


def lr_at(step: int, *, lr_max: float, lr_min: float, warmup_steps: int, total_steps: int,
          schedule: str = "cosine", decay_fraction: float = 0.2) -> float:
    """LR of optimizer step `step` (0-based). Past total_steps it stays at lr_min."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr_max * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr_max
    if step >= total_steps:
        return lr_min
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_start = total_steps - max(1, round(decay_fraction * total_steps))
        if step < decay_start:
            return lr_max
        progress = (step - decay_start) / max(1, total_steps - decay_start)
        return lr_max + (lr_min - lr_max) * progress
    raise ValueError(f"unknown LR schedule {schedule!r}")


def train_lr(step: int, train_cfg) -> float:
    t = train_cfg
    return lr_at(step, lr_max=t.lr_max, lr_min=t.lr_min, warmup_steps=t.warmup_steps, total_steps=t.total_steps,
                 schedule=t.lr_schedule, decay_fraction=t.decay_fraction)


def step_lr(step: int, train_cfg, knobs) -> float:
    """The LR of `step` under a policy's StepKnobs: the schedule times lr_factor; from a restart step on (the
    post-KD cosine), lr_factor x lr_restart_factor x the schedule's LR of the step before the restart, decaying
    by cosine to lr_min at total_steps."""
    t, restart = train_cfg, knobs.lr_restart_step
    if restart is None:
        return train_lr(step, t) * knobs.lr_factor
    start = train_lr(restart - 1, t) * knobs.lr_restart_factor * knobs.lr_factor
    progress = min(1.0, (step - restart) / max(1, t.total_steps - restart))
    return t.lr_min + 0.5 * (start - t.lr_min) * (1 + math.cos(math.pi * progress))
