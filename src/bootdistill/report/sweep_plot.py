"""Savings against each setting a search varied: one panel per setting, drawn from the distilled
configurations that differ in that setting alone (or in one small set of settings changed together)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import matplotlib.pyplot as plt

from ..config import NOT_SETTINGS, flatten, upgrade_batch_counts

FILE = "savings_by_setting.png"
MAX_KEYS = 3  # settings changed together still count as one variable (e.g. the three KD-aware LR knobs)


def flat(cfg: dict) -> dict:
    """{'distill': {'alpha': 0.25}} -> {'distill.alpha': 0.25}, without the keys that are not the method's."""
    return flatten(cfg, NOT_SETTINGS, keep_empty=True)


def shown(value) -> str:
    """A setting's value as a tick label; a teacher's run directory by its run name (hash dropped)."""
    if isinstance(value, str) and "/" in value:
        value = re.sub(r"-[0-9a-f]{8}$", "", Path(value).name)
    return "default" if value is None else str(value)


def _order(value) -> tuple:
    """Numbers in numeric order (0.0 before 0.05), then words, then the default."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (2, 0, "") if value is None else (1, 0, str(value))


def sweeps(configs: dict[str, dict]) -> dict[tuple, dict[str, dict]]:
    """{(settings varied, the other settings held fixed): {configuration: its values of the varied ones}} for
    every pair of configurations that differ in those settings only; pairs that share both form one sweep."""
    def diff(a: str, b: str) -> set:
        return {k for k in configs[a].keys() | configs[b].keys() if configs[a].get(k) != configs[b].get(k)}

    out: dict[tuple, dict[str, dict]] = {}
    for a, b in itertools.combinations(configs, 2):
        ca, keys = configs[a], tuple(sorted(diff(a, b)))
        # several settings count as one variable only if no configuration lies between the two (changes a part)
        between = len(keys) > 1 and any(diff(a, c) < set(keys) and diff(c, b) < set(keys) for c in configs)
        if 0 < len(keys) <= MAX_KEYS and not between:
            fixed = tuple(sorted((k, repr(v)) for k, v in ca.items() if k not in keys))
            sweep = out.setdefault((keys, fixed), {})
            for name in (a, b):
                sweep[name] = {k: configs[name].get(k) for k in keys}
    return out


def _context(fixed: tuple, others: list[tuple], config: dict) -> str:
    """What tells this sweep from others over the same settings: the fixed settings whose values differ."""
    differ = {k for other in others for (k, v), (k2, v2) in zip(fixed, other) if k == k2 and v != v2}
    return ", ".join(f"{k.split('.')[-1]}={shown(config.get(k))}" for k, _ in fixed if k in differ)


def write_sweep_plot(runs, report: dict, out: Path, save) -> str | None:
    """savings_by_setting.png, when at least one setting was varied between distilled configurations."""
    by_name = {r.name: r for r in runs}
    rows = {row["configuration"]: row for row in report.get("rows", [])
            if row.get("role") == "distilled" and row.get("savings_pct") and row["runs"][0] in by_name}
    # older runs count evaluations in batches: read them in sequences, like the newer ones
    configs = {label: flat(upgrade_batch_counts(by_name[row["runs"][0]].config)) for label, row in rows.items()}
    found = sweeps(configs)
    if not found:
        return None
    cols = min(2, len(found))
    nrows = (len(found) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 3.6 * nrows), squeeze=False,
                             layout="constrained")  # room for the title and slanted ticks, no blank band
    for ax, ((keys, fixed), members) in zip(axes.flat, sorted(found.items())):
        context = _context(fixed, [f for k, f in found if k == keys and f != fixed], configs[next(iter(members))])
        points = sorted(members.items(), key=lambda kv: [_order(kv[1][k]) for k in keys])
        ticks = [", ".join(shown(values[k]) for k in keys) for _, values in points]
        means = [rows[name]["savings_pct"]["mean"] for name, _ in points]
        stds = [rows[name]["savings_pct"]["std"] or 0.0 for name, _ in points]
        reached = [(i, m, s) for i, (m, s) in enumerate(zip(means, stds)) if m is not None]
        floor = min([m - s for _, m, s in reached] + [0.0]) - 2.0
        if reached:
            xs, ms, ss = zip(*reached)
            ax.errorbar(xs, ms, yerr=ss, fmt="o", color="tab:blue", capsize=3)
        for i, m in enumerate(means):
            if m is None:  # never reached the target: no saving exists; drawn below the others
                ax.plot([i], [floor], "v", color="tab:red", ms=8)
                ax.annotate("not reached", (i, floor), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=7, color="tab:red")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(ticks)), ticks, fontsize=8, rotation=20 if len(ticks) > 3 else 0,
                      ha="right" if len(ticks) > 3 else "center")
        ax.set_xlabel(" + ".join(keys) + (f"   (with {context})" if context else ""), fontsize=9)
        ax.set_ylabel("saving, teacher included (%)", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(found):]:
        ax.axis("off")
    fig.suptitle("Saving against each setting varied (± std over seeds; ▼ target never reached)", fontsize=10)
    save(fig, out / FILE)
    return FILE
