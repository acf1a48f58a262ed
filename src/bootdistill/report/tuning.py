"""Best against best: the runs of a recipe's `tune:` block (each has a tune.json: its grid and its point) form
one grid per configuration. The report keeps each grid's best point, chosen by the final validation loss (the
mean over seeds), and measures savings between the chosen points only: the target is the best classical
point's final loss, and each distilled configuration is represented by its own best point. It also says what
each grid cost and warns when the best value sits at the edge of its grid (the optimum may lie outside)."""

from __future__ import annotations

import json
import math
import statistics

from ..experiment.recipe import TUNE_FILE, tune_suffix
from .runs import RUN_HASH, SEED_SUFFIX, Run, finite, load_run

PFLOP = 1e15


def read_tune(run: Run) -> dict | None:
    try:
        tune = json.loads((run.path / TUNE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return tune if isinstance(tune, dict) and tune.get("grid") and tune.get("point") else None


def _family(run: Run, tune: dict) -> tuple:
    """The run's identity without its tuned settings (nor lr_min, which follows a tuned lr_max when not given)."""
    skip = set(tune["grid"]) | ({"train.lr_min"} if "train.lr_max" in tune["grid"] else set())
    # the tuned settings' names, not their values: points run before a grid was widened keep the narrower grid
    return tuple(item for item in run.identity if item[0] not in skip) + (("tuned", tuple(sorted(tune["grid"]))),)


def _union_grid(tunes: list[dict]) -> dict:
    """Each tuned setting's values over every point's grid (numbers sorted): the grid as widened so far."""
    grid: dict[str, list] = {}
    for tune in tunes:
        for k, values in tune["grid"].items():
            have = grid.setdefault(k, [])
            have += [v for v in values if v not in have]
    numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    return {k: sorted(vs) if all(map(numeric, vs)) else vs for k, vs in grid.items()}


def _choice_loss(run: Run) -> float | None:
    """The final validation loss (whole final set); an unfinished run's latest in-training one."""
    v = (run.summary or {}).get("final_val_loss") if run.finished else run.final_eval_loss
    return float(v) if finite(v) else None


def _final_flops(run: Run, key: str) -> float | None:
    v = ((run.summary or {}).get("flops") or {}).get(key, run.last_row.get(key))
    return float(v) if finite(v) else None


def _mean(values: list) -> float | None:
    have = [v for v in values if v is not None]
    return statistics.fmean(have) if have else None


def _name(run: Run, tune: dict) -> str:
    name = RUN_HASH.sub("", run.name)
    suffix = "".join(tune_suffix(k, v) for k, v in tune["point"].items())
    for candidate in (name, SEED_SUFFIX.sub("", name)):  # a suffix like -kd_steps100 also looks like a seed's
        if suffix and candidate.endswith(suffix):
            return candidate[:-len(suffix)]
    return SEED_SUFFIX.sub("", name)


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def choose(runs: list[Run], warn: list[str]) -> tuple[set, list[dict]]:
    """(paths of the grid points not chosen, one record per grid). Each record lists every point with its final
    validation loss and compute, marks the chosen one, names the settings whose best value is at an edge and
    states the grid's cost beside the chosen run's."""
    families: dict[tuple, list[tuple[Run, dict]]] = {}
    for r in runs:
        tune = read_tune(r)
        if tune is not None:
            families.setdefault(_family(r, tune), []).append((r, tune))
    dropped, records = set(), []
    for members in families.values():
        grid = _union_grid([tune for _, tune in members])
        points: dict[str, list[Run]] = {}
        for r, tune in members:
            points.setdefault(json.dumps(tune["point"], sort_keys=True), []).append(r)
        rows = []
        for key, prs in points.items():
            losses = [_choice_loss(r) for r in prs]
            total = [_final_flops(r, "flops_total") for r in prs]
            teacher = [_final_flops(r, "flops_teacher_train") or 0.0 for r in prs]
            rows.append({"point": json.loads(key), "runs": [r.name for r in prs], "seeds": [r.seed for r in prs],
                         "final_val_loss": _mean(losses), "n": len(prs),
                         "losses": losses, "unfinished": [r.name for r in prs if not r.finished],
                         "compute_pflops": _mean([t / PFLOP if t is not None else None for t in total]),
                         "teacher_train_pflops": _mean([t / PFLOP for t in teacher]), "chosen": False})
        name = _name(members[0][0], members[0][1])
        candidates = [p for p in rows if p["final_val_loss"] is not None and not p["unfinished"]] or \
            [p for p in rows if p["final_val_loss"] is not None]
        if not candidates:
            warn.append(f"{name}: no point of its tuning grid has a validation loss yet: nothing to choose")
            continue
        best = min(candidates, key=lambda p: (p["final_val_loss"], p["compute_pflops"] or math.inf))
        best["chosen"] = True
        if any(p["unfinished"] for p in rows):
            warn.append(f"{name}: tuning grid has unfinished points "
                        f"({', '.join(n for p in rows for n in p['unfinished'])}): the chosen point may change")
        seeds = {p["n"] for p in rows}
        if len(seeds) > 1:
            warn.append(f"{name}: its grid points have different numbers of seeds ({sorted(seeds)}): the means compare "
                        "unlike things")
        missing = [k for k, values in grid.items() for v in values if not any(p["point"].get(k) == v for p in rows)]
        if missing:
            warn.append(f"{name}: the runs given lack part of its tuning grid ({', '.join(sorted(set(missing)))}): "
                        "the best was chosen among the points given")
        edge = []
        for k, values in grid.items():
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if len(numbers) == len(values) and best["point"].get(k) in (min(numbers), max(numbers)):
                edge.append(k)
                side = "smallest" if best["point"][k] == min(numbers) else "largest"
                warn.append(f"{name}: its best {k} ({_value(best['point'][k])}) is the {side} value of its grid "
                            f"[{', '.join(map(_value, values))}]: the optimum may lie outside; extend the grid")
        # one teacher serves every point: its training is counted once in the grid's cost
        teacher = max((p["teacher_train_pflops"] or 0.0) for p in rows)
        own = [p["compute_pflops"] - (p["teacher_train_pflops"] or 0.0) for p in rows if p["compute_pflops"] is not None]
        grid_pflops = sum(own) + teacher if own else None
        n = max(seeds)
        records.append({
            "configuration": name, "policy": members[0][0].policy, "grid": grid, "points": rows,
            "chosen": best["point"], "chosen_runs": best["runs"], "edge": edge, "seeds": n,
            "chosen_by": "final validation loss" + (f", mean over {n} seeds" if n > 1 else ""),
            "grid_pflops": grid_pflops, "chosen_pflops": best["compute_pflops"],
            "grid_cost_ratio": grid_pflops / best["compute_pflops"] if grid_pflops and best["compute_pflops"] else None})
        dropped |= {r.path for p in rows if not p["chosen"] for r in points[json.dumps(p["point"], sort_keys=True)]}
    records.sort(key=lambda g: (g["policy"] != "classical", g["configuration"]))  # the baseline's grid first
    return dropped, records


def unchosen(run_dirs: list) -> dict:
    """{run directory: why it is left out} for every grid point of these runs that `choose` does not keep: a fit
    over tuned runs uses each grid's chosen point only (`bootdistill fit` and `calibrate` pass this to
    scaling.runs.collect, which does not read grids itself)."""
    runs = [load_run(d) for d in run_dirs]
    dropped, records = choose(runs, [])
    name_of = {r.path: r.name for r in runs}
    why = {}
    for g in records:
        chosen = next(p for p in g["points"] if p["chosen"])
        for p in g["points"]:
            for path in (path for path in dropped if name_of[path] in p["runs"]):
                why[path] = (f"grid point {_point(p['point'])} of {g['configuration']}'s tuning grid is not its best "
                             f"(final val loss {_loss(p['final_val_loss'])}; chosen {_point(chosen['point'])} at "
                             f"{_loss(chosen['final_val_loss'])})")
    return why


def _point(point: dict) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in point.items())


def _loss(v) -> str:
    return "unknown" if v is None else f"{v:.4f}"
