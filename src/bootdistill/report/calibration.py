"""The planner calibrated on the user's own scale (`bootdistill calibrate`): fit the supervised law on a recipe's
classical runs and the distillation law on its distilled ones (of each tuning grid only the chosen point), then
predict the saving of a target size before it trains and, for the recipe's held-out configurations that have
run, put the prediction beside the measured saving.

This module reads run directories only; cli.py trains the recipe's runs first. The prediction is the planner's
bootstrapped one (`bootdistill plan --teacher`, the switch at the run's margin) with F(N) = 2N, the ledger's 6N
proxy, N being a run's total parameter count as the fit reads it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ..errors import ConfigError, DataError
from ..experiment.plan import predicted
from ..experiment.prediction import predict_planned_run, predict_saving
from ..experiment.recipe import PlannedRun, tune_suffix
from ..fsutil import atomic_write_json, atomic_write_text
from ..scaling.cli import cmd_fit
from ..scaling.runs import collect
from ..shape import count_params, shape_of
from .runs import load_runs
from .tables import build_report
from .tuning import unchosen

FLOPS = "6n"  # F(N) = 2N: the ledger's proxy, with N the total parameters the fit reads from summary.json
WITHIN_POINTS = 3.0  # the accuracy asked of the planner: |measured - predicted| in points of saving


def configuration(p: PlannedRun) -> str:
    """A recipe run's name without its seed and tuning suffixes: the configuration its grid points and seeds share."""
    name = p.name.removesuffix(f"-s{p.cfg.train.seed}")
    if p.tune:
        name = name.removesuffix("".join(tune_suffix(k, v) for k, v in p.tune["point"].items()))
    return name


def distilled(p: PlannedRun) -> bool:
    return p.cfg.distill.policy != "classical"


def split(order: list[PlannedRun], hold_out: list[str]) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(runs the laws are fitted on, runs held out): a name holds out that run, or every grid point and seed of that
    configuration. One-line errors, before anything trains."""
    held: set[str] = set()
    for name in hold_out:
        match = {p.name for p in order if name in (p.name, configuration(p))}
        if not match:
            names = sorted({configuration(p) for p in order})
            raise ConfigError(f"--hold-out {name}: no run or configuration of the recipe has that name "
                              f"(configurations: {', '.join(names)})")
        held |= match
    fit = [p for p in order if p.name not in held]
    for p in fit:
        for dep in (p.teacher, p.scorer):
            if dep in held:
                raise ConfigError(f"--hold-out: run '{p.name}' is fitted on but needs held-out run '{dep}'; hold "
                                  f"'{configuration(p)}' out too")
    if not any(not distilled(p) for p in fit):
        raise ConfigError("the recipe has no classical runs outside --hold-out: the supervised law is fitted on them")
    if not any(distilled(p) and p.teacher for p in fit):
        raise ConfigError("the recipe has no distilled runs (with a teacher of the recipe) outside --hold-out: the "
                          "distillation law is fitted on them")
    return fit, [p for p in order if p.name in held]


def _params(p: PlannedRun, vocab: int) -> int:
    return count_params(shape_of(p.cfg.model, vocab))["total"]


def _final_loss(p: PlannedRun) -> float | None:
    f = p.run_dir / "summary.json"
    return json.loads(f.read_text()).get("final_val_loss") if f.is_file() else None


def _mean(values) -> float | None:
    have = [v for v in values if v is not None]
    return statistics.fmean(have) if have else None


def fit_laws(fit_runs: list[PlannedRun], out: Path, final_only: bool = False, top_k: int = 32) -> dict:
    """Both laws on the finished runs fitted on (each grid's chosen point), written to OUT/scaling_fit.json by
    `bootdistill fit`'s own code. Too few points is a one-line error naming what to add."""
    from ..scaling.fit import N_COEF  # scipy: loaded when a fit runs

    dirs = [str(p.run_dir) for p in fit_runs if (p.run_dir / "summary.json").is_file()]
    pts = collect(dirs, every_eval=not final_only, leave_out=unchosen)
    used = len(dirs) - len(pts.left_out)
    for law, arm in (("supervised", "classical runs (teachers included)"), ("distillation", "distilled runs")):
        need = N_COEF[law] + 1
        if pts.count(law) < need:
            raise DataError(f"too few points to fit the {law} law: {pts.count(law)} from the recipe's {arm} "
                            f"({'final losses' if final_only else 'every evaluation'} of {used} runs used), at least "
                            f"{need} needed; add {arm.split(' (')[0]} or evaluations (train.eval_every)"
                            + ("" if final_only else ", or remove --final-only"))
    args = argparse.Namespace(inputs=dirs, out=str(out), law="auto", every_eval=not final_only, params="total",
                              bootstrap=0, workers=None, seed=0, top_k=top_k, holdout=0.0,
                              supervised_coefficients=None, no_plots=False, leave_out=unchosen)
    cmd_fit(args)  # its warnings are printed; an unconverged fit is refused by the planner below
    return {"path": str(out / "scaling_fit.json"), "points": {law: pts.count(law) for law in ("supervised", "distillation")},
            "every_eval": not final_only, "runs": [Path(d).name for d in dirs],
            "left_out": [{"run": Path(r).name, "why": why} for r, why in pts.left_out],
            "left_out_points": len(pts.skipped)}


def predict_target(order: list[PlannedRun], vocab: int, laws: str, params: float, tokens: float | None) -> dict:
    """The saving predicted for a student of `params` parameters trained on `tokens` (default: the tokens per parameter
    of the recipe's largest classical run), with the teacher and margin of the recipe's largest distilled student."""
    runs = {p.name: p for p in order}
    students = [p for p in order if distilled(p) and p.teacher]
    largest = max(students, key=lambda p: _params(p, vocab))
    same = [p for p in students if configuration(p) == configuration(largest)]
    teachers = [runs[name] for name in dict.fromkeys(p.teacher for p in same)]
    if tokens is None:
        classical = max((p for p in order if not distilled(p)), key=lambda p: _params(p, vocab))
        tokens = params * predicted(classical, runs, vocab)["tokens"] / _params(classical, vocab)
    t_flops = _mean([predicted(t, runs, vocab)["total"] for t in teachers])
    t_loss = _mean([_final_loss(t) for t in teachers])
    pred = predict_saving(params, tokens, _params(teachers[0], vocab), t_flops, largest.cfg.distill.margin, laws,
                          t_loss, FLOPS)
    return {**pred, "teacher": configuration(teachers[0]), "as": configuration(largest)}


def held_out_rows(order: list[PlannedRun], held: list[PlannedRun], vocab: int, laws: str, device: str = "auto") -> tuple:
    """One row per held-out distilled configuration: predicted saving (mean over its runs, which differ only in
    their teacher's seed), and, once it and a classical run of its size have finished, the measured one (the
    report's headline: best against best, evaluations that decided the switch charged)."""
    runs = {p.name: p for p in order}
    configs: dict[str, list[PlannedRun]] = {}
    for p in held:
        if distilled(p) and p.teacher:
            configs.setdefault(configuration(p), []).append(p)
    rows = []
    for name, members in configs.items():
        baseline = _baseline(members[0], order, vocab)
        tokens = predicted(baseline or members[0], runs, vocab)["tokens"]
        preds = []
        for p in members:
            try:
                preds.append(predict_planned_run(p, runs, vocab, laws, FLOPS, tokens))
            except (ConfigError, ValueError) as e:  # outside the laws' search range
                preds.append({"error": str(e)})
        ok = [x for x in preds if "error" not in x]
        rows.append({"configuration": name, "runs": [p.name for p in members],
                     "student_params": _params(members[0], vocab), "student_tokens": tokens,
                     "baseline": configuration(baseline) if baseline else None,
                     "teacher": configuration(runs[members[0].teacher]), "margin": members[0].cfg.distill.margin,
                     "predicted_pct": _mean([x["saving_pct"] for x in ok]),
                     "best_predicted_pct": _mean([x["best_saving_pct"] for x in ok]),
                     "prediction_errors": sorted({x["error"] for x in preds if "error" in x}),
                     "measured": "not run yet", "measured_pct": None, "error_points": None,
                     f"within_{WITHIN_POINTS:g}_points": None})
    warnings = _measure(rows, order, configs, vocab, device)
    for r in rows:
        if r["measured_pct"] is not None and r["predicted_pct"] is not None:
            r["error_points"] = r["measured_pct"] - r["predicted_pct"]
            r[f"within_{WITHIN_POINTS:g}_points"] = abs(r["error_points"]) <= WITHIN_POINTS
    return rows, warnings


def _baseline(p: PlannedRun, order: list[PlannedRun], vocab: int) -> PlannedRun | None:
    """The classical run of the student's size whose final loss is its target (the same seed preferred): its tokens
    are the D of the prediction, as the report measures against it."""
    shape = shape_of(p.cfg.model, vocab)
    cands = [c for c in order if not distilled(c) and shape_of(c.cfg.model, vocab) == shape]
    return min(cands, key=lambda c: c.cfg.train.seed != p.cfg.train.seed, default=None)


def _measure(rows: list[dict], order: list[PlannedRun], configs: dict, vocab: int, device: str) -> list[str]:
    """Measured savings of the held-out configurations that have run: a report over them, their teachers and the
    classical runs of their size (every grid point, so that the report chooses as it always does)."""
    runs = {p.name: p for p in order}
    done = [p for ms in configs.values() for p in ms if (p.run_dir / "summary.json").is_file()]
    if not done:
        return []
    shapes = {shape_of(p.cfg.model, vocab) for p in done}
    wanted = done + [runs[p.teacher] for p in done] + \
        [p for p in order if not distilled(p) and shape_of(p.cfg.model, vocab) in shapes]
    dirs = list(dict.fromkeys(str(p.run_dir) for p in wanted if (p.run_dir / "summary.json").is_file()))
    report = build_report(load_runs(dirs), diagnostics=False, device=device)
    for r in rows:
        dir_names = {runs[n].run_dir.name for n in r["runs"]}
        for g in report["rows"]:
            if g["role"] == "distilled" and dir_names & set(g["runs"]):
                r["measured_pct"] = g["savings_pct"]["mean"]
                r["measured_runs"] = g["runs"]
                r["measured"] = "measured" if r["measured_pct"] is not None else \
                    "no saving: it never reaches its target" if g["target"]["mean"] is not None else "no target"
    return report["warnings"]


def markdown(result: dict) -> str:
    pct = lambda v: "—" if v is None else f"{v:+.1f}%"  # noqa: E731
    fit = result["fit"]
    lines = ["# Calibration", "",
             f"Laws fitted on {len(fit['runs']) - len(fit['left_out'])} runs of `{result['recipe']}` "
             f"({fit['points']['supervised']} supervised and {fit['points']['distillation']} distillation points, "
             f"{'every evaluation' if fit['every_eval'] else 'final losses'}): `{fit['path']}`. Predicted saving: "
             "the planner's bootstrapped prediction, switch at the run's margin, the teacher's training counted, "
             "F(N) = 2N.", ""]
    if fit["left_out"]:
        lines += ["Left out of the fit:", ""] + [f"- {x['run']}: {x['why']}" for x in fit["left_out"]] + [""]
    t = result.get("target")
    if t:
        lines += [f"**Target** N = {t['student_params']:.4g} parameters, D = {t['student_tokens']:.4g} tokens, teacher "
                  f"`{t['teacher']}` (loss {t['teacher_loss']:.4f}, margin {t['margin']:g}): predicted saving "
                  f"{pct(t['saving_pct'])} (best switch {pct(t['best_saving_pct'])}; {t['decision']}).", ""]
    if result["held_out"]:
        lines += ["## Held out: predicted against measured", "",
                  "| configuration | N_S | tokens | teacher | predicted | measured | error (points) |",
                  "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
        for r in result["held_out"]:
            err = "—" if r["error_points"] is None else f"{r['error_points']:+.1f}"
            lines.append(f"| {r['configuration']} | {r['student_params'] / 1e6:.3g}M | {r['student_tokens']:.3g} | "
                         f"{r['teacher']} | {pct(r['predicted_pct'])} | "
                         f"{pct(r['measured_pct']) if r['measured_pct'] is not None else r['measured']} | {err} |")
        lines += ["", f"Error = measured − predicted; the goal is within {WITHIN_POINTS:g} points. The prediction "
                  "depends only on the runs fitted on, so it is the same before and after the held-out runs train."]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> tuple[Path, Path]:
    atomic_write_json(out / "calibration.json", result)
    atomic_write_text(out / "calibration.md", markdown(result))
    return out / "calibration.json", out / "calibration.md"
