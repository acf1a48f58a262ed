"""The best-against-best tables of docs/where-it-pays.md, from the tuned recipe's two reports (validation, test).

First every grid point (each arm x learning rate): final validation losses per seed and their mean, the
chosen point marked; then, per seed, the chosen distilled run against the chosen classical run: target, crossing, saving on
both splits with the evaluations that decided the switch charged and without them; then the mean ± std, 95%
interval and verdict over the seeds.

    python scripts/where_it_pays_tuned_table.py --val R1/report.json --test R2/report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bootdistill.report.markdown import markdown_table, verdict_word


def fmt(v, spec="+.1f", suffix="%") -> str:
    return "not reached" if v is None else f"{v:{spec}}{suffix}"


def grid_rows(val: dict) -> list[list[str]]:
    """Every grid point with its final validation losses (the choice is made on validation alone)."""
    rows = []
    for g in val.get("tuning") or []:
        for p in g["points"]:
            seeds = ", ".join(f"s{s} {v:.4f}" for s, v in zip(p["seeds"], p["losses"]))
            point = ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in p["point"].items())
            rows.append([g["configuration"], point, seeds, f"{p['final_val_loss']:.4f}",
                         "**chosen**" if p["chosen"] else ""])
    return rows


def seed_rows(val: dict, test: dict) -> list[list[str]]:
    by_test = {r["name"]: r for r in test["runs"]}
    rows = []
    for r in sorted(val["runs"], key=lambda r: (r["policy"] == "classical", r["name"])):
        if r["policy"] == "classical" or r.get("baseline") is None:
            continue
        t = by_test.get(r["name"], {})
        cross_v = (r.get("crossing") or {}).get("step")
        cross_t = (t.get("crossing") or {}).get("step")
        rows.append([r["name"], str(r["seed"]), f"{r['target']:.4f} / {t.get('target', float('nan')):.4f}",
                     str(r.get("kd_stopped_step") or "—"),
                     f"{cross_v:,.0f} / {cross_t:,.0f}" if cross_v and cross_t else "not reached",
                     fmt(r.get("savings_pct")), fmt(t.get("savings_pct")),
                     f"{fmt(r.get('savings_without_evals_pct'))} / {fmt(t.get('savings_without_evals_pct'))}"])
    return rows


def verdict(row: dict) -> str:
    st = row.get("savings_pct") or {}
    if st.get("mean") is None:
        return "not reached"
    if st.get("ci95") is None:
        return f"{st['mean']:+.1f}% ({st['reached']} seed)"
    lo, hi = st["ci95"]
    word = verdict_word(lo, hi)
    missed = st["n"] - st["reached"]
    return (f"{st['mean']:+.1f}% ± {st['std']:.1f} [{lo:+.1f}, {hi:+.1f}]: {word}"
            + (f" ({missed} of {st['n']} seeds never reach the target)" if missed else ""))


def summary_rows(val: dict, test: dict) -> list[list[str]]:
    by_conf = {r["configuration"]: r for r in test["rows"]}
    rows = []
    for r in val["rows"]:
        if r["policy"] == "classical":
            continue
        t = by_conf.get(r["configuration"], {})
        rows.append([r["configuration"], verdict(r), verdict(t),
                     verdict({"savings_pct": r.get("savings_without_evals_pct")}),
                     verdict({"savings_pct": t.get("savings_without_evals_pct")})])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--val", default="runs/where-it-pays-tuned.report-val/report.json")
    ap.add_argument("--test", default="runs/where-it-pays-tuned.report-test/report.json")
    args = ap.parse_args()
    for p in (args.val, args.test):
        if not Path(p).is_file():
            sys.exit(f"error: {p} is not a report.json: run `bootdistill report` first (docs/where-it-pays.md)")
    val, test = (json.loads(Path(p).read_text()) for p in (args.val, args.test))
    print(markdown_table(["arm", "point", "final val by seed (whole split)", "mean", ""], grid_rows(val)))
    print()
    print(markdown_table(["run", "seed", "target, val / test", "switch (step)", "reaches it at step, val / test",
                          "saving, val", "saving, test", "without the switch's evaluations, val / test"],
                         seed_rows(val, test)))
    print()
    print(markdown_table(["configuration", "val, evaluations charged", "test, evaluations charged",
                          "val, without them", "test, without them"], summary_rows(val, test)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
