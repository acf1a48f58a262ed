"""Metrics sinks: JSONL always (the source of truth for reports), TensorBoard when installed, W&B optional."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..fsutil import atomic_write_text, translate_os_errors
from ..runtime.metrics import read_metrics


def duration(seconds: float) -> str:
    """4h05m, 12m30s or 45s: how long, at a glance."""
    s = max(0, round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(step: int, total: int, steps_done: int, seconds: float, tokens_per_step: int,
                  val_loss: float | None) -> str:
    """One plain line for logs and background jobs, where a progress bar is noise: where the run is, its speed in
    this process (evaluations included) and the time left at that speed."""
    rate = steps_done / seconds if seconds > 0 and steps_done > 0 else None
    speed = f"{rate * tokens_per_step:,.0f} tokens/s" if rate else "speed not yet known"
    left = f"about {duration((total - step) / rate)} to go" if rate else "time left not yet known"
    val = f"val {val_loss:.4f}, " if val_loss is not None else ""
    return f"step {step}/{total} ({100 * step / total:.0f}%): {val}{speed}, {duration(seconds)} so far, {left}"


class MetricsLogger:
    def __init__(self, run_dir: Path, log_cfg, run_config: dict, resume_step: int | None):
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_step is not None:
            # drop rows logged after the checkpoint we resume from: they will be logged again
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        elif self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a+")  # readable too: a deleted file's rows can be written back
        self.tb = self._tensorboard(run_dir) if log_cfg.tensorboard else None
        self.wandb = self._wandb(run_dir, log_cfg, run_config) if log_cfg.wandb else None

    @staticmethod
    def _tensorboard(run_dir):
        try:  # optional: TensorBoard logs only where it is installed
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(Path(run_dir) / "tensorboard"))

    @staticmethod
    def _wandb(run_dir, log_cfg, run_config):
        try:  # optional extra
            import wandb
        except ImportError:
            raise ConfigError("log.wandb=true but wandb is not installed: pip install wandb, or set log.wandb=false") from None
        os.environ.setdefault("WANDB_MODE", log_cfg.wandb_mode)
        return wandb.init(project=log_cfg.wandb_project, dir=str(run_dir), config=run_config, name=Path(run_dir).name)

    def _recreate_if_gone(self) -> None:
        """metrics.jsonl deleted or replaced while the run writes it: put every row back (read through the still
        open file) and go on writing there, instead of losing every metric into an unlinked file."""
        try:
            if os.path.samestat(os.fstat(self.file.fileno()), os.stat(self.path)):
                return
        except FileNotFoundError:
            pass
        self.file.seek(0)
        rows = self.file.read()
        self.file.close()
        atomic_write_text(self.path, rows)
        self.file = open(self.path, "a+")
        print(f"warning: '{self.path}' was deleted or replaced during the run: written again with every row so far",
              file=sys.stderr)

    def log(self, row: dict) -> None:
        with translate_os_errors(self.path):
            self._recreate_if_gone()
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        step = row["step"]
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


class NullLogger:
    """What ranks > 0 log to: nothing (metrics come from rank 0)."""

    def log(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass
