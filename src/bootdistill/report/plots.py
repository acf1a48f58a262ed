"""The paper's figures as PNGs: loss vs compute (Fig. 3), loss vs step (Fig. 2), LR vs loss (Fig. 7), positional
loss (Figs. 4-5). One colour per config; seeds of a config share it and its legend entry."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window: this runs on headless machines
import matplotlib.pyplot as plt  # noqa: E402

from ..fsutil import atomic_write_bytes  # noqa: E402
from .runs import Run  # noqa: E402
from .sweep_plot import write_sweep_plot  # noqa: E402
from .switch_plot import write_switch_plot  # noqa: E402
from .tables import PFLOP, find_teacher, group_runs  # noqa: E402

FILES = {"loss_vs_compute": "loss_vs_compute.png", "loss_vs_step": "loss_vs_step.png",
         "lr_vs_loss": "lr_vs_loss.png", "positional_loss": "positional_loss.png", "savings": "savings.png"}


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    path.chmod(0o644)  # mkstemp makes 0600; a report is meant to be shared


def _styles(runs: list[Run]) -> dict:
    """(colour, legend label or None, line style) per run path: classical solid, distilled dashed, teachers dotted."""
    out = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    teachers = {t.path for t in (find_teacher(r, runs) for r in runs) if t is not None}
    for i, g in enumerate(group_runs(runs)):
        for j, r in enumerate(g.runs):
            style = ":" if r.path in teachers else "-" if r.policy == "classical" else "--"
            label = ("teacher " if r.path in teachers else "") + g.label
            out[r.path] = (cycle[i % len(cycle)], label if j == 0 else None, style)
    return out


def _curves(ax, runs, styles, x_of, y_key="val_loss") -> bool:
    drew = False
    for r in runs:
        pts = [(x_of(e), e[y_key]) for e in r.evals if x_of(e) is not None]
        if not pts:
            continue
        colour, label, style = styles[r.path]
        ax.plot(*zip(*pts), style, color=colour, label=label, marker="." if len(pts) < 30 else None, lw=1.4)
        stops = [x_of(e) for e in r.evals if any(str(ev).startswith("kd_stopped") for ev in e.get("events") or [])]
        for x in stops:  # where bootstrapped KD ended (paper §5.1)
            y = next(e[y_key] for e in r.evals if x_of(e) == x)
            ax.plot([x], [y], "v", color=colour, ms=7)
        drew = True
    return drew


def _targets(ax, targets: list[float]) -> None:
    for t in sorted(set(round(t, 6) for t in targets)):
        ax.axhline(t, color="grey", lw=0.8, ls=":")
        ax.annotate(f"target {t:.3f}", (1.0, t), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=7, color="grey")


def _finish(ax, fig, path, xlabel, ylabel, title, drew) -> bool:
    if not drew:
        plt.close(fig)
        return False
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    _save(fig, path)
    return True


def write_plots(runs: list[Run], out: Path, report: dict | None = None) -> dict[str, str]:
    """Write the PNGs that have data into `out`; returns {figure: file name} for the ones written. With the built
    report, the Table 3 targets are drawn and each run's first crossing is marked (×) on the compute plot."""
    out = Path(out)
    styles = _styles(runs)
    written = {}
    targets = [v for row in (report or {}).get("rows", []) for v in row["target"]["values"] if v is not None]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drew = _curves(ax, runs, styles, lambda e: e["flops_total"] / PFLOP if "flops_total" in e else None)
    _targets(ax, targets)
    colour = {str(r.path): styles[r.path][0] for r in runs}
    for rec in (report or {}).get("runs", []):
        x = rec.get("crossing")
        if x and rec["path"] in colour and rec["name"] not in {t["name"] for t in report["teachers"]}:
            ax.plot([x["flops_total"] / PFLOP], [rec["target"]], "x", color=colour[rec["path"]], ms=9, mew=2)
    if _finish(ax, fig, out / FILES["loss_vs_compute"], "compute (PFLOPs; distilled runs include teacher training)",
               "validation loss", "Validation loss vs compute (cf. paper Fig. 3); ▼ KD stopped, × target first reached",
               drew):
        written["loss_vs_compute"] = FILES["loss_vs_compute"]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drew = _curves(ax, runs, styles, lambda e: e.get("step"))
    _targets(ax, targets)
    if _finish(ax, fig, out / FILES["loss_vs_step"], "step", "validation loss",
               "Validation loss vs step (cf. paper Fig. 2)", drew):
        written["loss_vs_step"] = FILES["loss_vs_step"]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drew = _curves(ax, runs, styles, lambda e: e["lr"] if e.get("lr") else None)
    if drew:
        ax.set_xscale("log")
    if _finish(ax, fig, out / FILES["lr_vs_loss"], "learning rate at the evaluation", "validation loss",
               "Learning rate vs validation loss (cf. paper Fig. 7)", drew):
        written["lr_vs_loss"] = FILES["lr_vs_loss"]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drew = False
    for r in runs:
        pos = (r.summary or {}).get("positional_test_loss") or {}
        pts = sorted((int(k), v) for k, v in pos.items() if v is not None)
        if pts:
            colour, label, style = styles[r.path]
            ax.plot(*zip(*pts), style, color=colour, label=label, marker="o", ms=4)
            drew = True
    if _finish(ax, fig, out / FILES["positional_loss"], "position bucket (upper bound, tokens)", "test loss",
               "Loss per 64-token position bucket (cf. paper Figs. 4-5)", drew):
        written["positional_loss"] = FILES["positional_loss"]

    rows = [r for r in (report or {}).get("rows", []) if r.get("savings_pct")]
    if rows:
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
        names = [r["configuration"] for r in rows]
        means = [r["savings_pct"]["mean"] if r["savings_pct"]["mean"] is not None else 0.0 for r in rows]
        errs = [r["savings_pct"]["std"] or 0.0 for r in rows]
        colours = ["tab:green" if m > 0 else "tab:red" for m in means]
        ax.barh(names, means, xerr=errs, color=colours, alpha=0.8)
        for y, r in enumerate(rows):
            if r["savings_pct"]["mean"] is None:
                ax.annotate("target not reached", (0, y), fontsize=7, va="center")
        ax.axvline(0, color="black", lw=0.8)
        ax.invert_yaxis()
        if _finish(ax, fig, out / FILES["savings"], "saving to reach the classical target, teacher included (%)", "",
                   "Compute saved by each configuration (± std over seeds)", True):
            written["savings"] = FILES["savings"]

    sweep = write_sweep_plot(runs, report or {}, out, _save)
    if sweep:
        written["savings_by_setting"] = sweep

    switch = write_switch_plot(runs, report or {}, out, _save)
    if switch:
        written["switch"] = switch
    return written
