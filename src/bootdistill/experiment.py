"""Recipes -> runs. A recipe names runs (teachers, classical baselines, distilled students that name their
teacher) plus optional seeds and grids; each run lives in `out_dir/<name>-<hash of its resolved config>`.
Finished runs are reused, interrupted ones resume, a changed config is a new directory.

Recipe YAML:
    name: cpu-demo
    out_dir: runs/cpu-demo
    defaults: {data: {...}, train: {...}}           # merged into every run
    seeds: [1337]                                   # optional: every run once per seed
    runs:
      teacher:   {model: {...}, train: {...}}
      classical: {model: {...}}
      boot:      {extends: classical, distill: {policy: bootstrapped, teacher: teacher}}
      kd-len:    {extends: boot, grid: {distill.kd_steps: [100, 200]}}   # one run per value
      tuned:     {extends: boot, tune: {train.lr_max: [1e-3, 2e-3, 4e-3]}}  # one run per value; the report keeps the best
      weak:      {extends: boot, distill: {teacher: teacher@200}}          # the teacher's step-200 checkpoint
      any run may carry `reference: {pflops: 320, steps: 10800, note: "..."}` (the paper's numbers, shown by --dry-run)
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .compute import flops_per_token
from .config import (BATCH_COUNTS, RunConfig, TrainConfig, _deep_merge, flatten, from_dict, load_yaml, resolve_model,
                     set_dotted, to_dict, validate)
from .errors import ConfigError
from .runtime.batch import batch_plan
from .shape import count_params, shape_of
from .train.rundir import VOLATILE

RECIPE_KEYS = {"name", "out_dir", "defaults", "seeds", "runs", "description", "planner"}
TUNE_FILE = "tune.json"  # in a tuned run's directory: its grid and its point, for the report


@dataclass
class PlannedRun:
    name: str
    cfg: RunConfig
    teacher: str | None  # name of the teacher run in this recipe
    reference: dict = field(default_factory=dict)
    teacher_step: int | None = None  # distill from this checkpoint of the teacher instead of its last
    scorer: str | None = None  # SALT_DS: the run whose checkpoint selects the KD data (distill.select_with)
    scorer_step: int | None = None
    tune: dict | None = None  # {"grid": {key: [values]}, "point": {key: value}} of a run with a `tune:` block

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out_dir)


def _as_batch_counts(flat: dict) -> dict:
    """The evaluation sizes in the batches of train.micro_batch that older versions counted them in (where they
    divide), so a recipe that keeps its evaluation sets keeps its runs' names."""
    micro, out = flat.get("train.micro_batch", TrainConfig.micro_batch), dict(flat)
    for (section, old), new in BATCH_COUNTS.items():
        if f"{section}.{new}" not in out:
            continue
        n = out[f"{section}.{new}"]
        if n is None or n % micro == 0:
            out[f"{section}.{old}"] = n if n is None else n // micro
            out.pop(f"{section}.{new}", None)
    return out


def _config_hash(cfg_dict: dict) -> str:
    """Hash of the settings that differ from the defaults, so adding a config field keeps old runs' names."""
    defaults = _as_batch_counts(flatten(to_dict(RunConfig()), VOLATILE))
    identity = {k: v for k, v in _as_batch_counts(flatten(cfg_dict, VOLATILE)).items()
                if k not in defaults or defaults[k] != v}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _points(grid: dict) -> tuple[list[str], list[tuple]]:
    keys = list(grid)
    return keys, list(itertools.product(*(grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys))) or [()]


def _tune_value(v):
    """A tuned value as YAML gives it ('1e-3' is a string to YAML 1.1) -> a number where it is one."""
    try:
        return float(v) if isinstance(v, str) else v
    except ValueError:
        return v


def _tune_suffix(key: str, v) -> str:
    v = _tune_value(v)
    return f"-{key.split('.')[-1]}{v:g}" if isinstance(v, float) else f"-{key.split('.')[-1]}{v}"


def _expand(name: str, spec: dict, seeds: list[int] | None) -> list[tuple[str, dict, dict | None]]:
    """A run spec -> (name, config dict, tuning record) per grid point, tuning point and seed."""
    grid = spec.pop("grid", None) or {}
    tune = spec.pop("tune", None) or {}
    if not isinstance(tune, dict) or any(not isinstance(v, list) or len(v) < 2 for v in tune.values()):
        raise ConfigError(f"recipe run '{name}': tune must map settings to lists of at least two values to try, "
                          "e.g. tune: {train.lr_max: [1e-3, 2e-3, 4e-3]}")
    keys, points = _points(grid)
    tune_keys, tune_points = _points(tune)
    out = []
    for point in points:
        suffix = "".join(f"-{v}" if isinstance(v, str) else f"-{k.split('.')[-1]}{v}" for k, v in zip(keys, point))
        for tpoint in tune_points:
            tsuffix = "".join(_tune_suffix(k, v) for k, v in zip(tune_keys, tpoint))
            record = {"grid": {k: [_tune_value(v) for v in tune[k]] for k in tune_keys},
                      "point": {k: _tune_value(v) for k, v in zip(tune_keys, tpoint)}} if tune else None
            for seed in seeds or [None]:
                d = copy.deepcopy(spec)
                for k, v in zip(keys + tune_keys, point + tpoint):
                    set_dotted(d, k, v)
                if seed is not None:
                    set_dotted(d, "train.seed", seed)
                out.append((name + suffix + tsuffix + (f"-s{seed}" if seed is not None and len(seeds) > 1 else ""),
                            d, record))
    return out


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> tuple[dict, list[PlannedRun]]:
    """Parse and validate a recipe; return (recipe, runs in dependency order, teachers first)."""
    recipe = load_yaml(path)
    unknown = set(recipe) - RECIPE_KEYS
    if unknown:
        raise ConfigError(f"recipe '{path}' has unknown top-level key(s) {sorted(unknown)}; valid: {sorted(RECIPE_KEYS)}")
    specs = recipe.get("runs") or {}
    if not specs:
        raise ConfigError(f"recipe '{path}' defines no runs: add a 'runs:' mapping")
    defaults = recipe.get("defaults") or {}
    out_root = Path(recipe.get("out_dir") or f"runs/{recipe.get('name') or Path(path).stem}")
    for item in overrides or []:
        key, _, value = item.partition("=")
        if key.strip() == "out_dir":  # the recipe's out_dir moves: its runs go below the new one
            out_root = Path(value)
            continue
        set_dotted(defaults, key, value)

    def resolved_spec(name: str, seen=()) -> dict:
        if name not in specs:
            raise ConfigError(f"recipe run '{seen[-1] if seen else name}' extends unknown run '{name}'")
        if name in seen:
            raise ConfigError(f"recipe runs extend each other in a cycle: {' -> '.join(seen + (name,))}")
        spec = copy.deepcopy(specs[name] or {})
        parent = spec.pop("extends", None)
        base = resolved_spec(parent, seen + (name,)) if parent else {}
        base.pop("grid", None)
        base.pop("tune", None)
        base.pop("reference", None)
        return _deep_merge(base, spec)

    expanded: dict[str, tuple[dict, dict, dict | None]] = {}
    seeds = recipe.get("seeds")
    for name in specs:
        spec = resolved_spec(name)
        reference = spec.pop("reference", None) or {}
        for run_name, d, tune in _expand(name, spec, seeds):
            if run_name in expanded:
                raise ConfigError(f"recipe runs '{name}' and another expand to the same run name '{run_name}': rename one")
            expanded[run_name] = (_deep_merge(defaults, d), reference, tune)

    planned: dict[str, PlannedRun] = {}

    def plan(run_name: str, stack=()) -> PlannedRun:
        if run_name in planned:
            return planned[run_name]
        if run_name in stack:
            raise ConfigError(f"recipe teachers form a cycle: {' -> '.join(stack + (run_name,))}")
        d, reference = copy.deepcopy(expanded[run_name][0]), expanded[run_name][1]
        def checkpoint_of(key: str, ref: str) -> tuple[str, int | None]:
            """NAME or NAME@STEP (an earlier checkpoint) of a run of the recipe -> its name and step; the
            config then points at that run dir or checkpoint."""
            name, _, at_step = str(ref).partition("@")
            name = _teacher_name(name, run_name, expanded)
            run = plan(name, stack + (run_name,))
            step = int(at_step) if at_step else None
            if step is not None and step % run.cfg.train.checkpoint_every:
                raise ConfigError(f"run '{run_name}': {key} step {step} is not a checkpoint of '{name}' "
                                  f"(train.checkpoint_every={run.cfg.train.checkpoint_every})")
            d["distill"][key] = str(run.run_dir / "checkpoints" / f"step_{step:08d}" if step else run.run_dir)
            return name, step

        teacher = (d.get("distill") or {}).get("teacher")
        teacher_name = teacher_step = None
        external = str(teacher).startswith("hf:")  # a Hugging Face teacher: no run of the recipe trains it
        if teacher is not None and not external and (d.get("distill") or {}).get("policy", "classical") != "classical":
            teacher_name, teacher_step = checkpoint_of("teacher", teacher)  # @STEP: a weak teacher
        scorer_name = scorer_step = None
        select_with = (d.get("distill") or {}).get("select_with")
        if select_with is not None:  # SALT_DS: an early checkpoint of a run of the recipe
            scorer_name, scorer_step = checkpoint_of("select_with", select_with)
        cfg = from_dict(RunConfig, {k: v for k, v in d.items() if k != "out_dir"}, run_name)
        resolve_model(cfg)
        validate(cfg)
        cfg.out_dir = str(out_root / f"{run_name}-{_config_hash(to_dict(cfg))}")
        planned[run_name] = PlannedRun(run_name, cfg, teacher_name, reference, teacher_step if teacher_name else None,
                                       scorer_name, scorer_step, expanded[run_name][2])
        return planned[run_name]

    for run_name in expanded:
        plan(run_name)
    for p in planned.values():  # keep every checkpoint of a teacher whose earlier steps are used
        for used, step in ((p.teacher, p.teacher_step), (p.scorer, p.scorer_step)):
            if step is not None:
                t = planned[used].cfg.train
                t.keep_checkpoints = max(t.keep_checkpoints, (t.max_steps or t.total_steps) // t.checkpoint_every + 1)
    order, done = [], set()

    def visit(p: PlannedRun):
        if p.name in done:
            return
        for dep in (p.teacher, p.scorer):
            if dep:
                visit(planned[dep])
        done.add(p.name)
        order.append(p)

    for p in planned.values():
        visit(p)
    return recipe, order


def _teacher_name(teacher: str, run_name: str, expanded: dict) -> str:
    """A teacher named in a recipe: the run of that name, its same-seed variant, or an error."""
    if teacher in expanded:
        return teacher
    seed_suffix = run_name[run_name.rfind("-s"):] if "-s" in run_name else ""
    if teacher + seed_suffix in expanded:
        return teacher + seed_suffix
    tuned = [n for n, (_, _, tune) in expanded.items() if tune and n.startswith(teacher + "-")]
    if tuned:
        raise ConfigError(f"run '{run_name}': distill.teacher '{teacher}' is tuned over several runs: name one of them "
                          f"({', '.join(tuned)})")
    if Path(teacher).exists():
        raise ConfigError(f"run '{run_name}': distill.teacher '{teacher}' is a path; in a recipe name a run of the recipe instead")
    raise ConfigError(f"run '{run_name}': distill.teacher '{teacher}' is not a run of this recipe (runs: {', '.join(expanded)})")


# ---------------------------------------------------------------- planning numbers


def predicted(p: PlannedRun, runs: dict[str, PlannedRun], data_vocab: int) -> dict:
    """Steps, tokens and 6N FLOPs a run will spend (KD inference as an upper bound when the stop is decided at run time)."""
    c = p.cfg
    shape = shape_of(c.model, data_vocab)
    steps = c.train.max_steps or c.train.total_steps
    tokens_per_step = batch_plan(c.train.batch_tokens, c.model.context, c.train.micro_batch).tokens
    tokens = steps * tokens_per_step
    out = {"steps": steps, "tokens": tokens, "student": tokens * flops_per_token(shape), "teacher_inference": 0.0,
           "teacher_train": 0.0, "inference_bound": False}
    if p.teacher:
        t = runs[p.teacher]
        tshape = shape_of(t.cfg.model, data_vocab)
        kd_steps = steps
        if c.distill.policy == "fixed" and c.distill.kd_steps is not None:
            kd_steps = min(steps, c.distill.kd_steps)
        out["inference_bound"] = c.distill.policy in ("bootstrapped",)
        out["teacher_inference"] = kd_steps * tokens_per_step * flops_per_token(tshape, training=False)
        t_total = predicted(t, runs, data_vocab)
        share = min(1.0, p.teacher_step / t_total["steps"]) if p.teacher_step else 1.0  # an earlier checkpoint costs less
        out["teacher_train"] = t_total["total"] * share
    out["total"] = out["student"] + out["teacher_inference"] + out["teacher_train"]
    return out


def print_plan(recipe: dict, order: list[PlannedRun], data_vocab: int) -> list[dict]:
    runs = {p.name: p for p in order}
    rows = []
    numbers = {p.name: predicted(p, runs, data_vocab) for p in order}
    biggest = max(n["total"] for n in numbers.values())
    scale, unit = (1e15, "PFLOPs") if biggest >= 1e15 else (1e12, "TFLOPs")
    print(f"recipe {recipe.get('name', '')}: {len(order)} runs (vocab {data_vocab}; 6N proxy, compute in {unit})")
    head = f"{'run':<28} {'policy':<12} {'params':>8} {'steps':>7} {'tokens':>11} {'student':>9} {'t.infer':>9} {'t.train':>9} {'total':>9}  paper"
    print(head)
    print("-" * len(head))
    for p in order:
        n = numbers[p.name]
        shape = shape_of(p.cfg.model, data_vocab)
        params = count_params(shape)["total"]
        ref = p.reference.get("pflops")
        bound = "<" if n["inference_bound"] else " "
        print(f"{p.name:<28} {p.cfg.distill.policy:<12} {params / 1e6:>7.2f}M {n['steps']:>7} {n['tokens']:>11,} "
              f"{n['student'] / scale:>9.3f} {bound}{n['teacher_inference'] / scale:>8.3f} {n['teacher_train'] / scale:>9.3f} "
              f"{n['total'] / scale:>9.3f}  {'' if ref is None else f'{ref} PFLOPs'}")
        if p.reference.get("note"):
            print(f"{'':<28} note: {p.reference['note']}")
        rows.append({"name": p.name, "run_dir": str(p.run_dir), "params": params, **n, "reference": p.reference})
    print("'<' marks an upper bound: a bootstrapped run stops running its teacher at a step decided during training.")
    print("t.train is the teacher's whole training run, counted in every student that uses it.")
    return rows


# ---------------------------------------------------------------- running


def _laws_path(recipe: dict) -> str | None:
    laws = (recipe.get("planner") or {}).get("laws")
    if laws is not None and not Path(laws).is_file():
        raise ConfigError(f"planner.laws '{laws}' does not exist: give the scaling_fit.json written by `bootdistill fit`, "
                          "or remove it to use the paper's Table 6")
    return laws


def _write_prediction(p: PlannedRun, runs: dict, vocab: int, recipe: dict) -> None:
    """The planner's predicted saving, written once before the run trains (a resumed run keeps the first)."""
    from .fsutil import atomic_write_json
    from .prediction import predict_planned_run

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
    """A tuned run's grid and point, beside its results: the report compares each arm's best point."""
    from .fsutil import atomic_write_json

    if p.tune is not None and not (p.run_dir / TUNE_FILE).is_file():
        atomic_write_json(p.run_dir / TUNE_FILE, p.tune)


def run_recipe(path: str | Path, overrides: list[str] | None = None, dry_run: bool = False,
               only: str | None = None) -> list[Path]:
    """Run the recipe's runs in order; `only`: just that run (its teacher must be finished)."""
    from .data.prepare import load_meta, prepare
    from .runtime import distributed
    from .train.trainer import Trainer

    from .train import preflight

    recipe, order = load_recipe(path, overrides)
    _laws_path(recipe)  # a missing coefficients file is found before any compute
    runs = {p.name: p for p in order}  # all of them: a student's numbers need its teacher's
    if only is not None and not dry_run:  # a dry run shows the whole plan
        from .interop.cluster import select_run

        order = select_run(order, only, path, overrides or [])
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

