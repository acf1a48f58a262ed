"""`bootdistill report RUN_DIR...`: the savings table on stdout, report.md + report.json + PNGs in --out."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import BootdistillError
from ..fsutil import check_writable
from .archive import add_subcommand as add_archive_command
from .markdown import savings_table, sharing_lines, significance_lines, tuning_lines, write_report
from .runs import load_runs
from .tables import build_report


def _parse_baselines(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise BootdistillError(f"--baseline expects NAME=RUN_DIR (a student run's name and its classical run), got '{item}'")
        out[name] = path
    return out


def default_out(runs) -> Path:
    """`report/` beside the run dirs: in their common parent."""
    return Path(os.path.commonpath([str(r.path.parent) for r in runs])) / "report"


def cmd_report(args) -> int:
    from .plots import write_plots  # matplotlib loads only when a report is written, not for `bootdistill --help`

    baselines = _parse_baselines(args.baseline)
    if args.device != "auto":  # a wrong device is said before any run is read or evaluated
        from ..runtime.device import resolve_device  # torch: only when a device is named

        resolve_device(args.device, "--device ")
    runs = load_runs(list(args.runs) + list(baselines.values()))  # an override's baseline joins the report
    report = build_report(runs, target=args.target, baselines=baselines, split=args.split,
                          diagnostics=not args.no_diagnostics, device=args.device)
    out = Path(args.out) if args.out else default_out(runs)
    check_writable(out)
    plots = write_plots(runs, out, report)
    paths = write_report(report, plots, out)
    if args.headline:  # the verdicts alone: the demo's closing lines
        for line in significance_lines(report)[2:-1]:
            print(line.replace("**", ""))
        return 0
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(paths["json"].read_text(), end="")
    else:
        print(savings_table(report))
        for line in tuning_lines(report) + significance_lines(report)[2:-1] + sharing_lines(report):
            print(line.replace("**", ""))
        print(f"\nreport: {paths['md']} (+ report.json, {len(plots)} plots)")
    return 0


def add_subcommands(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="compute to reach a target loss and the savings of distillation, teacher included (Table 3, plots)",
        description="For each student: the target loss, the step and compute (PFLOPs) at which it is first reached "
                    "(interpolated between evaluations), and the savings against its classical run, with teacher "
                    "training, teacher inference and student compute shown separately. Writes report.md, "
                    "report.json and PNG plots; several seeds of a config give mean ± std.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories written by `bootdistill train` (students, their classical baselines, teachers); "
                        "a directory holding run directories stands for all of them")
    p.add_argument("--target", type=float, metavar="LOSS",
                   help="target validation loss for every student (default: each classical baseline's final validation loss)")
    p.add_argument("--out", metavar="DIR", help="where report.md, report.json and the plots go (default: <common parent>/report)")
    p.add_argument("--baseline", action="append", metavar="NAME=RUN_DIR",
                   help="use RUN_DIR as the classical baseline of the student run named NAME (repeatable; "
                        "default: the classical run with the same model shape and train.total_steps, same seed preferred)")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="measure targets and crossings on this split (test: the held-out text; needs evaluation "
                        "snapshots, train.eval_snapshots=true)")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="skip the out-of-domain loss and the loss by teacher-difficulty bucket (they load checkpoints)")
    p.add_argument("--device", default="auto",
                   help="where snapshots and checkpoints are evaluated when the report needs them: auto (a CUDA GPU "
                        "when there is one), cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print report.json to stdout instead of the table")
    p.add_argument("--headline", action="store_true",
                   help="print only each distilled configuration's verdict (saving over seeds, 95%% interval); "
                        "the table, warnings and plots still go to --out")
    p.set_defaults(func=cmd_report)

    add_archive_command(subparsers)
