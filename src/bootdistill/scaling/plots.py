"""PNG figures for fits (predicted against observed, residuals) and plans (isoFLOP contours, student loss
against teacher loss). Each file is written to a temp file and moved into place."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from ..fsutil import atomic_write_bytes  # noqa: E402


def _save(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_fit(path, law: str, observed, predicted, size, heldout_mask=None) -> None:
    """Left: predicted against observed loss, coloured by model size. Right: relative error in %."""
    observed, predicted, size = (np.asarray(v, float) for v in (observed, predicted, size))
    held = np.zeros(len(observed), bool) if heldout_mask is None else np.asarray(heldout_mask, bool)
    rel = 100 * (predicted / observed - 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    norm = LogNorm(size.min(), max(size.max(), size.min() * 1.001))
    for ax, y in ((a, predicted), (b, rel)):
        sc = ax.scatter(observed[~held], y[~held], c=size[~held], norm=norm, cmap="viridis", s=14, label="fitted")
        if held.any():
            ax.scatter(observed[held], y[held], c=size[held], norm=norm, cmap="viridis", s=40, marker="x", label="held out")
            ax.legend()
    lim = [min(observed.min(), predicted.min()), max(observed.max(), predicted.max())]
    a.plot(lim, lim, "k--", lw=1)
    a.set(xlabel="observed loss", ylabel="predicted loss", title=f"{law} law: predicted against observed")
    b.axhline(0, color="k", lw=1)
    b.set(xlabel="observed loss", ylabel="relative error (%)",
          title=f"residuals: mean |err| {np.abs(rel).mean():.2f}%, max {np.abs(rel).max():.2f}%")
    fig.colorbar(sc, ax=[a, b], label="N_S" if law == "distillation" else "N")
    _save(fig, path)


def plot_student_vs_teacher(path, lw, n_s: float, tokens, marks=()) -> None:
    """Student loss against teacher loss for an N_S student at several token counts: the capacity-gap U.
    Dashed: the same student trained supervised on those tokens. marks: (L_T, L_S, label) points."""
    l_lo, l_hi = float(lw.L(1e17, 1e17)), float(lw.L(1e6, 1e6))
    l_t = np.linspace(l_lo, min(l_hi, l_lo + 3.0), 400)
    fig, ax = plt.subplots(figsize=(7, 5))
    for d, color in zip(tokens, plt.cm.plasma(np.linspace(0.1, 0.8, len(tokens)))):
        ax.plot(l_t, lw.LS(n_s, d, l_t), color=color, label=f"D_S = {d:.3g}")
        ax.axhline(float(lw.L(n_s, d)), color=color, ls="--", lw=1)
    ax.plot(l_t, l_t, "k:", lw=1, label="L_S = L_T")
    for lt, ls, label in marks:
        ax.plot([lt], [ls], "r*", ms=12, label=label)
    ax.set(xlabel="teacher loss L_T", ylabel="student loss L_S",
           title=f"N_S = {n_s:.3g}: student against teacher (dashed: supervised, same tokens)")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_isoflop_contours(path, lw, n_s: float, d_s: float, plan: dict | None = None) -> None:
    """Student loss over teacher size and tokens at D_S student tokens; dashed lines are teacher-training
    isoFLOPs (3 F(N_T) D_T). The star is the planned teacher."""
    n_t = np.logspace(np.log10(max(n_s / 100, 1e6)), np.log10(n_s * 100), 80)
    m = np.logspace(0, 4, 80)  # D_T / N_T
    nn, mm = np.meshgrid(n_t, m)
    dd = nn * mm
    ls = lw.LS(n_s, d_s, lw.L(nn, dd))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    cs = ax.contourf(nn, dd, ls, levels=30, cmap="viridis_r")
    fig.colorbar(cs, ax=ax, label="student loss L_S")
    c_teacher = 3 * lw.F(nn) * dd
    lv = 10.0 ** np.arange(np.ceil(np.log10(c_teacher.min())), np.floor(np.log10(c_teacher.max())) + 1)
    iso = ax.contour(nn, dd, c_teacher, levels=lv, colors="w", linestyles="--", linewidths=0.8)
    ax.clabel(iso, fmt=lambda v: f"{v:.0e}", fontsize=7)
    if plan and np.isfinite(plan.get("teacher_params", np.nan)):
        ax.plot([plan["teacher_params"]], [plan["teacher_tokens"]], "r*", ms=14, label="planned teacher")
        ax.legend(loc="lower right")
    ax.set(xscale="log", yscale="log", xlabel="teacher parameters N_T", ylabel="teacher tokens D_T",
           title=f"N_S = {n_s:.3g}, D_S = {d_s:.3g}: L_S, and teacher isoFLOPs")
    ax.set_ylim(dd.min(), dd.max())
    _save(fig, path)


def plot_compute_curves(path, n_s: float, budgets, curves: dict) -> None:
    """Best student loss against total compute, one line per scenario (and supervised)."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, losses in curves.items():
        ax.plot(budgets, losses, "--" if name == "supervised" else "-", label=name)
    ax.set(xscale="log", xlabel="total compute (FLOPs)", ylabel="student loss",
           title=f"N_S = {n_s:.3g}: compute-optimal student loss")
    ax.legend(fontsize=8)
    _save(fig, path)
