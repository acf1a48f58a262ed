"""The robust savings measurement: target and crossing on one large fixed evaluation set.

In-training validations read a small subset (e.g. 32k tokens), whose noise moved a crossing by 14% of a
baseline's compute. The definition used when a run kept its evaluation snapshots (`train.eval_snapshots`):

- C_classical: the classical run's whole scheduled compute (the paper's Table 3).
- target: the classical run's final loss on the final evaluation set (the whole split when
  `train.final_eval_sequences` is null), read from its summary.json.
- C_distilled: the distilled run's snapshots are evaluated on that same set, walking outward from the crossing
  the subset suggests until the first snapshot at or below the target is found; compute is interpolated
  linearly between it and the snapshot before. The run's own final loss is the last point.

Full-set losses are cached in RUN/evals/full_<split>.json, so a report re-reads them for free.
"""

from __future__ import annotations

import json
import math
import sys

from ..config import RunConfig, from_dict, resolve_model, upgrade_batch_counts
from ..errors import BootdistillError
from ..fsutil import atomic_write_json
from ..runtime.batch import batch_plan
from ..runtime.checkpoint import snapshot_path
from ..shape import ModelShape
from .archive import snapshot_steps

SPLIT_LOSS = {"val": "final_val_loss", "test": "test_loss"}


def final_loss(run, split: str) -> float | None:
    v = (run.summary or {}).get(SPLIT_LOSS[split])
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


class FullSetEvaluator:
    """Loss of one run's snapshots on its final evaluation set, evaluated lazily and cached on disk."""

    def __init__(self, run, split: str = "val", device: str = "auto"):
        self.run, self.split, self.device_name = run, split, device
        self.cache_path = run.path / "evals" / f"full_{split}.json"
        n = (upgrade_batch_counts(run.config).get("train") or {}).get("final_eval_sequences")
        # the whole split keeps the key it always had, so the caches of older reports stay valid
        self.key = "batches=None" if n is None else f"sequences={n}"
        try:
            cached = json.loads(self.cache_path.read_text()) if self.cache_path.is_file() else {}
        except (OSError, json.JSONDecodeError):
            cached = {}
        self.losses = {int(s): v for s, v in (cached.get(self.key) or {}).items()}
        self._model = None

    def loss(self, step: int) -> float:
        if step not in self.losses:
            self.losses[step] = self._evaluate(step)
            try:
                atomic_write_json(self.cache_path, {self.key: {str(s): v for s, v in sorted(self.losses.items())}})
            except BootdistillError:
                pass  # a read-only run dir: the number is still right, only not cached
        return self.losses[step]

    def _evaluate(self, step: int) -> float:
        # torch loads only when a loss is not cached: a report from cached losses starts in a second, not 10-20
        import torch
        from safetensors.torch import load_model

        from ..data.prepare import token_file
        from ..arch import build_model
        from ..runtime.accel import cpu_threads, keep_freed_memory
        from ..runtime.device import resolve_device
        from ..runtime.evaluate import evaluate

        if not snapshot_path(self.run.path, step).is_file():
            raise BootdistillError(
                f"run '{self.run.name}' no longer has its step-{step} snapshot (an archive?) and its {self.split}-split "
                f"loss was not cached: report this split from the original run directory, then archive it again")
        s = self.run.summary or {}
        cfg = from_dict(RunConfig, self.run.config)
        shape = ModelShape(**s["model"])
        if self._model is None:
            self._device = resolve_device(self.device_name, "--device ")
            keep_freed_memory(self._device)  # hundreds of snapshot evaluations reuse the same buffers
            self._model = build_model(shape).to(self._device)
            precision = s.get("precision", "float32")
            self._amp = None if precision == "float32" else getattr(torch, precision)
            self._tokens = token_file(s["data"]["dir"], self.split)
        load_model(self._model, str(snapshot_path(self.run.path, step)))
        print(f"report: {self.run.name}: evaluating the step-{step} snapshot on the whole {self.split} split "
              f"({len(self._tokens):,} tokens; cached in evals/)", file=sys.stderr, flush=True)
        t = resolve_model(cfg).train
        micro = batch_plan(t.batch_tokens, shape.context, t.micro_batch).micro
        with cpu_threads(cfg.train.threads):  # the run's own setting: oversubscribed cores evaluate many times slower
            return evaluate(self._model, self._tokens, shape.context, micro, self._device, self._amp,
                            cfg.train.final_eval_sequences)["loss"]


def _row_at(run, step: int) -> dict | None:
    return next((r for r in run.metrics if r.get("step") == step and "flops_total" in r), None)


def robust_crossing(run, target: float, subset_crossing: dict | None, split: str = "val",
                    keys: tuple = (), device: str = "auto") -> dict | None:
    """The first crossing of `target` on the final evaluation set (see the module doc); None if never reached."""
    steps = [st for st in snapshot_steps(run.path) if _row_at(run, st) is not None]
    last = _row_at(run, (run.summary or {}).get("steps", -1))
    fin = final_loss(run, split)
    ev = FullSetEvaluator(run, split, device)
    points = [(st, _row_at(run, st)) for st in steps]
    if last is not None and fin is not None:
        ev.losses[last["step"]] = fin  # the trainer measured it on this very set
        if not steps or last["step"] > steps[-1]:
            points.append((last["step"], last))
    if not points:
        return None
    # start where the subset saw the crossing; then walk back while still below, forward while above
    guess = subset_crossing["step"] if subset_crossing else points[-1][0]
    i = next((j for j, (st, _) in enumerate(points) if st >= guess), len(points) - 1)
    if ev.loss(points[i][0]) <= target:
        while i > 0 and ev.loss(points[i - 1][0]) <= target:
            i -= 1
    else:
        while i < len(points) - 1 and ev.loss(points[i][0]) > target:
            i += 1
        if ev.loss(points[i][0]) > target:
            return None
    row = points[i][1]
    if i == 0:
        out = {k: float(row.get(k, math.nan)) for k in keys}
        out.update(at_first_eval=True, loss=ev.loss(points[0][0]))
    else:
        prev = points[i - 1][1]
        lp, lr = ev.loss(points[i - 1][0]), ev.loss(points[i][0])
        f = (lp - target) / (lp - lr)
        out = {k: float(prev.get(k, math.nan)) + f * (float(row.get(k, math.nan)) - float(prev.get(k, math.nan)))
               for k in keys}
        out.update(at_first_eval=False, loss=target)
    out["evaluated"] = {str(s): round(v, 6) for s, v in sorted(ev.losses.items())}
    return out


def whole_run(run, keys: tuple) -> dict | None:
    """A classical baseline's 'crossing' of its own final loss: its whole scheduled compute."""
    last = _row_at(run, (run.summary or {}).get("steps", -1))
    if last is None:
        return None
    out = {k: float(last.get(k, math.nan)) for k in keys}
    out["at_first_eval"] = False
    return out
