"""The results table of docs/where-it-pays.md, from the search's two reports (validation and test split).

One row per finished distilled run, best validation saving first (then the closest to the target): what it
changes against the run it extends, its switch, its whole-split losses, where it reaches the target, its saving
on both splits with the teacher counted, what it saves with a teacher you already have, how many students must
share a trained teacher for each to save, and its test and out-of-domain loss against the classical baseline.

    python scripts/where_it_pays_table.py            # runs/where-it-pays.report-{val,test}/report.json
    python scripts/where_it_pays_table.py --val R1/report.json --test R2/report.json --recipe RECIPE.yaml
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

from bootdistill.report.markdown import markdown_table
from bootdistill.report.runs import RUN_HASH, SEED_SUFFIX
from bootdistill.report.tables import teacher_accounting

HEADERS = ["run", "changes", "switch (step)", "final val (whole split)", "reaches target at step",
           "saving, val", "saving, test", "teacher already there, val", "students sharing the teacher to save",
           "Δ test loss", "Δ OOD loss"]


def changes(specs: dict, name: str) -> str:
    """What a run's recipe entry sets beyond the run it extends, flattened: `distill.alpha 0.1 (vs mix-a0.25-t1)`."""
    base = SEED_SUFFIX.sub("", name)
    if name not in specs and base != name and base in specs:  # a seeded recipe's copy of one run
        seed = re.search(r"\d+$", name)[0]
        return f"seed {seed} of {base}"
    spec = dict(specs.get(name) or {})
    parent = spec.pop("extends", None)
    flat = [f"{section}.{k} {v}" for section, keys in spec.items() if isinstance(keys, dict) for k, v in keys.items()]
    return "; ".join(flat) + (f" (vs {parent})" if parent else "") if flat else "—"


def _pct(v) -> str:
    return "not reached" if v is None else f"{v:+.1f}%"


def _delta(student, baseline) -> str:
    return "—" if student is None or baseline is None else f"{student - baseline:+.3f}"


def rows(val: dict, test: dict, specs: dict) -> list[list[str]]:
    by_name = {r["name"]: r for r in val["runs"]}
    test_saving = {r["name"]: r.get("savings_pct") for r in test["runs"]}
    students = [r for r in val["runs"] if r["policy"] != "classical" and r.get("baseline") and r["finished"]]
    students.sort(key=lambda r: (r.get("savings_pct") is None, -(r.get("savings_pct") or 0), r["final_val_loss"]))
    out = []
    for r in students:
        base = by_name.get(r["baseline"]) or {}
        acc = teacher_accounting(r.get("crossing"), base.get("crossing")) or {}  # also for reports made before it
        models = (r.get("diagnostics") or {}).get("models") or {}
        ood = [models.get(m, {}).get("ood_loss") for m in ("student", "baseline")]
        k = acc.get("break_even_students")
        cross = r.get("crossing")
        out.append([RUN_HASH.sub("", r["name"]), changes(specs, RUN_HASH.sub("", r["name"])),
                    str(r.get("kd_stopped_step") or "—"), f"{r['final_val_loss']:.4f}",
                    f"{cross['step']:.0f}" if cross else "never", _pct(r.get("savings_pct")),
                    _pct(test_saving.get(r["name"])), _pct(acc.get("inference")),
                    "never" if k is None else str(k), _delta(r.get("test_loss"), base.get("test_loss")),
                    _delta(*ood)])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--val", default="runs/where-it-pays.report-val/report.json")
    p.add_argument("--test", default="runs/where-it-pays.report-test/report.json")
    p.add_argument("--recipe", default="configs/where-it-pays/search.yaml")
    args = p.parse_args(argv)
    try:
        val, test = (json.loads(Path(f).read_text()) for f in (args.val, args.test))
        specs = yaml.safe_load(Path(args.recipe).read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: cannot read the reports or the recipe ({e}): run scripts/where_it_pays.sh first, or pass "
                 "--val, --test and --recipe")
    table = rows(val, test, specs)
    if not table:
        sys.exit("error: the validation report has no finished distilled run with a baseline: run the search first")
    targets = {RUN_HASH.sub("", r["baseline"]): r["target"] for r in val["runs"]
               if r["policy"] != "classical" and r.get("baseline") and r.get("target")}
    if len(set(targets.values())) == 1:
        print(f"Target (classical, whole validation split): {next(iter(targets.values())):.4f}\n")
    elif targets:  # seeds: each run is measured against the classical run of its own seed
        print("Targets (each seed's classical run, whole validation split): "
              + ", ".join(f"{name} {t:.4f}" for name, t in sorted(targets.items())) + "\n")
    print(markdown_table(HEADERS, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
