"""`bootdistill fit` and `bootdistill plan`: the scaling-law subcommands."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..compute import SCENARIO_TITLES, SCENARIOS
from ..errors import BootdistillError, ConfigError, DataError
from ..fsutil import atomic_write_json, check_writable
from . import laws
from .runs import collect

SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}


def quantity(text: str) -> float:
    """'1.5e9', '150M', '3B', '2T' -> float (argparse type)."""
    t = text.strip()
    try:
        v = float(t[:-1]) * SUFFIX[t[-1]] if t and t[-1] in SUFFIX else float(t)
    except ValueError:
        v = math.nan
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number like 1.5e9, 150M or 3B, got {text!r}")
    return v


def add_subcommands(subparsers, leave_out=None) -> None:
    """leave_out: which run directories a fit must not use, and why (scaling.runs.collect); the CLI passes
    report/tuning's choice, so that of a tuning grid only the chosen point is fitted."""
    p = subparsers.add_parser(
        "fit", help="fit the supervised and distillation scaling laws to runs or CSV files",
        description="Fit L(N,D) = E + (A/N^alpha + B/D^beta)^gamma and the distillation law (eq. 8) as the "
                    "distillation-scaling-laws paper's App. F: Huber loss on log L, L-BFGS-B from its grid of "
                    "starting points, 90% intervals by bootstrap. Writes OUT/scaling_fit.json and fit plots.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="CSV files (columns N,D,L or N_S,D_S,L_T,L_S), run directories (summary.json), or "
                        "directories searched for run directories; distilled runs (a 'teacher' in summary.json) "
                        "feed the distillation law, the others the supervised law; of the runs of a recipe's "
                        "tuning grid only the chosen point (the best final validation loss) is used")
    p.add_argument("--out", "-o", required=True, help="output directory for scaling_fit.json and the PNG plots")
    p.add_argument("--law", choices=["auto", "supervised", "distillation"], default="auto",
                   help="which law to fit (default auto: every law the inputs have points for)")
    p.add_argument("--every-eval", action="store_true",
                   help="use every evaluation row of metrics.jsonl as a point (default: final losses only)")
    p.add_argument("--params", choices=["total", "non-embedding"], default="total",
                   help="which parameter count of a run is N (default total; the paper uses non-embedding)")
    p.add_argument("--bootstrap", type=int, default=4096,
                   help="bootstrap resamples for the 90%% intervals (default 4096; 0 skips the intervals)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples and the hold-out split")
    p.add_argument("--top-k", type=int, default=32,
                   help="run L-BFGS-B from the K best points of the paper's starting grid (default 32; "
                        "0 runs it from every grid point, as the paper, which is slow)")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="fraction of points held out of the fit to measure prediction error on (default 0)")
    p.add_argument("--supervised-coefficients", metavar="FIT_JSON|table6",
                   help="supervised law for L~_S in a distillation fit without supervised points: a "
                        "scaling_fit.json or 'table6' (the paper's coefficients)")
    p.add_argument("--no-plots", action="store_true", help="write the JSON only")
    p.set_defaults(func=cmd_fit, leave_out=leave_out)

    p = subparsers.add_parser(
        "plan", help="compute-optimal teacher and student budgets, or a bootstrapped-distillation prediction",
        description="With --budget or --tokens: solve eq. 10 (SLSQP) for student tokens, teacher size and teacher "
                    "tokens in each scenario of Table 2 and compare with supervised training. With --teacher and "
                    "--teacher-flops: predict the compute for the student to reach its classical loss with and "
                    "without that teacher.")
    p.add_argument("--student", type=quantity, required=True, help="student parameters N_S, e.g. 1e9 or 150M")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--budget", type=quantity, help="total compute budget in FLOPs, e.g. 1e21")
    g.add_argument("--tokens", type=quantity,
                   help="student token budget D_S (with --teacher: the classical run's tokens that set the target)")
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all",
                   help="what the budget pays for: best (teacher free), inference (teacher logits), pretraining "
                        "(teacher training), both; default all four")
    p.add_argument("--coefficients", metavar="FIT_JSON",
                   help="scaling_fit.json from `bootdistill fit` (default: the paper's Table 6)")
    p.add_argument("--flops", default="paper",
                   help="forward FLOPs per token F(N): 'paper' (2N(1 + c1 N^-1/3 + c2 N^-2/3), App. H constants), "
                        "'6n' (2N, the 6N proxy for training), or 'C1,C2' for your own constants")
    p.add_argument("--range", nargs=2, type=quantity, default=[1e6, 1e17], metavar=("LO", "HI"),
                   help="search range of sizes and token counts (default 1e6 1e17, App. D.4.1)")
    p.add_argument("--teacher", type=quantity, help="bootstrapped prediction: teacher parameters N_T")
    p.add_argument("--teacher-flops", type=quantity, help="bootstrapped prediction: the teacher's training FLOPs")
    p.add_argument("--teacher-loss", type=float,
                   help="bootstrapped prediction: the teacher's measured loss (default: predicted by the law)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="bootstrapped prediction: switch to classical training within this fraction of the "
                        "teacher's loss (default 0.05)")
    p.add_argument("--free-teacher", action="store_true",
                   help="bootstrapped prediction: do not count the teacher's training compute (it exists anyway)")
    p.add_argument("--out", "-o", help="directory for plan.json and the plots (default: print only)")
    p.add_argument("--no-plots", action="store_true", help="with --out, write plan.json only")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)


# ---- fit -----------------------------------------------------------------------------------------------


def _fit_one(fit_mod, points, args, supervised=None):
    n = len(points)
    held = np.zeros(n, bool)
    if args.holdout:
        if not 0 < args.holdout < 1:
            raise ConfigError(f"--holdout must be a fraction in (0, 1), got {args.holdout}")
        held[np.random.default_rng(args.seed).permutation(n)[: int(round(args.holdout * n))]] = True
    train = points.take(np.flatnonzero(~held))
    if len(train) < fit_mod.N_COEF[points.law] + 1:
        raise DataError(f"{points.law} fit needs at least {fit_mod.N_COEF[points.law] + 1} points after the "
                        f"hold-out, got {len(train)}; lower --holdout or add runs")
    res = fit_mod.fit(train, top_k=args.top_k, bootstrap=args.bootstrap, workers=args.workers, seed=args.seed,
                      supervised=supervised)
    out = res.to_json()
    out["range"] = {"N": [float(np.exp(points.cols[0].min())), float(np.exp(points.cols[0].max()))],
                    "D": [float(np.exp(points.cols[1].min())), float(np.exp(points.cols[1].max()))]}
    if held.any():
        out["heldout"] = fit_mod.relative_errors(points.take(np.flatnonzero(held)), np.array(res.theta))
        out["heldout"]["n_points"] = int(held.sum())
    return res, out, held


def _supervised_for_distillation(args, fitted):
    if fitted is not None:
        return fitted, "fit on the supervised points of these inputs"
    src = args.supervised_coefficients
    if src is None:
        raise DataError("a distillation fit needs the supervised law for L~_S: give supervised points too, or "
                        "--supervised-coefficients FIT_JSON, or --supervised-coefficients table6")
    if src == "table6":
        return dict(laws.TABLE6_SUPERVISED), "Table 6"
    try:
        return dict(json.loads(Path(src).read_text())["supervised"]["coefficients"]), src
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{src}: no supervised coefficients in it ({e}); pass a scaling_fit.json or table6") from None


def cmd_fit(args) -> int:
    from . import fit as fit_mod  # scipy (about 1 s): loaded when a fit runs, not when the CLI starts

    if args.bootstrap < 0 or args.top_k < 0 or (args.workers is not None and args.workers < 1):
        raise ConfigError("--bootstrap and --top-k must be >= 0 and --workers >= 1")
    check_writable(Path(args.out))  # before the fit, not after it
    pts = collect(args.inputs, every_eval=args.every_eval,
                  params="total" if args.params == "total" else "non_embedding",
                  leave_out=getattr(args, "leave_out", None))
    for run, why in pts.left_out:
        print(f"note: left out {run}: {why}", file=sys.stderr)
    if pts.skipped:
        print(f"note: left out {len(pts.skipped)} points of bootstrapped runs ({pts.skipped[0][1]}, e.g. "
              f"{pts.skipped[0][0]}): the distillation law describes distillation only", file=sys.stderr)
    wanted = ["supervised", "distillation"] if args.law == "auto" else [args.law]
    todo = [law for law in wanted if pts.count(law)]
    if todo == ["distillation"] and not args.supervised_coefficients and pts.count("supervised"):
        todo = ["supervised", "distillation"]  # L~_S comes from the supervised points given alongside
    if not todo:
        raise DataError(f"no {' or '.join(wanted)} points in the inputs; check the CSV headers or run directories")
    result, failed, sup_coeffs = {"format": "bootdistill-scaling-fit/1", "inputs": list(args.inputs),
                                  "settings": {k: getattr(args, k) for k in ("top_k", "bootstrap", "seed", "holdout",
                                                                             "every_eval", "params")},
                                  "left_out": [{"run": run, "why": why} for run, why in pts.left_out]}, [], None
    out_dir = Path(args.out)
    for law in todo:
        arrays = pts.arrays(law)
        if law == "supervised":
            points, extra = fit_mod.supervised_points(*arrays), {}
        else:
            sup, source = _supervised_for_distillation(args, sup_coeffs)
            points, extra = fit_mod.distillation_points(*arrays, sup), {"supervised_source": source}
        print(f"fitting the {law} law to {len(points)} points ...", file=sys.stderr)
        res, out, held = _fit_one(fit_mod, points, args, supervised=sup if law == "distillation" else None)
        out.update(extra)
        result[law] = out
        if law == "supervised":
            sup_coeffs = res.coefficients
        if not res.converged:
            failed.append(f"{law}: {res.message}")
        _print_fit(out)
        if not args.no_plots:
            from .plots import plot_fit  # matplotlib (about 1.5 s): only when plots are drawn

            pred = np.exp(points.predict(np.array(res.theta)))
            plot_fit(out_dir / f"fit_{law}.png", law, np.exp(points.y), pred, np.exp(points.cols[0]), held)
    atomic_write_json(out_dir / "scaling_fit.json", result)
    print(f"wrote {out_dir / 'scaling_fit.json'}")
    for f in failed:
        print(f"warning: the fit did not converge ({f}); its coefficients are written but flagged "
              "converged=false", file=sys.stderr)
    return 1 if failed else 0


def _print_fit(out: dict) -> None:
    ci = out.get("ci90") or {}
    print(f"\n{out['law']} law, {out['n_points']} points, {out['n_starts']} starts, "
          f"{'converged' if out['converged'] else 'NOT CONVERGED'} in {out['seconds']:.1f}s")
    for k, v in list(out["coefficients"].items()) + list(out["derived"].items()):
        lo_hi = f"  90% CI [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else ""
        print(f"  {k:>6} = {v:<12.5g}{lo_hi}")
    e = out["rel_error"]
    print(f"  relative error: mean {100 * e['mean']:.3f}%, max {100 * e['max']:.3f}%")
    if "heldout" in out:
        h = out["heldout"]
        print(f"  held-out ({h['n_points']} points): mean {100 * h['mean']:.3f}%, max {100 * h['max']:.3f}%")
    if out.get("bootstrap"):
        b = out["bootstrap"]
        print(f"  bootstrap: {b['resamples']} resamples, {b['failed']} did not converge, {b['seconds']:.1f}s")
    if out.get("at_bound"):
        print(f"  note: {', '.join(out['at_bound'])} at the edge of the search bounds (weakly identified)")
    if out.get("unidentified"):
        print(f"  note: {', '.join(out['unidentified'])} not identified: their term is below 1e-6 of the sum at "
              "every point")


# ---- plan ----------------------------------------------------------------------------------------------


def cmd_plan(args) -> int:
    from . import plan as P  # scipy (about 1 s): loaded when a plan runs, not when the CLI starts

    if not args.margin >= 0:
        raise ConfigError(f"--margin is the switch margin, a fraction >= 0 (0.05 = 5%); got {args.margin:g}")
    if args.out:
        check_writable(Path(args.out))
    lw = P.load_laws(args.coefficients, args.flops)
    rng = tuple(args.range)
    if not rng[0] < rng[1]:
        raise ConfigError(f"--range LO HI needs LO < HI, got {rng[0]:g} {rng[1]:g}")
    notes = []
    lo_n, hi_n = lw.n_range
    if not lo_n / 10 <= args.student <= hi_n * 10:
        notes.append(f"note: N_S = {args.student:.3g} is far outside the sizes the coefficients were fitted on "
                     f"({lo_n:.3g}-{hi_n:.3g}, {lw.source}); treat the numbers as extrapolation")
    if args.teacher is not None or args.teacher_flops is not None:
        if args.teacher is None or args.teacher_flops is None:
            raise ConfigError("a bootstrapped prediction needs both --teacher and --teacher-flops")
        tokens = args.tokens if args.tokens else args.budget / (3 * float(lw.F(args.student)))
        result = {"bootstrapped": P.predict_bootstrapped(lw, args.student, tokens, args.teacher, args.teacher_flops,
                                                         args.teacher_loss, args.margin, not args.free_teacher, rng)}
        text = _format_bootstrapped(result["bootstrapped"])
    else:
        result, text = _plan(P, lw, args, rng)
    result.update({"coefficients": lw.source, "flops_model": {"c1": lw.c1, "c2": lw.c2}, "notes": notes})
    print(json.dumps(result, indent=2) if args.json else "\n".join(notes + [text]))
    if args.out:
        _write_plan(P, lw, args, result, rng)
    return 0


def _plan(P, lw, args, rng):
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    n_s = args.student
    lines, result = [], {"student_params": n_s, "scenarios": {}}
    if args.budget:
        C = args.budget
        same = P.supervised_same_size(lw, n_s, C)
        best_sup = P.supervised_compute_optimal(lw, C, rng)
        result.update({"budget": C, "supervised_same_size": same, "supervised_compute_optimal": best_sup})
        lines.append(f"Student N_S = {n_s:.4g}, budget {C:.4g} FLOPs (coefficients: {lw.source})")
        lines.append(f"  supervised, same size:     L = {same['loss']:.4f}  (D = {same['tokens']:.4g} tokens)")
        lines.append(f"  supervised, optimal size:  L = {best_sup['loss']:.4f}  (N = {best_sup['params']:.4g}, "
                     f"D = {best_sup['tokens']:.4g})")
        reference = same["loss"]
    else:
        reference = float(lw.L(n_s, args.tokens))
        result.update({"tokens": args.tokens, "supervised_same_tokens": {"loss": reference}})
        lines.append(f"Student N_S = {n_s:.4g}, {args.tokens:.4g} tokens (coefficients: {lw.source})")
        lines.append(f"  supervised on the same tokens: L = {reference:.4f}")
        lines.append("  (a token budget leaves compute free: the teacher is picked for the student's loss alone and "
                     "its cost only reported; give --budget to trade it against compute)")
    for sc in scenarios:
        r = P.plan_distillation(lw, n_s, args.budget, sc, rng) if args.budget else P.plan_tokens(lw, n_s, args.tokens, sc, rng)
        r["decision"], r["answer"] = P.decide(r["student_loss"], reference)
        result["scenarios"][sc] = r
        fl = r["flops"]
        lines.append(f"\n  distillation, {SCENARIO_TITLES[sc]}:")
        lines.append(f"    student loss {r['student_loss']:.4f} with D_S = {r['student_tokens']:.4g}; teacher loss "
                     f"{r['teacher_loss']:.4f} (N_T = {r['teacher_params']:.4g}, D_T = {r['teacher_tokens']:.4g})")
        split = ", ".join(f"{k} {100 * v / fl['total']:.0f}%" for k, v in fl.items() if k != "total" and v > 0)
        lines.append(f"    FLOPs {fl['total']:.4g} ({split})")
        if r.get("cheapest_teacher"):
            t = r["cheapest_teacher"]
            lines.append(f"    cheapest teacher reaching L_T: N_T = {t['params']:.4g}, D_T = {t['tokens']:.4g} "
                         f"({t['train_flops']:.3g} FLOPs to train)")
        lines.append(f"    answer: {r['answer']}")
    return result, "\n".join(lines)


def _format_bootstrapped(b: dict) -> str:
    lines = [f"Student N_S = {b['student_params']:.4g}: classical target loss {b['target_loss']:.4f} after "
             f"{b['student_tokens']:.4g} tokens = {b['classical_flops']:.4g} FLOPs",
             f"Teacher N_T = {b['teacher_params']:.4g}, {b['teacher_flops']:.4g} training FLOPs "
             f"({b['teacher_tokens']:.4g} tokens), loss {b['teacher_loss']:.4f}"
             f"{'' if b['counted_teacher_training'] else ' (its training not counted)'}"]
    for key, title in (("distill_only", "distillation only"), ("margin_switch", "distill, switch at the margin"),
                       ("best_switch", "distill, switch at the best point")):
        v = b[key]
        if v is None:
            why = ("cannot reach the target" if key == "distill_only" else
                   f"the student never gets within {100 * b['margin']:.0f}% of the teacher in time")
            lines.append(f"  {title:<34} {why}")
        else:
            lines.append(f"  {title:<34} {v['flops']:.4g} FLOPs ({100 * (1 - v['flops'] / b['classical_flops']):+.1f}% "
                         f"saved), distilling {v['tokens']:.4g} tokens")
    lines.append(f"Answer: {b['decision']} (best predicted saving {100 * b['saving']:.1f}%). The switch model "
                 "assumes the student then trains like a classical run at the same loss.")
    return "\n".join(lines)


def _write_plan(P, lw, args, result, rng) -> None:
    out = Path(args.out)
    atomic_write_json(out / "plan.json", result)
    if args.no_plots:
        return
    from . import plots  # matplotlib: only when plots are drawn

    n_s = args.student
    if "bootstrapped" in result:
        b = result["bootstrapped"]
        d = [b["student_tokens"] / 10, b["student_tokens"]]
        plots.plot_student_vs_teacher(out / "student_vs_teacher.png", lw, n_s, d,
                                      [(b["teacher_loss"], b["target_loss"], "teacher / classical target")])
        print(f"wrote {out / 'plan.json'} and plots")
        return
    main = result["scenarios"].get("both") or next(iter(result["scenarios"].values()))
    d_s = main["student_tokens"]
    plots.plot_isoflop_contours(out / "isoflop_contours.png", lw, n_s, d_s, main)
    plots.plot_student_vs_teacher(out / "student_vs_teacher.png", lw, n_s, [d_s / 10, d_s, d_s * 10],
                                  [(main["teacher_loss"], main["student_loss"], "planned")])
    if args.budget:
        budgets = args.budget * np.logspace(-2, 2, 9)
        curves = {sc: [] for sc in result["scenarios"]}
        curves["supervised"] = [P.supervised_same_size(lw, n_s, c)["loss"] for c in budgets]
        for sc in result["scenarios"]:
            for c in budgets:
                try:
                    curves[sc].append(P.plan_distillation(lw, n_s, c, sc, rng)["student_loss"])
                except BootdistillError:
                    curves[sc].append(math.nan)  # budget below the scenario's minimum: a gap in the line
        plots.plot_compute_curves(out / "compute_curves.png", n_s, budgets, curves)
    print(f"wrote {out / 'plan.json'} and plots")

