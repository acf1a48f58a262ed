"""The scale axis of docs/where-it-pays.md: best against best at each student size, from the reports of the
recipes that trained them (scale.yaml: 1.46M and 2.78M; tuned.yaml: 4.5M). One row per distilled configuration:
its size, tokens, teacher, the share of the classical run's compute its teacher's training costs, and the saving
(teacher included, the switch's evaluations charged) on validation and test with its 95% interval and verdict,
then without the evaluations and with a teacher already trained;
then a PNG of the saving against student size and against the student/teacher size ratio, and the smallest
budget whose saving is distinguishable from 0.

    python scripts/where_it_pays_scale.py --val A.report-val B.report-val --test A.report-test B.report-test \
        --png docs/figures/where-it-pays-scale.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bootdistill.report.markdown import markdown_table, verdict_word


def load(report_dir: str) -> dict:
    path = Path(report_dir) / "report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"error: cannot read {path} ({e}): build it with `bootdistill report ... --out {report_dir}`")


def saving(row: dict) -> dict:
    st = row.get("savings_pct") or {}
    return {"mean": st.get("mean"), "std": st.get("std"), "ci95": st.get("ci95"), "n": st.get("n"),
            "reached": st.get("reached")}


def verdict(s: dict) -> str:
    if s["mean"] is None:
        return "not reached"
    if s["ci95"] is None:
        n = s["reached"] or 1
        return f"{s['mean']:+.1f}% ({n} seed)" if n == 1 else f"{s['mean']:+.1f}% ± {s['std']:.1f} ({n} seeds)"
    lo, hi = s["ci95"]
    return f"{s['mean']:+.1f}% ± {s['std']:.1f} [{lo:+.1f}, {hi:+.1f}]: {verdict_word(lo, hi)}"


def points(val: dict, test: dict) -> list[dict]:
    """One record per distilled configuration of a pair of reports (validation, test)."""
    runs = {r["name"]: r for r in val["runs"]}
    by_test = {r["configuration"]: r for r in test["rows"]}
    by_conf = {r["configuration"]: r for r in val["rows"]}
    out = []
    for row in val["rows"]:
        if row["policy"] == "classical" or row.get("baseline") is None:
            continue
        student = runs[row["runs"][0]]
        teacher = runs.get(student.get("teacher") or "", {})
        base = by_conf.get(row["baseline"], {})
        base_pflops = (base.get("compute_pflops") or {}).get("mean")
        teacher_pflops = (row.get("teacher_train_pflops") or {}).get("mean")
        out.append({
            "configuration": row["configuration"], "baseline": row["baseline"], "seeds": row["seeds"],
            "student_params": student["n_params"], "teacher_params": teacher.get("n_params"),
            "tokens": (base.get("tokens") or {}).get("mean"),
            "target": (base.get("target") or {}).get("mean"),
            "teacher_share": teacher_pflops / base_pflops if teacher_pflops and base_pflops else None,
            "val": saving(row), "test": saving(by_test.get(row["configuration"], {})),
            "val_uncharged": saving({"savings_pct": row.get("savings_without_evals_pct")}),
            # the teacher already trained (its inference still counted): what the teacher's training costs
            "val_teacher_owned": saving({"savings_pct": (row.get("teacher_accounting") or {}).get("inference")}),
        })
    return out


def table(records: list[dict]) -> str:
    rows = [[f"{r['student_params'] / 1e6:.2f}M", f"{r['tokens'] / 1e6:.2f}M" if r["tokens"] else "—",
             f"{r['teacher_params'] / 1e6:.2f}M" if r["teacher_params"] else "—",
             f"{r['student_params'] / r['teacher_params']:.1f}x" if r["teacher_params"] else "—",
             f"{100 * r['teacher_share']:.0f}%" if r["teacher_share"] is not None else "—",
             f"{r['target']:.4f}" if r["target"] else "—", str(len(r["seeds"])),
             verdict(r["val"]), verdict(r["test"]), verdict(r["val_uncharged"]),
             verdict(r["val_teacher_owned"])] for r in records]
    return markdown_table(["student", "tokens", "teacher", "student/teacher", "teacher training / classical run",
                           "target (best classical, val)", "seeds", "saving, val (charged)", "saving, test (charged)",
                           "val, evaluations not charged", "val, a teacher you already have"], rows)


def smallest_distinguishable(records: list[dict]) -> str:
    for r in records:
        ci = r["val"]["ci95"]
        if ci and ci[0] > 0 and (r["test"]["ci95"] or [0])[0] > 0:
            return (f"smallest budget with a saving distinguishable from 0 (95% interval above 0 on validation and "
                    f"test): {r['student_params'] / 1e6:.2f}M students on {r['tokens'] / 1e6:.2f}M tokens")
    return "no budget here has a saving distinguishable from 0 on both splits"


def plot(records: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in ((axes[0], lambda r: r["student_params"] / 1e6, "student parameters (M)"),
                           (axes[1], lambda r: r["student_params"] / r["teacher_params"], "student / teacher parameters")):
        for split, marker, shift in (("val", "o", 0.97), ("test", "s", 1.03)):
            xs, ys, lo, hi = [], [], [], []
            for r in records:
                s = r[split]
                if s["mean"] is None or not r["teacher_params"]:
                    continue
                xs.append(key(r) * shift)
                ys.append(s["mean"])
                ci = s["ci95"] or (s["mean"], s["mean"])
                lo.append(s["mean"] - ci[0])
                hi.append(ci[1] - s["mean"])
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker + "-", capsize=4, label=f"{split} (95% interval over seeds)")
        owned = [(key(r), r["val_teacher_owned"]["mean"]) for r in records
                 if r["val_teacher_owned"]["mean"] is not None and r["teacher_params"]]
        if owned:
            ax.plot(*zip(*owned), "^--", color="grey", label="val, a teacher you already have: its training not charged (mean)")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("compute saved to the best classical loss (%)\nteacher and switch evaluations charged")
    axes[0].legend(fontsize=8)
    fig.suptitle("Bootstrapped distillation against a tuned classical baseline, by student size")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--val", nargs="+", required=True, help="report directories on the validation split")
    ap.add_argument("--test", nargs="+", required=True, help="the same reports on the test split, in the same order")
    ap.add_argument("--png", help="write the plot here")
    ap.add_argument("--json", help="write the records here")
    args = ap.parse_args()
    if len(args.val) != len(args.test):
        print("error: give as many --test reports as --val reports, in the same order", file=sys.stderr)
        return 2
    records = sorted((p for v, t in zip(args.val, args.test) for p in points(load(v), load(t))),
                     key=lambda r: r["student_params"])
    print(table(records))
    print("\n" + smallest_distinguishable(records))
    if args.png:
        plot(records, Path(args.png))
        print(f"plot: {args.png}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
