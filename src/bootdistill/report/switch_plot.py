"""What happens at the KD switch: train loss, gradient norm and validation entropy per step around the step where
a distilled run stopped KD, beside its classical baseline (docs/where-it-pays.md explains the stall it shows)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from .runs import Run

FILE = "switch.png"
WINDOW = 300  # steps shown on each side of the switch


def _stop_step(run: Run) -> int | None:
    return next((e["step"] for e in run.evals if any(str(v).startswith("kd_stopped") for v in e.get("events") or [])),
                None)


def write_switch_plot(runs: list[Run], report: dict, out: Path, save) -> str | None:
    by_name = {r.name: r for r in runs}
    pairs = [(by_name[rec["name"]], by_name.get(rec["baseline"])) for rec in report.get("runs", [])
             if rec["name"] in by_name and rec.get("baseline") and _stop_step(by_name[rec["name"]]) is not None]
    pairs = [(d, b) for d, b in pairs if b is not None and any("grad_norm" in r for r in d.metrics)]
    if not pairs:
        return None
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    panels = (("train_loss", "train CE loss", lambda r: r.metrics), ("grad_norm", "gradient norm (before clipping)",
              lambda r: r.metrics), ("val_entropy", "validation predictive entropy", lambda r: r.evals))
    for i, (d, b) in enumerate(pairs):
        stop = _stop_step(d)
        colour = plt.rcParams["axes.prop_cycle"].by_key()["color"][i % 10]
        for ax, (key, label, rows) in zip(axes, panels):
            for run, style, name in ((d, "-", d.name), (b, ":", f"{b.name} (classical)")):
                pts = [(r["step"] - stop, r[key]) for r in rows(run)
                       if key in r and abs(r["step"] - stop) <= WINDOW]
                if pts:
                    ax.plot(*zip(*pts), style, color=colour if run is d else "grey", lw=1.2,
                            label=name if key == "train_loss" and (i == 0 or run is d) else None)
            ax.set_ylabel(label, fontsize=8)
            ax.axvline(0, color="black", lw=0.6)
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title("Around the KD switch (step 0 = KD stopped)", fontsize=10)
    axes[-1].set_xlabel("steps from the switch")
    save(fig, Path(out) / FILE)
    return FILE
