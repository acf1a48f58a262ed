"""Compute-to-target arithmetic: pair students with classical baselines, find where each run
first reaches the target loss (interpolated), and the savings, teacher included. Seeds aggregate to mean ± std."""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..compute import SCENARIOS
from ..errors import BootdistillError
from ..experiment.prediction import read_prediction
from .archive import snapshot_steps
from .crossing import final_loss, robust_crossing, whole_run
from .diagnostics import cached_diagnostics
from .eval_cost import reconstruct_flops_eval
from .runs import BLOCK_KEYS, RUN_HASH, SEED_SUFFIX, Run, finite, load_run
from .tuning import choose

PFLOP = 1e15
# columns interpolated at the crossing; flops_teacher_train is constant, so it interpolates to itself
CROSS_KEYS = ("step", "tokens", "flops_student", "flops_teacher_inference", "flops_teacher_train", "flops_total",
              "flops_total_exact", "flops_eval", "flops_eval_exact")
CROSSING_DEFINITION = (
    "C_classical is the classical run's whole scheduled compute; the target is its final loss on the final "
    "evaluation set (the whole split unless train.final_eval_sequences limits it); C_distilled is where the "
    "distilled run first reaches the target on that same set, located by re-evaluating its evaluation "
    "snapshots around the crossing and interpolating compute linearly between the two snapshots around it. "
    "Runs without snapshots fall back to the in-training validation subset (flagged). C_distilled also counts "
    "the forward FLOPs of the in-training evaluations that decided its switch (a bootstrapped run switching on "
    "validation: every evaluation up to the switch, the teacher's validation loss and the KD diagnostics "
    "included); a classical run needs none, and the savings without them are shown beside. Final and "
    "report-time evaluations are the same for both arms and are not counted.")


def first_crossing(evals: list[dict], target: float) -> dict | None:
    """Step, tokens and compute at which the validation loss first reaches `target`, linearly interpolated
    between the evaluation before (above target) and the one at or below it. None when never reached.
    When the very first evaluation is already below target there is nothing to interpolate from: its values
    are returned (an upper bound) with at_first_eval=True."""
    prev = None
    for row in evals:
        if row["val_loss"] <= target:
            if prev is None:
                out = {k: float(row.get(k, math.nan)) for k in CROSS_KEYS}
                out["at_first_eval"] = True
                return out
            f = (prev["val_loss"] - target) / (prev["val_loss"] - row["val_loss"])
            out = {k: float(prev.get(k, math.nan)) + f * (float(row.get(k, math.nan)) - float(prev.get(k, math.nan)))
                   for k in CROSS_KEYS}
            out["at_first_eval"] = False
            return out
        prev = row
    return None


def savings(distilled: dict | None, classical: dict | None, key: str = "flops_total") -> float | None:
    """1 - C_distilled / C_classical at the target, in %; None when either never reaches it."""
    if distilled is None or classical is None or not classical.get(key):
        return None
    return 100.0 * (1.0 - distilled[key] / classical[key])


def teacher_accounting(distilled: dict | None, classical: dict | None) -> dict | None:
    """The saving under each accounting of the teacher (distillation scaling laws, Table 2), from the ledger at
    the crossing, and how many students must share one teacher for each to come out ahead (teacher pretraining
    split between them, inference paid by each). The evaluations that decided the switch count with the student.
    None when either never reaches the target."""
    if distilled is None or classical is None or not classical.get("flops_total"):
        return None
    base = classical["flops_total"]
    student, inference = distilled.get("flops_student"), distilled.get("flops_teacher_inference")
    pretraining = distilled.get("flops_teacher_train")
    student = student + (distilled.get("evals_charged") or 0.0) if finite(student) else student
    if not all(finite(v) for v in (base, student, inference, pretraining)):
        return None  # a ledger without the split (metrics from before it existed): only the total is known
    out = {sc: 100.0 * (1.0 - (student + dl * inference + dp * pretraining) / base)
           for sc, (dl, dp) in SCENARIOS.items()}
    margin = base - student - inference  # what the student saves before paying for the teacher's training
    # the smallest whole k with student + inference + pretraining / k < base; None: no number of students pays
    out["break_even_students"] = (None if margin <= 0 else 1 if pretraining <= 0
                                  else math.floor(pretraining / margin) + 1)
    return out


def _switch_step(run: Run) -> int | None:
    return next((e["step"] for e in run.evals if any(str(v).startswith("kd_stopped") for v in e.get("events") or [])),
                None)


def charged_evals(run: Run, crossing: dict | None, key: str = "flops_eval") -> float | None:
    """Evaluation FLOPs that decided a distilled run's switch, counted up to its crossing: a bootstrapped run
    switching on validation needs every evaluation until its switch (all of them while it has not switched);
    other policies decide nothing by evaluating (0). None: a ledger from before evaluations were counted."""
    if crossing is None:
        return None
    switch_on = ((run.summary or {}).get("policy") or {}).get("switch_on") or run.cfg("distill", "switch_on", "val")
    if run.policy != "bootstrapped" or switch_on != "val":
        return 0.0
    at_cross = crossing.get(key)
    if not finite(at_cross):
        return None
    switch = _switch_step(run)
    at_switch = next((e.get(key) for e in run.evals if e.get("step") == switch), None) if switch is not None else None
    return min(at_cross, at_switch) if finite(at_switch) else at_cross


def with_evals(run: Run, crossing: dict | None, warn: list) -> dict | None:
    """The crossing with the evaluations that decided the switch added to its compute (`evals_charged`)."""
    if crossing is None:
        return None
    ev, ev_exact = charged_evals(run, crossing), charged_evals(run, crossing, "flops_eval_exact")
    if ev is None:
        warn.append(f"{run.name}: its ledger has no flops_eval (trained before evaluations were counted): its "
                    "saving counts none of the evaluations that decided its switch")
        return {**crossing, "evals_charged": None}
    if run.flops_eval_reconstructed and ev:
        warn.append(f"{run.name}: its ledger has no flops_eval (trained before evaluations were counted): the "
                    "evaluations that decided its switch are reconstructed from its config and metrics (every "
                    "scheduled evaluation up to the switch, its KD diagnostics and the teacher's validation loss)")
    return {**crossing, "flops_total": crossing["flops_total"] + ev, "evals_charged": ev,
            "evals_reconstructed": run.flops_eval_reconstructed,
            "flops_total_exact": crossing.get("flops_total_exact", math.nan) + (ev_exact or 0.0)}


def stat(values: list) -> dict:
    """mean ± sample std over the values that exist; `n` counts all, `reached` the ones that exist."""
    have = [float(v) for v in values if v is not None and math.isfinite(v)]
    return {"mean": statistics.fmean(have) if have else None,
            "std": statistics.stdev(have) if len(have) > 1 else None,
            "n": len(values), "reached": len(have), "values": list(values)}


def significance(st: dict) -> dict:
    """95% t-interval of a mean saving over seeds, and whether it excludes 0 (one seed: unknown)."""
    from scipy.stats import t as student_t  # scipy loads only for intervals over seeds: reports start faster

    if st is None or st["reached"] < 2 or st["std"] is None:
        return {"ci95": None, "distinguishable_from_zero": None}
    half = student_t.ppf(0.975, st["reached"] - 1) * st["std"] / math.sqrt(st["reached"])
    lo, hi = st["mean"] - half, st["mean"] + half
    return {"ci95": [float(lo), float(hi)], "distinguishable_from_zero": bool(lo > 0 or hi < 0)}


@dataclass
class Group:
    """Runs of one config that differ only in train.seed."""

    runs: list[Run]
    label: str = ""
    baseline: "Group | None" = None
    is_teacher: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def policy(self) -> str:
        return self.runs[0].policy


def size_label(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.3g}M" if n >= 1e5 else f"{n / 1e3:.3g}K"


def _label(runs: list[Run]) -> str:
    names = [r.name for r in runs]
    stripped = {SEED_SUFFIX.sub("", RUN_HASH.sub("", n)) for n in names}
    base = names[0] if len(names) == 1 else stripped.pop() if len(stripped) == 1 and "" not in stripped else \
        os.path.commonprefix(names).rstrip("-_.") or "+".join(names)
    seeds = f", {len(runs)} seeds" if len(runs) > 1 else ""
    return f"{size_label(runs[0].n_params_non_embedding)} {runs[0].policy.capitalize()} ({base}{seeds})"


def group_runs(runs: list[Run]) -> list[Group]:
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.identity, []).append(r)
    out = [Group(sorted(g, key=lambda r: (str(r.seed), r.name))) for g in groups.values()]
    for g in out:
        g.label = _label(g.runs)
    return out


def find_baseline(run: Run, runs: list[Run], overrides: dict[str, Path] | None = None) -> Run | None:
    """The classical run with the same model shape; the same seed, then the same LR-schedule length, preferred.

    A distilled student may run a shorter schedule than its baseline (that is how it turns a KD head start into
    fewer steps), so the schedule length is a preference, not a requirement."""
    for key in (run.name, str(run.path)):
        if overrides and key in overrides:
            target = Path(overrides[key]).resolve()
            return next((r for r in runs if r.path == target), None) or load_run(target)
    cands = [r for r in runs if r.policy == "classical" and r is not run and r.shape == run.shape]
    same_steps = run.cfg("train", "total_steps")
    cands.sort(key=lambda r: (r.seed != run.seed, r.cfg("train", "total_steps") != same_steps))
    return (cands or [None])[0]


def find_teacher(run: Run, runs: list[Run]) -> Run | None:
    for p in run.teacher_paths():
        for r in runs:
            if p == r.path or r.path in p.parents:
                return r
    return None


def _final(run: Run, key: str):
    if run.summary and key in (run.summary.get("flops") or {}):
        return run.summary["flops"][key]
    return run.last_row.get(key)


def _run_record(run: Run, res: dict) -> dict:
    s = run.summary or {}
    cross = res["crossing"]
    total = _final(run, "flops_total")
    return {
        "name": run.name, "path": str(run.path), "policy": run.policy, "seed": run.seed, "finished": run.finished,
        "steps": s.get("steps", run.last_row.get("step")), "n_params": s.get("n_params"),
        "n_params_non_embedding": run.n_params_non_embedding, "vocab_size": run.shape[0],
        "final_val_loss": s.get("final_val_loss"), "last_eval_val_loss": run.final_eval_loss,
        "test_loss": s.get("test_loss"), "final_val_bpb": s.get("final_val_bpb"), "test_bpb": s.get("test_bpb"),
        "compute_pflops": total / PFLOP if finite(total) else None,
        "kd_stopped_step": (s.get("policy") or {}).get("kd_stopped_step"),
        "teacher": res["teacher"].name if res["teacher"] else None,
        "baseline": res["baseline"].name if res["baseline"] else None,
        "target": res["target"], "crossing": cross, "measured_on": res.get("measured_on"),
        "savings_pct": res["savings"], "savings_exact_pct": res["savings_exact"],
        "savings_without_evals_pct": res.get("savings_without_evals"),
        "evals_charged_pflops": (res.get("charged") or {}).get("evals_charged") / PFLOP
        if finite((res.get("charged") or {}).get("evals_charged")) else None,
        "evals_reconstructed": bool((res.get("charged") or {}).get("evals_reconstructed")),
        "teacher_accounting": res.get("accounting"),
        "data": s.get("data") or {"source": run.cfg("data", "corpus"), "synthetic": None},
        "arch": run.shape[-len(BLOCK_KEYS)], "init": s.get("init"),
        "diagnostics": res.get("diagnostics"),
        "prediction": _prediction(run, res["savings"]),
    }


def _prediction(run: Run, measured: float | None) -> dict | None:
    """The planner's prediction written before the run trained, beside the measured saving."""
    pred = read_prediction(run.path)
    if pred is None:
        return None
    predicted = pred.get("saving_pct")
    error = measured - predicted if measured is not None and predicted is not None else None
    return {**pred, "measured_pct": measured, "error_points": error}


def _with_significance(st: dict) -> dict:
    return {**st, **significance(st)}


def _group_row(g: Group, per: dict) -> dict:
    res = [per[r.path] for r in g.runs]

    def at(key, scale=1.0):
        return stat([c["crossing"][key] / scale if c["crossing"] else None for c in res])

    baselines = sorted({c["baseline_group"].label for c in res if c.get("baseline_group")})
    return {
        "configuration": g.label, "policy": g.policy, "role": "classical" if g.policy == "classical" else "distilled",
        "runs": [r.name for r in g.runs], "seeds": [r.seed for r in g.runs],
        "unfinished": [r.name for r in g.runs if not r.finished], "baseline": ", ".join(baselines) or None,
        "target": stat([c["target"] for c in res]),
        "steps": at("step"), "tokens": at("tokens"),
        "compute_pflops": at("flops_total", PFLOP), "compute_exact_pflops": at("flops_total_exact", PFLOP),
        "teacher_train_pflops": at("flops_teacher_train", PFLOP),
        "teacher_inference_pflops": at("flops_teacher_inference", PFLOP),
        "student_pflops": at("flops_student", PFLOP),
        "at_first_eval": any(c["crossing"] and c["crossing"]["at_first_eval"] for c in res),
        "savings_pct": _with_significance(stat([c["savings"] for c in res])) if g.policy != "classical" else None,
        "savings_exact_pct": stat([c["savings_exact"] for c in res]) if g.policy != "classical" else None,
        "savings_without_evals_pct": _with_significance(stat([c["savings_without_evals"] for c in res]))
        if g.policy != "classical" else None,
        "evals_pflops": stat([(c.get("charged") or {}).get("evals_charged") / PFLOP
                              if finite((c.get("charged") or {}).get("evals_charged")) else None for c in res]),
        "evals_reconstructed": [r.name for r, c in zip(g.runs, res)
                                if (c.get("charged") or {}).get("evals_reconstructed")],
        "teacher_accounting": None if g.policy == "classical" else {
            key: stat([(c.get("accounting") or {}).get(key) for c in res])
            for key in (*SCENARIOS, "break_even_students")},
        "final_val_loss": stat([r.summary.get("final_val_loss") if r.summary else r.final_eval_loss for r in g.runs]),
        "final_compute_pflops": stat([_final(r, "flops_total") / PFLOP if finite(_final(r, "flops_total")) else None
                                      for r in g.runs]),
    }


def _measure(r: Run, b: Run | None, target: float | None, split: str, warn: list, device: str = "auto") -> dict:
    """Target and crossing of one run: on the final evaluation set when the runs allow it (report/crossing.py),
    else on the in-training validation subset (noisier; said in a warning)."""
    own_target = r.policy == "classical" and b is None
    ref = r if own_target else b
    # the final set needs snapshots to locate a crossing on it (held-out splits have nothing else)
    if target is None and ref is not None and ref.finished and final_loss(ref, split) is not None \
            and (snapshot_steps(r.path) or split != "val"):
        tgt = final_loss(ref, split)
        if own_target:
            return {"target": tgt, "crossing": whole_run(r, CROSS_KEYS), "measured_on": f"final {split} set"}
        if r.finished:
            subset = first_crossing(r.evals, b.final_eval_loss) if b.final_eval_loss is not None else None
            return {"target": tgt, "crossing": robust_crossing(r, tgt, subset, split, CROSS_KEYS, device),
                    "measured_on": f"final {split} set"}
    if split != "val":
        raise BootdistillError(f"--split {split} needs finished runs whose students kept evaluation snapshots "
                               "(train.eval_snapshots=true): rerun them with it")
    if r.policy != "classical":
        warn.append(f"{r.name}: crossing read off the in-training validation subset (noisy): train with "
                    "train.eval_snapshots=true and final_eval_sequences=null for the robust measurement")
    tgt = target if target is not None else (r.final_eval_loss if own_target
                                             else b.final_eval_loss if b is not None else None)
    return {"target": tgt, "crossing": first_crossing(r.evals, tgt) if tgt is not None else None,
            "measured_on": "in-training validation subset"}


def build_report(runs: list[Run], target: float | None = None, baselines: dict[str, str] | None = None,
                 split: str = "val", diagnostics: bool = True, device: str = "auto") -> dict:
    """Everything the report shows, as plain data: `rows` (Table 3), `teachers`, `runs`, `warnings`.
    `device` evaluates snapshots and checkpoints where the report needs them (auto: a CUDA GPU when there is one)."""
    if target is not None and not (finite(target) and target > 0):
        raise BootdistillError(f"--target must be a positive loss, got {target}")
    runs = list(runs)
    warn: list[str] = []
    for key, path in (baselines or {}).items():
        if not any(r.path == Path(path).resolve() for r in runs):
            runs.append(load_run(path))  # the CLI passes it among `runs` already, so it is plotted too
        if not any(key in (r.name, str(r.path)) for r in runs):
            raise BootdistillError(f"--baseline {key}=...: no run named '{key}' among the run directories given")
    if split != "val":  # a held-out split is measured once, at the end: unfinished runs wait, the rest report
        waiting = {r.path for r in runs if not r.finished or (r.policy != "classical" and not getattr(
            find_baseline(r, runs, baselines), "finished", True))}
        warn += [f"{r.name}: left out of the {split} report until it and its baseline have finished"
                 for r in runs if r.path in waiting]
        runs = [r for r in runs if r.path not in waiting]
        if not runs:
            raise BootdistillError(f"--split {split}: no finished runs yet; the held-out split is measured at the end")
    if not any(r.metrics for r in runs):
        raise BootdistillError(f"no metrics to report: metrics.jsonl is missing or empty in {', '.join(str(r.path) for r in runs)}; "
                               "a run's curve and crossings come from it")
    for r in runs:
        if not r.finished:
            warn.append(f"{r.name}: unfinished (no summary.json): using its metrics so far")
        if not r.metrics:
            warn.append(f"{r.name}: NO METRICS ({r.path / 'metrics.jsonl'} is missing or empty): it has no curve, "
                        "crossing or saving in this report")
        elif not r.evals:
            warn.append(f"{r.name}: no validation evaluations in metrics.jsonl yet")

    # best against best: of each tuning grid only the chosen point is measured (a teacher or a named baseline stays)
    for r in runs:  # runs trained before the ledger counted evaluations: rebuilt, so their switch is charged too
        r.flops_eval_reconstructed = r.flops_eval_reconstructed or reconstruct_flops_eval(r)
    dropped, tuning = choose(runs, warn)
    keep = {Path(p).resolve() for p in (baselines or {}).values()} | \
        {t.path for t in (find_teacher(r, runs) for r in runs) if t is not None}
    runs = [r for r in runs if r.path not in dropped or r.path in keep]

    per: dict[Path, dict] = {}
    for r in runs:
        b = None if r.policy == "classical" else find_baseline(r, runs, baselines)
        if b is not None and b.policy != "classical":
            warn.append(f"{r.name}: baseline {b.name} is not a classical run (policy {b.policy})")
        if r.policy != "classical" and b is None:
            warn.append(f"{r.name}: no classical baseline with the same model shape"
                        + ("" if target is not None else ": no target, so no crossing or savings; pass --target"))
        if b is not None and (r.summary or {}).get("data", {}).get("tokenizer_sha256") != \
                (b.summary or {}).get("data", {}).get("tokenizer_sha256") and r.finished and b.finished:
            warn.append(f"{r.name}: its baseline {b.name} used another tokenizer: losses are not comparable")
        per[r.path] = {"baseline": b, "teacher": find_teacher(r, runs), **_measure(r, b, target, split, warn, device)}
    for r in runs:
        p, b = per[r.path], per[r.path]["baseline"]
        base_cross = per[b.path]["crossing"] if b is not None else None
        p["charged"] = with_evals(r, p["crossing"], warn) if r.policy != "classical" else p["crossing"]
        p["savings"], p["savings_exact"] = savings(p["charged"], base_cross), \
            savings(p["charged"], base_cross, "flops_total_exact")
        p["savings_without_evals"] = savings(p["crossing"], base_cross)
        p["accounting"] = teacher_accounting(p["charged"], base_cross) if r.policy != "classical" else None
        teacher_only = r.policy == "classical" and any(per[s.path]["teacher"] is r for s in runs) and \
            not any(per[s.path]["baseline"] is r for s in runs)
        if p["target"] is not None and p["crossing"] is None and not teacher_only:
            on_final_set = p.get("measured_on", "").startswith("final")
            best = (final_loss(r, split) if on_final_set else min((e["val_loss"] for e in r.evals), default=None))
            best = math.nan if best is None else best
            warn.append(f"{r.name}: never reaches the target loss {p['target']:.4f} "
                        f"({'its final loss on that set' if on_final_set else 'best'} {best:.4f})")
        if b is not None and not b.finished:
            warn.append(f"{r.name}: its baseline {b.name} is unfinished: the target is its latest loss so far")

    if diagnostics:
        for r in runs:
            p = per[r.path]
            if r.policy != "classical" and r.finished and p["teacher"] is not None:
                p["diagnostics"] = cached_diagnostics(r, p["baseline"], p["teacher"], r.cfg("train", "threads"),
                                                      device)

    groups = group_runs(runs)
    group_of = {r.path: g for g in groups for r in g.runs}
    for r in runs:
        if per[r.path]["baseline"] is not None:
            per[r.path]["baseline_group"] = group_of[per[r.path]["baseline"].path]
    teacher_paths = {per[r.path]["teacher"].path for r in runs if per[r.path]["teacher"]}
    is_baseline = {per[r.path]["baseline"].path for r in runs if per[r.path]["baseline"]}

    # Table 3 order: each classical baseline, then the students distilled against it, then the rest
    shown = [g for g in groups if not all(r.path in teacher_paths and r.path not in is_baseline for r in g.runs)]
    ordered: list[Group] = []
    for g in shown:
        if g.policy == "classical" and g not in ordered:
            ordered.append(g)
            ordered += [d for d in shown if d.policy != "classical" and d not in ordered
                        and group_of.get(getattr(per[d.runs[0].path]["baseline"], "path", None)) is g]
    ordered += [g for g in shown if g not in ordered]

    teachers = []
    for r in runs:
        if r.path in teacher_paths:
            rec = _run_record(r, per[r.path])
            rec["students"] = sorted({group_of[s.path].label for s in runs if per[s.path]["teacher"] is r})
            teachers.append(rec)
    seen = set()
    for r in runs:  # teachers known only from a student's summary.json
        t = (r.summary or {}).get("teacher")
        if t and per[r.path]["teacher"] is None and t.get("checkpoint") not in seen:
            seen.add(t.get("checkpoint"))
            teachers.append({"name": Path(str(t.get("checkpoint"))).name, "path": t.get("checkpoint"),
                             "n_params": t.get("n_params"), "final_val_loss": t.get("val_loss"),
                             "compute_pflops": t["train_flops"] / PFLOP if finite(t.get("train_flops")) else None,
                             "students": [group_of[r.path].label], "finished": True, "steps": None,
                             "note": "run directory not given: from the student's summary.json"})
    return {
        "target_rule": (f"given: {target}" if target is not None else
                        f"the classical baseline's final {split} loss; its compute is its whole scheduled run"),
        "split": split,
        "measurement": CROSSING_DEFINITION,
        "target": target,
        "rows": [_group_row(g, per) for g in ordered],
        "teachers": teachers,
        "runs": [_run_record(r, per[r.path]) for r in runs],
        "tuning": tuning,
        "warnings": list(dict.fromkeys(warn)),
    }
