"""Recipes -> planned runs. A recipe names runs (teachers, classical baselines, distilled students that name their
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

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import (BATCH_COUNTS, VOLATILE, RunConfig, TrainConfig, _deep_merge, flatten, from_dict, load_yaml,
                      resolve_model, set_dotted, to_dict, validate)
from ..distill.source import parse_teacher_spec
from ..errors import ConfigError

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


def tune_suffix(key: str, v) -> str:
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
            tsuffix = "".join(tune_suffix(k, v) for k, v in zip(tune_keys, tpoint))
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
        external = teacher is not None and parse_teacher_spec(teacher).external  # no run of the recipe trains it
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
