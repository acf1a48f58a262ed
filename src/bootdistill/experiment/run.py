"""Running a recipe: its runs in order, each reused when finished and resumed when interrupted."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import load_yaml, to_dict
from ..errors import ConfigError
from ..fsutil import atomic_write_json
from .cluster import select_run
from .plan import predicted, print_plan
from .prediction import predict_planned_run
from .recipe import TUNE_FILE, PlannedRun, load_recipe


def _laws_path(recipe: dict) -> str | None:
    laws = (recipe.get("planner") or {}).get("laws")
    if laws is not None and not Path(laws).is_file():
        raise ConfigError(f"planner.laws '{laws}' does not exist: give the scaling_fit.json written by `bootdistill fit`, "
                          "or remove it to use the paper's Table 6")
    return laws


def _write_prediction(p: PlannedRun, runs: dict, vocab: int, recipe: dict) -> None:
    """The planner's predicted saving, written once before the run trains (a resumed run keeps the first)."""
    target = p.run_dir / "prediction.json"
    if target.is_file():
        return
    try:
        pred = predict_planned_run(p, runs, vocab, _laws_path(recipe))
    except (ConfigError, ValueError) as e:  # outside the laws' range: the run is still worth training
        pred = {"error": str(e)} if p.teacher else None
    if pred is not None:
        atomic_write_json(target, pred)


def batch_threads(batch: list[PlannedRun], cores: int) -> dict[str, int]:
    """CPU threads for each run of a batch trained side by side on `cores` cores. A run that has started keeps
    the threads it started with (its resume then repeats the uninterrupted run bit for bit); the runs still to
    start share the cores the others leave; a finished run (only reused) gets 1."""
    threads, resumed, new = {}, 0, []
    for p in batch:
        if (p.run_dir / "summary.json").is_file():
            threads[p.name] = 1
        elif (p.run_dir / "config.yaml").is_file():
            started = load_yaml(p.run_dir / "config.yaml") or {}
            threads[p.name] = started.get("train", {}).get("threads") or cores  # None: torch's default, every core
            resumed += threads[p.name]
        else:
            new.append(p.name)
    for name in new:
        threads[name] = max(1, (cores - resumed) // len(new))
    return {p.name: threads[p.name] for p in batch}


def _write_tune(p: PlannedRun) -> None:
    """A tuned run's grid and point, beside its results: the report compares each arm's best point. Rewritten
    when the recipe's grid changed (a widened grid reuses its finished points)."""
    if p.tune is None:
        return
    try:
        current = json.loads((p.run_dir / TUNE_FILE).read_text())
    except (OSError, ValueError):
        current = None
    if current != p.tune:
        atomic_write_json(p.run_dir / TUNE_FILE, p.tune)


def run_recipe(path: str | Path, overrides: list[str] | None = None, dry_run: bool = False,
               only: str | None = None, skip: set[str] | None = None) -> list[Path]:
    """Run the recipe's runs in order; `only`: just that run (its teacher must be finished); `skip`: names of runs
    not to train now (`calibrate`'s held-out runs; no run trained here may distil from one)."""
    # torch and the data pipeline load here, not at import: `experiment --list` must start fast (a launch script
    # calls it once per job; importing torch took 12-20 s on a slow VM)
    from ..data.prepare import load_meta, prepare
    from ..runtime import distributed
    from ..train import preflight
    from ..train.trainer import Trainer

    recipe, order = load_recipe(path, overrides)
    _laws_path(recipe)  # a missing coefficients file is found before any compute
    runs = {p.name: p for p in order}  # all of them: a student's numbers need its teacher's
    if only is not None and not dry_run:  # a dry run shows the whole plan
        order = select_run(order, only, path, overrides or [])
    order = [p for p in order if p.name not in (skip or ())]
    for p in order:  # every run's policy and loss, and a writable output, before the first run starts
        preflight.check_run(p.cfg, teacher_must_exist=p.teacher is None)
    vocab = order[0].cfg.data.vocab_size
    distributed.init()  # under torchrun: every rank runs every run together
    if dry_run:
        print_plan(recipe, order, vocab)
        return [p.run_dir for p in order]
    data_dirs: dict[str, Path] = {}  # every run's data, prepared once and checked before the first step
    with distributed.main_first():  # under torchrun: rank 0 prepares the data, the others reuse it
        for p in order:
            key = json.dumps(to_dict(p.cfg.data), sort_keys=True)
            if key not in data_dirs:
                data_dirs[key] = prepare(p.cfg.data, progress=p.cfg.log.progress)
            preflight.check_splits(data_dirs[key], p.cfg.model.context)
    vocab = load_meta(next(iter(data_dirs.values())))["vocab_size"]
    planned_flops = {p.name: predicted(p, runs, vocab)["student"] for p in order}
    total_flops = sum(planned_flops.values())
    remaining = total_flops
    trained_flops, spent_s, t0 = 0.0, 0.0, time.perf_counter()
    for i, p in enumerate(order, 1):
        summary = p.run_dir / "summary.json"
        if summary.is_file():
            _write_tune(p)
            print(f"[{i}/{len(order)}] {p.name}: finished earlier, reused ({p.run_dir})")
            remaining -= planned_flops[p.name]
            continue
        resume = (p.run_dir / "config.yaml").is_file()
        eta = ""
        if trained_flops and spent_s:  # FLOP rate of the runs trained so far in this call
            eta = f", experiment ETA {remaining / (trained_flops / spent_s) / 60:.1f} min"
        print(f"[{i}/{len(order)}] {p.name}: {'resuming' if resume else 'starting'} ({p.run_dir}){eta}")
        start = time.perf_counter()
        trainer = Trainer(p.cfg, resume=resume)
        _write_prediction(p, runs, vocab, recipe)
        _write_tune(p)
        trainer.fit()
        spent_s += time.perf_counter() - start
        trained_flops += planned_flops[p.name]
        remaining -= planned_flops[p.name]
    print(f"experiment {recipe.get('name', '')}: {len(order)} runs done in {(time.perf_counter() - t0) / 60:.1f} min")
    return [p.run_dir for p in order]
