"""Render a built report (tables.build_report) as text tables, report.md and report.json, written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..fsutil import atomic_write_text
from .tables import size_label

HEADERS = ["Configuration", "Target loss", "Steps", "Compute (PFLOPs)", "Teacher train", "Teacher inference",
           "Student", "Switch evaluations", "Savings", "Savings (exact FLOPs)", "Savings without evaluations"]
SCENARIO_ORDER = ("both", "inference", "pretraining", "best")  # worst case first, as in the table above
SCENARIO_HEADERS = {"both": "Pretraining + inference (above)", "inference": "Teacher exists: inference only",
                    "pretraining": "Logits stored: pretraining only", "best": "Teacher free"}
PAPER = ("The paper (Table 3, Wikitext-103, 10.8k steps) reports 8.0% savings for 17M→70M and 20.3% for "
         "17M→150M, teacher training included.")


def _loss(v):
    return f"{v:.4f}"


def _steps(v):
    return f"{v:,.0f}"


def _pf(v):
    return f"{v:.4g}"


def _pf_std(v):
    return f"{v:.2g}"


def _pct(v):
    return f"{v:.1f}%"


def fmt_stat(s: dict | None, fmt, none: str = "—", fmt_std=None) -> str:
    """'mean ± std' over the seeds that have a value, '(k/n reached)' when some do not, or `none`."""
    if not s or s["reached"] == 0:
        return none
    text = fmt(s["mean"]) if not s["std"] else f"{fmt(s['mean'])} ± {(fmt_std or fmt)(s['std'])}"  # no '± 0'
    return text + (f" ({s['reached']}/{s['n']} reached)" if s["reached"] < s["n"] else "")


def table_cells(row: dict) -> list[str]:
    name = row["configuration"] + (" (unfinished)" if row["unfinished"] else "")
    if row["target"]["reached"] == 0:  # no --target and no loss to take one from: nothing to measure against
        why = ("no evaluations" if row["role"] == "classical" else
               "no baseline" if row["baseline"] is None else "baseline has no evaluations")
        return [name, f"— ({why})"] + ["—"] * (len(HEADERS) - 2)
    never = "not reached"
    le = "≤ " if row["at_first_eval"] else ""
    cells = [name, fmt_stat(row["target"], _loss), le + fmt_stat(row["steps"], _steps, never),
             le + fmt_stat(row["compute_pflops"], _pf, never, _pf_std)]
    if row["role"] == "classical":
        cells += ["—", "—", fmt_stat(row["student_pflops"], _pf, never, _pf_std), "—", "—", "—", "—"]
        return cells
    cells += [fmt_stat(row[k], _pf, never, _pf_std) for k in ("teacher_train_pflops", "teacher_inference_pflops",
                                                               "student_pflops")]
    evals = fmt_stat(row.get("evals_pflops"), _pf, "not counted" if row["steps"]["reached"] else never, _pf_std)
    cells.append(evals + (" (reconstructed)" if row.get("evals_reconstructed") else ""))
    if row["baseline"] is None:
        return cells + ["— (no baseline)"] * 3
    none = never if row["steps"]["reached"] == 0 else "baseline not reached"
    return cells + [fmt_stat(row[k], _pct, none) for k in ("savings_pct", "savings_exact_pct",
                                                            "savings_without_evals_pct")]


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(out + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


def savings_table(report: dict) -> str:
    return text_table(HEADERS, [table_cells(r) for r in report["rows"]])


def _corpus_text(source, synthetic: bool) -> str:
    # data.source is the prepared data's source record ({kind, description, splits, holdout, ...}) or a string
    display = source.get("description") if isinstance(source, dict) else source
    blob = json.dumps(source, default=str).lower()
    holdout = source.get("holdout") if isinstance(source, dict) else None
    split_note = (f" Its {' and '.join(holdout)} split(s) are held out from the training text, not WikiText's files."
                  if holdout else "")
    if synthetic:
        return ("**SYNTHETIC text** (no real corpus was found): these numbers say nothing about language "
                "modelling and must not be compared with the paper.")
    if "wiki2015" in blob or "shared/corpus" in blob:
        same_eval = not holdout and "wiki.valid.raw" in blob if isinstance(source, dict) else True
        return (f"the shared corpus (`{display}`): 20,994 ordinary English Wikipedia articles from a 2015 dump "
                "(69 M words) in WikiText layout for training, where the paper trains on Wikitext-103's 28,475 "
                "Good and Featured articles (103 M words). "
                + ("Validation and test files are exactly WikiText's, so losses are measured on the paper's text, "
                   "but the training text (and the tokenizer trained on it) differ: " if same_eval else
                   "Training and evaluation text differ from the paper's: ")
                + "compare savings, not absolute losses, with the paper." + split_note)
    if "wikitext-103" in blob or "wikitext103" in blob:
        return f"Wikitext-103 (`{display}`), the paper's corpus." + split_note
    if source is None:
        return "unknown (summary.json missing or without data.source)."
    return (f"`{display}`, not the paper's Wikitext-103: absolute losses are not comparable with the paper's; "
            "savings are, with care." + split_note)


def describe_corpus(report: dict) -> str:
    """One line per distinct corpus: what it is, and how it differs from the paper's Wikitext-103."""
    seen: dict[str, tuple] = {}
    for r in report["runs"]:
        d = r.get("data") or {}
        key = json.dumps([d.get("source"), bool(d.get("synthetic"))], sort_keys=True, default=str)
        seen.setdefault(key, (d.get("source"), bool(d.get("synthetic")), []))[2].append(r["name"])
    parts = [f"- Runs {', '.join(sorted(names))}: {_corpus_text(src, syn)}" for src, syn, names in seen.values()]
    vocabs = sorted({r.get("vocab_size") for r in report["runs"] if r.get("vocab_size")})
    if vocabs and vocabs != [5000]:
        parts.append(f"- Vocabulary size {', '.join(map(str, vocabs))} (paper: 5,000).")
    return "\n".join(parts)


METHOD = """Steps and compute are where the validation loss **first** reaches the target, linearly interpolated in
both step and compute between the last evaluation above the target and the first at or below it, for the
classical and the distilled run alike ("≤": already below target at the first evaluation, an upper bound).
Savings = 1 − C_distilled(target) / C_classical(target) against the classical run of the same student (same
model shape and LR-schedule length, same seed where there is one). C_distilled includes the teacher's whole
training cost (counted from step 0), teacher inference while KD was on, student training, and the forward
passes of the evaluations that decided its switch (2NT each; "Switch evaluations"), shown separately; "Savings
without evaluations" leaves those out; for a run trained before the ledger counted evaluations they are
reconstructed from its config and metrics ("reconstructed"). Compute is the paper's proxy C ≈ 6NT (2NT for
teacher inference); "exact FLOPs" adds attention. With several seeds of a config: mean ± sample std over the seeds."""


def _clean(obj):
    """JSON without NaN/inf (not valid JSON): they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _without_evals(row: dict) -> str:
    """The same over seeds without the evaluations that decided the switch, where they were charged."""
    w = row.get("savings_without_evals_pct") or {}
    if w.get("ci95") is None or w["mean"] == row["savings_pct"]["mean"]:
        return ""
    lo, hi = w["ci95"]
    return f" Without the evaluations that decided the switch: {w['mean']:+.1f}% ± {w['std']:.1f} [{lo:+.1f}, {hi:+.1f}]."


def verdict_word(lo: float, hi: float) -> str:
    """What a saving's 95% interval says."""
    return "a real saving" if lo > 0 else "a real loss" if hi < 0 else "not distinguishable from 0"


def significance_lines(report: dict) -> list[str]:
    """A plain statement per distilled configuration: is its saving distinguishable from 0 over its seeds?"""
    lines = []
    for row in report["rows"]:
        st = row.get("savings_pct")
        if not st or (st.get("mean") is None and not st.get("n")):
            continue
        if st.get("mean") is None:
            lines.append(f"- {row['configuration']}: no seed reached the target: no saving.")
            continue
        missed = st["n"] - st["reached"]
        if missed:  # a seed that never reaches the target has no saving: a mean over the others would flatter
            lines.append(f"- {row['configuration']}: {missed} of {st['n']} seeds never reached the target, so there "
                         f"is no saving to claim (the {st['reached']} that did: {st['mean']:+.1f}% on average).")
        elif st.get("distinguishable_from_zero") is None:
            lines.append(f"- {row['configuration']}: {st['mean']:+.1f}% from {st['reached']} seed: one seed cannot "
                         "tell a saving from noise; run more seeds (recipe `seeds:`).")
        else:
            lo, hi = st["ci95"]
            verdict = verdict_word(lo, hi)
            lines.append(f"- {row['configuration']}: {st['mean']:+.1f}% ± {st['std']:.1f} over {st['reached']} seeds, "
                         f"95% interval [{lo:+.1f}, {hi:+.1f}]: **{verdict}**." + _without_evals(row))
    return ["## Is the saving real?", ""] + lines + [""] if lines else []


def _point(point: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]} {v:g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                     for k, v in point.items())


def tuning_lines(report: dict) -> list[str]:
    """One plain line per tuning grid: the chosen point, what the grid cost, and whether the best is at an edge."""
    lines = []
    for g in report.get("tuning") or []:
        cost = (f"the grid ({len(g['points'])} points) cost {g['grid_pflops']:.4g} PFLOPs"
                + (" per seed" if g["seeds"] > 1 else "")
                + (f", {g['grid_cost_ratio']:.1f}x the chosen run" if g.get("grid_cost_ratio") else "")
                if g.get("grid_pflops") is not None else "the grid's cost is unknown")
        edge = (f"; the best {', '.join(g['edge'])} is at the edge of its grid: the optimum may lie outside"
                if g["edge"] else "")
        lines.append(f"- {g['configuration']} ({g['policy']}): best {_point(g['chosen'])} by {g['chosen_by']}; "
                     f"{cost}{edge}.")
    return lines


def tuning_section(report: dict) -> list[str]:
    grids = report.get("tuning") or []
    if not grids:
        return []
    rows = []
    for g in grids:
        for p in sorted(g["points"], key=lambda p: [str(v) if not isinstance(v, (int, float)) else v
                                                    for v in p["point"].values()]):
            loss = "?" if p["final_val_loss"] is None else _loss(p["final_val_loss"]) + (
                f" (mean of {p['n']})" if p["n"] > 1 else "") + (" (unfinished)" if p["unfinished"] else "")
            rows.append([g["configuration"], _point(p["point"]), loss,
                         "?" if p["compute_pflops"] is None else _pf(p["compute_pflops"]),
                         "**chosen**" if p["chosen"] else ""])
    return ["## Best against best: the tuning grids", "",
            "Each tuned configuration (a recipe's `tune:` block) is represented by its best grid point, chosen by "
            "the final validation loss (the mean over seeds when there are several; the test split never "
            "chooses). The target is the chosen classical point's final loss and every saving above compares "
            "one chosen run against one chosen run; the other points are not measured. What the tuning cost is "
            "stated beside it: the compute of every grid point (one teacher's training counted once).", "",
            markdown_table(["Configuration", "Point", "Final val loss", "Whole-run compute (PFLOPs)", ""], rows), "",
            *tuning_lines(report), ""]


def prediction_section(report: dict) -> list[str]:
    """Predicted (before training, by the planner) against measured savings."""
    runs = [r for r in report["runs"] if r.get("prediction")]
    if not runs:
        return []

    def pct(v):
        return "—" if v is None else f"{v:+.1f}%"

    rows = []
    for r in runs:
        p = r["prediction"]
        if "error" in p:
            rows.append([r["name"], "—", "—", pct(r["savings_pct"]), f"no prediction: {p['error']}"])
            continue
        laws = p["laws"] + (" (extrapolated)" if p.get("extrapolated") else "")
        err = "—" if p["error_points"] is None else f"{p['error_points']:+.1f} points"
        predicted = pct(p["saving_pct"]) if p["saving_pct"] is not None else (  # say why there is no number
            f"none: by the law the student never gets within {p['margin']:.0%} of the teacher "
            f"(best switch: {p['best_saving_pct']:+.1f}%)")
        rows.append([r["name"], laws, predicted, pct(r["savings_pct"]), err])
    return ["## Predicted against measured", "",
            "Before each distilled run trained, `bootdistill plan`'s bootstrapped prediction (switch at the run's "
            "margin) was written to its prediction.json. Error = measured − predicted. A large error means: do not "
            "trust the planner at this scale without laws fitted on runs like these (`bootdistill fit`, then "
            "`planner: {laws: scaling_fit.json}` in the recipe).", "",
            markdown_table(["Run", "Laws", "Predicted saving", "Measured saving", "Error"], rows), ""]


def accounting_section(report: dict) -> list[str]:
    """The saving with the teacher counted four ways (distillation scaling laws, Table 2), and the number of
    students that must share one teacher for each to save: a user who already has a teacher, or will distil
    several students from it, reads their case here."""
    rows = [r for r in report["rows"] if r.get("teacher_accounting") and r.get("baseline")]
    if not rows:
        return []
    never = "not reached"

    def students(st):
        if not st or st["reached"] == 0:
            return "never"  # not reached, or even a free teacher costs more than the baseline
        return fmt_stat(st, lambda v: f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}")

    cells = [[r["configuration"]] + [fmt_stat(r["teacher_accounting"][sc], _pct, never) for sc in SCENARIO_ORDER]
             + [students(r["teacher_accounting"]["break_even_students"])] for r in rows]
    return ["## The teacher's cost, counted four ways", "",
            "The table above counts the teacher's whole training and its inference (the worst case). The "
            "distillation scaling laws (Table 2) name three other cases, read here from the same runs' ledgers at "
            "the crossing: the teacher's logits stored and reused (its inference not counted), the teacher already "
            "there (only its inference counted), and a free teacher. The last column is how many students of this "
            "kind must share the one teacher (its training split between them, each paying its own inference) for "
            "each to reach the target with less compute than its baseline: 1 means this run alone already saves; "
            "never means it does not reach the target, or its own training plus the teacher's inference already "
            "cost at least the baseline.", "",
            markdown_table(["Configuration"] + [SCENARIO_HEADERS[sc] for sc in SCENARIO_ORDER]
                           + ["Students sharing the teacher to save"], cells), ""]


def sharing_lines(report: dict) -> list[str]:
    """A plain line per distilled configuration: what it saves with a teacher you already have, and how many
    students must share a teacher trained for them."""
    lines = []
    for row in report["rows"]:
        acc = row.get("teacher_accounting")
        # a seed that never gets there has no saving to share (the significance lines say so)
        if not acc or not row.get("baseline") or acc["inference"]["reached"] < acc["inference"]["n"]:
            continue
        k = acc["break_even_students"]
        every_seed = max((v for v in k["values"] if v is not None), default=None)  # enough for every seed to save
        share = ("no number of students sharing it saves" if not k["reached"] else
                 f"no number of students sharing it saves in {k['n'] - k['reached']} of {k['n']} seeds"
                 if k["reached"] < k["n"] else "it pays on its own" if every_seed == 1 else
                 f"it pays once {every_seed} students share it" + (" (enough for every seed)" if k["n"] > 1 else ""))
        lines.append(f"- {row['configuration']}: with a teacher you already have (its inference counted) "
                     f"{acc['inference']['mean']:+.1f}%; training the teacher for it, {share}.")
    return lines


def diagnostics_section(report: dict) -> list[str]:
    """Where KD helps (weak-teacher paper; SALT §5.4): OOD vs in-domain loss, loss by teacher-difficulty third."""
    runs = [r for r in report["runs"] if r.get("diagnostics")]
    if not runs:
        return []
    md = ["## Where KD helps: out-of-domain loss and loss by teacher difficulty", "",
          "Test tokens are split into thirds by the teacher's loss on them (easy / medium / hard: SALT §5.4). "
          f"Out-of-domain text: {runs[0]['diagnostics']['ood_source']}. Up to 200k tokens each; Δ = student − "
          "its classical baseline (negative: the distilled student is better).", ""]
    rows = []
    for r in runs:
        d = r["diagnostics"]["models"]
        for role in ("teacher", "baseline", "student"):
            if role not in d:
                continue
            m = d[role]
            cells = [m["test_loss"], m["ood_loss"]] + [m["buckets"][b] for b in ("easy", "medium", "hard")]
            rows.append([f"{r['name']}: {role}"] + [f"{v:.4f}" for v in cells])
        if "baseline" in d:
            s, b = d["student"], d["baseline"]
            delta = [s["test_loss"] - b["test_loss"], s["ood_loss"] - b["ood_loss"]] + \
                [s["buckets"][k] - b["buckets"][k] for k in ("easy", "medium", "hard")]
            rows.append([f"{r['name']}: **Δ**"] + [f"{v:+.4f}" for v in delta])
    return md + [markdown_table(["Model", "Test loss", "OOD loss", "Easy", "Medium", "Hard"], rows), ""]


def model_lines(report: dict) -> list[str]:
    """Which runs use the llama block, and which start from existing weights (and whether their compute counts)."""
    lines = []
    llamas = sorted(r["name"] for r in report["runs"] if r.get("arch") == "llama")
    if llamas:
        lines.append(f"- Runs {', '.join(llamas)} use the llama block (RoPE, RMSNorm, SwiGLU); the others the paper's GPT-2 block.")
    for r in report["runs"]:
        if r.get("init"):
            lines.append(f"- Run {r['name']} starts from the weights of `{r['init']['from']}`; their training compute: "
                         f"{r['init']['train_flops_note']}.")
    return lines + [""] if lines else []


def render_markdown(report: dict, plots: dict[str, str]) -> str:
    md = ["# bootdistill report: compute to target loss, teacher included", "",
          "## Corpus", "", describe_corpus(report), "",
          "## Savings (cf. paper Table 3)", "",
          f"Target loss: {report['target_rule']}" + ("" if report["target"] is not None else
          " (its validation batches are those of the curves below; the full-split final loss is in the runs table)")
          + ".", "", markdown_table(HEADERS, [table_cells(r) for r in report["rows"]]), "",
          "**How the saving is measured.** " + report.get("measurement", ""), "", METHOD, "", PAPER, ""]
    if report["teachers"]:
        rows = [[t["name"], size_label(t.get("n_params")),
                 _steps(t["steps"]) if t.get("steps") is not None else "?",
                 _loss(t["final_val_loss"]) if t.get("final_val_loss") is not None else "?",
                 _pf(t["compute_pflops"]) if t.get("compute_pflops") is not None else "?",
                 ", ".join(t.get("students", []))] for t in report["teachers"]]
        md += ["## Teachers", "", markdown_table(["Teacher", "Params", "Steps", "Val loss", "Training compute (PFLOPs)",
                                                  "Students"], rows), ""]
    rows = [[r["name"], r["policy"], str(r["seed"]), "done" if r["finished"] else "**unfinished**",
             _steps(r["steps"]) if r["steps"] is not None else "?",
             size_label(r.get("n_params")),
             _loss(r["final_val_loss"]) if r["final_val_loss"] is not None else "?",
             _loss(r["test_loss"]) if r["test_loss"] is not None else "?",
             _loss(r["test_bpb"]) if r.get("test_bpb") is not None else "?",
             _pf(r["compute_pflops"]) if r["compute_pflops"] is not None else "?",
             str(r["kd_stopped_step"]) if r["kd_stopped_step"] is not None else "—",
             r["baseline"] or "—", r["teacher"] or "—"] for r in report["runs"]]
    md += ["## Runs", "", markdown_table(["Run", "Policy", "Seed", "Status", "Steps", "Params",
                                          "Final val loss (full split)", "Test loss", "Test bits/byte", "Compute (PFLOPs)",
                                          "KD stopped at step", "Baseline", "Teacher"], rows), ""]
    md += model_lines(report)
    md += tuning_section(report) + accounting_section(report) + prediction_section(report) + diagnostics_section(report)
    md += significance_lines(report)
    if report["warnings"]:
        md += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    titles = {"loss_vs_compute": "Validation loss vs compute (Fig. 3)", "loss_vs_step": "Validation loss vs step (Fig. 2)",
              "lr_vs_loss": "Learning rate vs validation loss (Fig. 7)",
              "positional_loss": "Test loss per 64-token position bucket (Figs. 4-5)",
              "savings": "Savings by configuration, teacher included",
              "savings_by_setting": "Savings against each setting varied",
              "switch": "Around the KD switch: train loss, gradient norm, validation entropy"}
    if plots:
        md += ["## Plots", ""]
        for key, file in plots.items():
            md += [f"### {titles.get(key, key)}", "", f"![{titles.get(key, key)}]({file})", ""]
    return "\n".join(md)


def write_report(report: dict, plots: dict[str, str], out: Path) -> dict[str, Path]:
    out = Path(out)
    paths = {"md": out / "report.md", "json": out / "report.json"}
    doc = _clean({**report, "corpus": describe_corpus(report), "plots": plots})
    atomic_write_text(paths["json"], json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(paths["md"], render_markdown(report, plots))
    for p in paths.values():
        p.chmod(0o644)  # mkstemp makes 0600; a report is meant to be shared
    return paths
