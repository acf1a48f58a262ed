"""Scaling-law fit benchmark: one fit of 700 distillation points and the bootstrap, against the issue's targets
(fit < 60 s, 4096 bootstrap refits < 15 min, on 2 cores).

Points are generated from the paper's Table 6 coefficients with 0.5% log-normal noise (the paper's 697 runs).
Reported side by side: fit seconds, bootstrap seconds (per refit, extrapolated to 4096, or measured with
--full), their ratios to the targets, the load average while running (the cores are shared), the held-out
prediction error, and noise-free recovery of Table 6. With --search M the best objective from the default
top-k starts is compared with M starts (does the cheaper search find the same optimum?).

    . .venv/bin/activate && python benchmarks/bench_scaling_fit.py               # ~1-3 minutes
    python benchmarks/bench_scaling_fit.py --full                                # + all 4096 refits
    python benchmarks/bench_scaling_fit.py --search 256                          # + a wider search
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

from bootdistill.scaling import fit, laws, runs

FIT_TARGET_S, BOOT_TARGET_S, BOOT_N = 60.0, 900.0, 4096


def cpu_s() -> float:
    """CPU seconds of this process and its finished worker processes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=700, help="distillation points (default 700)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2, the target's cores)")
    ap.add_argument("--top-k", type=int, default=32, help="L-BFGS-B starts from the grid (default 32, the CLI's)")
    ap.add_argument("--bootstrap", type=int, default=128, help="refits to time when not --full (default 128)")
    ap.add_argument("--full", action="store_true", help="run all 4096 bootstrap refits")
    ap.add_argument("--search", type=int, default=0, help="also fit from this many grid starts and compare")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic points")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()

    out = {"points": args.points, "workers": args.workers, "top_k": args.top_k, "load_before": os.getloadavg()[0]}
    d = runs.synthetic_distillation(args.points, noise=0.005, seed=args.seed)
    pts = fit.distillation_points(d["N_S"], d["D_S"], d["L_T"], d["L_S"], laws.TABLE6_SUPERVISED)
    held_d = runs.synthetic_distillation(200, noise=0.0, seed=args.seed + 1000)
    held = fit.distillation_points(held_d["N_S"], held_d["D_S"], held_d["L_T"], held_d["L_S"], laws.TABLE6_SUPERVISED)

    t0, c0 = time.perf_counter(), cpu_s()
    res = fit.fit(pts, top_k=args.top_k, workers=args.workers)
    out["fit_s"], out["fit_cpu_s"] = time.perf_counter() - t0, cpu_s() - c0
    out["fit_objective"] = res.objective
    out["fit_converged"] = res.converged
    out["heldout_rel_error_vs_truth"] = fit.relative_errors(held, np.array(res.theta))
    print(f"fit of {args.points} points ({args.top_k} starts, {args.workers} workers): {out['fit_s']:.1f} s "
          f"= {out['fit_s'] / FIT_TARGET_S:.2f}x the {FIT_TARGET_S:.0f} s target; {out['fit_cpu_s']:.1f} CPU-s "
          f"(= {out['fit_cpu_s'] / args.workers:.1f} s on {args.workers} free cores); converged={res.converged}")
    e = out["heldout_rel_error_vs_truth"]
    print(f"  held-out prediction error against the noise-free law: mean {100 * e['mean']:.3f}%, max {100 * e['max']:.3f}%")

    n_boot = BOOT_N if args.full else args.bootstrap
    c0 = cpu_s()
    ci, info = fit.bootstrap_ci(pts, np.array(res.theta), n_boot, workers=args.workers, seed=1)
    per, cpu_per = info["seconds"] / n_boot, (cpu_s() - c0) / n_boot
    out["bootstrap"] = {**info, "per_refit_s": per, "projected_4096_s": per * BOOT_N, "cpu_per_refit_s": cpu_per,
                        "projected_4096_free_cores_s": cpu_per * BOOT_N / args.workers}
    kind = "measured" if args.full else f"projected from {n_boot}"
    print(f"bootstrap: {n_boot} refits in {info['seconds']:.1f} s ({per * 1000:.0f} ms each, {info['failed']} failed); "
          f"4096 refits {kind}: {per * BOOT_N:.0f} s = {per * BOOT_N / BOOT_TARGET_S:.2f}x the {BOOT_TARGET_S:.0f} s target")
    print(f"  {cpu_per:.3f} CPU-s per refit: 4096 refits on {args.workers} free cores would take "
          f"{cpu_per * BOOT_N / args.workers:.0f} s = {cpu_per * BOOT_N / args.workers / BOOT_TARGET_S:.2f}x the target")

    clean = runs.synthetic_distillation(args.points, noise=0.0, seed=args.seed)
    t0 = time.perf_counter()
    exact = fit.fit(fit.distillation_points(clean["N_S"], clean["D_S"], clean["L_T"], clean["L_S"],
                                            laws.TABLE6_SUPERVISED), top_k=args.top_k, workers=args.workers)
    worst = max(abs(exact.coefficients[k] / v - 1) for k, v in laws.TABLE6_DISTILLATION.items())
    out["noise_free"] = {"fit_s": time.perf_counter() - t0, "max_coefficient_rel_error": worst}
    print(f"noise-free: Table 6 recovered to {100 * worst:.2g}% (worst coefficient) in {out['noise_free']['fit_s']:.1f} s")

    if args.search:
        t0 = time.perf_counter()
        wide = fit.fit(pts, top_k=args.search, workers=args.workers)
        diff = (res.objective - wide.objective) / wide.objective
        pred = np.abs(np.exp(pts.predict(np.array(res.theta)) - pts.predict(np.array(wide.theta))) - 1).max()
        out["search"] = {"starts": args.search, "objective": wide.objective, "rel_objective_gap": diff,
                         "max_prediction_difference": float(pred), "seconds": time.perf_counter() - t0}
        print(f"search: {args.top_k} starts reach objective {res.objective:.6g}, {args.search} starts {wide.objective:.6g} "
              f"(gap {100 * diff:.4f}%, predictions differ by at most {100 * pred:.3f}%) in {out['search']['seconds']:.0f} s")
    out["load_after"] = os.getloadavg()[0]
    print(f"load average: {out['load_before']:.1f} before, {out['load_after']:.1f} after (2 cores shared with other work)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
