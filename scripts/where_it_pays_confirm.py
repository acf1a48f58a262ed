"""Write the confirmation recipe of the where-it-pays search (docs/where-it-pays.md) from the search's report.

The rule, fixed before the search was run: the leader is the distilled configuration with the largest saving on
the validation split, teacher included; if none reached the target, the one with the lowest final validation
loss; ties go to less compute. The confirmation trains the leader, its teacher and the classical baseline on
seeds 1, 2 and 3 (never used by the search) and is reported on the validation and the test split.

    python scripts/where_it_pays_confirm.py                      # reads runs/where-it-pays.report-val/report.json
    RECIPE=configs/where-it-pays/confirm.yaml ARCHIVE=results/where-it-pays/archive-confirm bash scripts/where_it_pays.sh
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

from bootdistill.config import _deep_merge
from bootdistill.report.runs import RUN_HASH

SEEDS = [1, 2, 3]


def recipe_name(run_name: str) -> str:
    return RUN_HASH.sub("", run_name)


def pick_leader(report: dict) -> tuple[dict, str]:
    students = [r for r in report["runs"] if r["policy"] != "classical" and r.get("teacher") and r["finished"]]
    if not students:
        raise SystemExit("error: the report has no finished distilled run: run the search first")
    reached = [r for r in students if r.get("savings_pct") is not None]
    if reached:
        best = max(reached, key=lambda r: (r["savings_pct"], -(r["compute_pflops"] or 0)))
        return best, f"largest validation saving, {best['savings_pct']:+.1f}% with the teacher counted"
    best = min(students, key=lambda r: (r["final_val_loss"], r["compute_pflops"] or 0))
    return best, f"no configuration reached the target; lowest final validation loss, {best['final_val_loss']:.4f}"


def flattened(specs: dict, name: str) -> dict:
    """A run's spec with its `extends` chain merged in, so the confirmation needs none of its ancestors."""
    spec = copy.deepcopy(specs[name] or {})
    parent = spec.pop("extends", None)
    spec.pop("grid", None)
    return _deep_merge(flattened(specs, parent), spec) if parent else spec


def confirmation_recipe(search: dict, leader: str, baseline: str) -> dict:
    specs = search["runs"]
    for name in (leader, baseline):
        if name not in specs:
            raise SystemExit(f"error: run '{name}' of the report is not in the search recipe: is it the right recipe?")
    runs = {}
    lead = flattened(specs, leader)
    teacher = str((lead.get("distill") or {}).get("teacher", "")).partition("@")[0]
    if teacher not in specs:
        raise SystemExit(f"error: the leader's teacher '{teacher}' is not a run of the search recipe")
    runs[teacher] = flattened(specs, teacher)
    runs[baseline] = flattened(specs, baseline)
    runs[leader] = lead
    return {
        "name": f"{search.get('name', 'search')}-confirm",
        "description": f"confirmation of '{leader}' against '{baseline}' on seeds {SEEDS} (written by "
                       "scripts/where_it_pays_confirm.py from the search's validation report)",
        "out_dir": f"{search.get('out_dir', 'runs/search')}-confirm",
        "defaults": search.get("defaults") or {},
        "seeds": SEEDS,
        "runs": runs,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default="runs/where-it-pays.report-val/report.json")
    ap.add_argument("--recipe", default="configs/where-it-pays/search.yaml")
    ap.add_argument("--out", default="configs/where-it-pays/confirm.yaml")
    args = ap.parse_args(argv)
    report = json.loads(Path(args.report).read_text())
    leader, why = pick_leader(report)
    recipe = confirmation_recipe(yaml.safe_load(Path(args.recipe).read_text()), recipe_name(leader["name"]),
                                 recipe_name(leader["baseline"]))
    Path(args.out).write_text(f"# {recipe['description']}\n# leader: {why}\n" + yaml.safe_dump(recipe, sort_keys=False))
    print(f"leader: {recipe_name(leader['name'])} ({why}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
