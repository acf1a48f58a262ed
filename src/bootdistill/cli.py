"""`bootdistill`: the one entry point. Every subcommand documents its options in --help.

Errors a user can fix print one line (`error: ...`) and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import load_config
from .data.cli_data import add_subcommands as add_data_commands
from .errors import BootdistillError
from .fsutil import check_writable
from .experiment import load_recipe, run_recipe
from .experiment.cluster import run_commands
from .interop.cli import add_subcommands as add_interop_commands
from .presets_table import presets_rows, print_presets
from .report.cli import add_subcommands as add_report_commands, cmd_report
from .report.tuning import unchosen
from .scaling.cli import add_subcommands as add_scaling_commands
from .train.rundir import check_allow_change

# torch loads inside the subcommands that compute (train, eval, experiment runs, teacher-cache): --help, presets
# and experiment --list start without it (a launch script calls --list once per job; torch took 12-20 s on a slow VM)

CONFIG_HELP = "YAML config file (sections data:, model:, train:, distill:, log:; see configs/)"
OVERRIDES_HELP = "dotted overrides applied after --config, e.g. model.preset=5M train.lr_max=1e-3 train.max_steps=200"


class IntermixedParser(argparse.ArgumentParser):
    """Options and KEY=VALUE overrides in any order: `experiment RECIPE --report train.threads=1`."""

    def parse_known_args(self, args=None, namespace=None):
        if getattr(self, "_intermixing", False):  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


TRAINING_INTERRUPTED = "interrupted: the last checkpoint is intact; continue with --resume"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)


def cmd_train(args) -> int:
    from .train.trainer import Trainer  # torch

    cfg = load_config(args.config, args.overrides)
    check_allow_change(args.allow_change, args.resume)
    if args.resume and not Path(cfg.out_dir).is_dir():  # a typo would otherwise start a fresh run
        raise BootdistillError(f"--resume: run directory '{cfg.out_dir}' does not exist: check out_dir, or leave out "
                               "--resume to start a new run")
    Trainer(cfg, resume=args.resume, allow_change=args.allow_change).fit()
    return 0


def cmd_eval(args) -> int:
    from .train.eval_cli import evaluate_checkpoint, evaluate_text  # torch

    if args.text is not None:
        if args.data is not None or args.split != "val" or args.batches is not None:
            raise BootdistillError("--text evaluates a text file with the run's own tokenizer: drop --data, --split and --batches")
        result = evaluate_text(args.checkpoint, args.text, context=args.context)
        print(json.dumps(result, indent=2) if args.json else
              f"text loss {result['loss']:.4f} nats/token, {result['bits_per_byte']:.4f} bits/byte over "
              f"{result['tokens']} tokens / {result['bytes']} bytes of {result['text']} ({result['checkpoint']})")
        return 0
    result = evaluate_checkpoint(args.checkpoint, split=args.split, data_dir=args.data, context=args.context,
                                 max_batches=args.batches, bucket=args.bucket)
    print(json.dumps(result, indent=2) if args.json else
          f"{args.split} loss {result['loss']:.4f} over {result['tokens']} tokens ({result['checkpoint']})")
    return 0


def cmd_presets(args) -> int:
    if not 1 <= args.vocab_size < 2**32:
        raise BootdistillError(f"--vocab-size must be between 1 and 2**32 - 1 (token files are uint32 at most), got {args.vocab_size}")
    rows = presets_rows(vocab_size=args.vocab_size)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_presets(rows)
    return 0


def cmd_experiment(args) -> int:
    if args.list:  # without torch: cluster launch scripts call this once per job
        print("\n".join(run_commands(args.recipe, args.overrides, load_recipe(args.recipe, args.overrides)[1])))
        return 0
    from .runtime.distributed import finish, is_main  # torch

    run_dirs = run_recipe(args.recipe, args.overrides, dry_run=args.dry_run, only=args.only)
    main_rank = is_main()
    finish()  # under torchrun: the ranks part here, so the others need not wait out rank 0's report
    if args.report and not args.dry_run and main_rank:
        out = args.report_out or str(Path(run_dirs[0]).parent / "report")
        # parsed like a typed `bootdistill report`: every option keeps the report parser's own default
        return cmd_report(build_parser().parse_args(["report", *map(str, run_dirs), "--out", out]))
    return 0


def cmd_calibrate(args) -> int:
    """Train the recipe's runs but the held-out ones, fit both laws on them, predict the target's saving, and show
    predicted against measured for the held-out configurations that have run (report/calibration.py)."""
    from .report import calibration as cal  # scipy: when calibrating, not when the CLI starts
    from .scaling.cli import quantity

    hold_out = [h for h in args.hold_out if "=" not in h]  # --hold-out A B train.threads=1: the override is one
    overrides = args.overrides + [h for h in args.hold_out if "=" in h]
    target = {}
    for key in ("target_params", "target_tokens"):
        value = getattr(args, key)
        try:
            target[key] = None if value is None else quantity(value)
        except argparse.ArgumentTypeError as e:
            raise BootdistillError(f"--{key.replace('_', '-')}: {e}") from None
    if target["target_tokens"] is not None and target["target_params"] is None:
        raise BootdistillError("--target-tokens needs --target-params (the target student's size)")
    if target["target_params"] is None and not hold_out:
        raise BootdistillError("nothing to predict: give --target-params N (and --target-tokens D), or --hold-out a "
                               "configuration of the recipe to predict and measure")
    recipes = [args.recipe] + (args.with_recipes or [])
    orders = [load_recipe(r, overrides)[1] for r in recipes]
    order = [p for o in orders for p in o]
    seen: dict[str, str] = {}
    for recipe, o in zip(recipes, orders):
        for p in o:
            if p.name in seen:
                raise BootdistillError(f"run '{p.name}' is in both {seen[p.name]} and {recipe}: recipes joined with "
                                       "--with need distinct run names")
            seen[p.name] = recipe
    fit_runs, held = cal.split(order, hold_out)
    out = Path(args.out) if args.out else order[0].run_dir.parent / "calibration"
    check_writable(out)
    if not args.no_train:
        for recipe in recipes:  # finished runs are reused
            run_recipe(recipe, overrides, skip={p.name for p in held})
    finished = [p for p in fit_runs if (p.run_dir / "summary.json").is_file()]
    if not finished:
        raise BootdistillError("--no-train: none of the runs to fit on has finished; train them (`bootdistill "
                               "experiment RECIPE`) or calibrate without --no-train")
    vocab = json.loads((finished[0].run_dir / "summary.json").read_text())["model"]["vocab_size"]
    result = {"format": "bootdistill-calibration/1", "recipe": ", ".join(map(str, recipes)), "flops_model": cal.FLOPS,
              "held_out_runs": [p.name for p in held],
              "fit": cal.fit_laws(fit_runs, out, args.final_only, args.top_k)}
    laws = result["fit"]["path"]
    result["target"] = None if target["target_params"] is None else \
        cal.predict_target(order, vocab, laws, target["target_params"], target["target_tokens"])
    result["held_out"], result["warnings"] = cal.held_out_rows(order, held, vocab, laws, args.device)
    paths = cal.write(result, out)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print("\n" + paths[1].read_text().rstrip())
    print(f"\ncalibration: {paths[1]} (+ {paths[0].name}, scaling_fit.json)")
    return 0


def cmd_teacher_cache(args) -> int:
    from .distill.cache_write import format_storage, write_teacher_cache  # torch

    meta = write_teacher_cache(args.teacher, args.out, top_p=args.top_p, top_k=args.top_k, data_dir=args.data,
                               context=args.context, batch=args.batch, max_tokens=args.max_tokens, values=args.values,
                               device=args.device, precision=args.precision, progress=not args.no_progress)
    print(f"teacher cache {args.out}: top-p {meta['top_p']} then top-{meta['k']} of {meta['tokens_covered']:,} tokens "
          f"(context {meta['context']}), keeping {meta['kept_mass_mean']:.1%} of the teacher's mass on average "
          f"(KL truncated||full {meta['kl_truncated_to_full_mean']:.4f} nats/token); {format_storage(meta['storage'])}; teacher inference "
          f"{meta['inference_flops']:.3e} FLOPs (2N proxy), charged in full to each student that trains from it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootdistill",
        description="Pre-train GPT-style LMs for less compute by distilling from small teachers; every FLOP counted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=IntermixedParser)
    add_data_commands(sub)

    p = sub.add_parser("train", help="train one model (classical or distilled, as the config's distill.policy says)",
                       description="Train one model. Results: RUN/metrics.jsonl, RUN/summary.json, RUN/checkpoints/.")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in out_dir from its latest checkpoint (exactly: same final loss as an uninterrupted run)")
    p.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                   help="with --resume: accept a changed training setting, e.g. --allow-change train.lr_max "
                        "train.lr_max=1e-4 (recorded in RUN/history.jsonl); repeat for several")
    p.set_defaults(func=cmd_train, interrupted=TRAINING_INTERRUPTED)

    p = sub.add_parser("eval", help="loss of a checkpoint on a split (and per 64-token position bucket), or on a text file (--text)")
    p.add_argument("checkpoint", help="a run directory (its latest checkpoint) or a checkpoints/step_* directory")
    p.add_argument("--split", choices=["val", "test", "train"], default="val", help="which split to evaluate (default val)")
    p.add_argument("--data", help="prepared data directory to evaluate on (default: the run's own); its tokenizer must match")
    p.add_argument("--text", metavar="FILE", help="instead of a split: loss and bits per byte on this UTF-8 text file, "
                   "tokenized with the run's tokenizer (the file as one document)")
    p.add_argument("--context", type=int, help="evaluate with blocks of this many tokens (at most the model's context)")
    p.add_argument("--batches", type=int, help="evaluate at most this many batches (default: the whole split)")
    p.add_argument("--bucket", type=int, default=64, help="position bucket size for positional loss (default 64)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("teacher-cache", help="run a trained teacher once over the training stream and store its top-k distributions",
                       description="Write a teacher cache (offline logits): top-p then top-k of the teacher's distribution for "
                                   "every token of the prepared training stream, renormalised, memory-mapped. Train students "
                                   "from it with distill.teacher=OUT.")
    p.add_argument("teacher", help="the teacher: a run directory (its latest checkpoint) or a checkpoints/step_* directory")
    p.add_argument("--out", required=True, help="the cache directory to write (written whole, then renamed into place)")
    p.add_argument("--top-p", type=float, default=0.95, help="keep the smallest top-p set of each distribution (default 0.95)")
    p.add_argument("--top-k", type=int, default=50, help="... then at most k tokens (default 50; the vocabulary size = full distribution)")
    p.add_argument("--data", help="prepared data directory (default: the teacher run's own); its tokenizer must match")
    p.add_argument("--context", type=int, help="block length; must equal the students' model.context (default: the teacher's)")
    p.add_argument("--batch", type=int, default=8, help="sequences per teacher forward (default 8)")
    p.add_argument("--max-tokens", type=int, help="cover only the first N tokens of the stream (default: all)")
    p.add_argument("--values", choices=["fp16", "fp32"], default="fp16", help="dtype of the stored log-probabilities (default fp16)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                   help="teacher autocast, as train.precision (default auto); use the students' for live-equal signals")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (tokens done, tokens/s, time left)")
    p.set_defaults(func=cmd_teacher_cache)

    p = sub.add_parser("presets", help="the model presets of the paper's Table 1 with parameter and FLOP counts")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--vocab-size", type=int, default=5000, help="vocabulary size used for the counts (default 5000)")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("experiment", help="run a recipe: teachers, baselines and distilled students, reusing finished runs",
                       description="Run every run of a recipe (configs/*.yaml) in dependency order. Finished runs are "
                                   "reused, interrupted ones resume, a changed config is a new run directory.")
    p.add_argument("recipe", help="recipe YAML (e.g. configs/cpu-demo.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the plan: each run's steps, tokens and FLOPs, and run nothing")
    p.add_argument("--report", action="store_true", help="when all runs are done, report on exactly this recipe's runs")
    p.add_argument("--report-out", metavar="DIR", help="where the report goes (default: <recipe out_dir>/report)")
    p.add_argument("--list", action="store_true",
                   help="print one shell command per run (teachers first; '# after T' marks a student of T) and run "
                        "nothing: for spreading the runs over machines (docs/interop.md)")
    p.add_argument("--only", metavar="RUN", help="run just this run of the recipe; its teacher must be finished")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides applied to every run, e.g. train.threads=2")
    p.set_defaults(func=cmd_experiment, interrupted="interrupted: finished runs and the last checkpoint of the "
                                                 "current one are intact; run the same command to continue")

    p = sub.add_parser(
        "calibrate", help="the planner calibrated on your own runs: a recipe's small runs -> fitted laws -> the "
                          "predicted saving of a target size (and predicted against measured for held-out runs)",
        description="Train the recipe's runs (finished ones are reused) except the held-out ones, fit the supervised "
                    "law on its classical runs and the distillation law on its distilled runs (of a tuning grid only "
                    "the chosen point; every evaluation a point), then predict the saving of --target-params with "
                    "the planner's bootstrapped prediction, and for each held-out distilled configuration that has "
                    "run show predicted against measured. Writes OUT/calibration.json, calibration.md and "
                    "scaling_fit.json (docs/scaling.md, 'Calibrate on your own scale').")
    p.add_argument("recipe", help="recipe YAML with classical and distilled runs at a few sizes (and a teacher)")
    p.add_argument("--with", dest="with_recipes", action="append", metavar="RECIPE",
                   help="another recipe whose runs join this one's (each keeps its own out_dir; run names must differ): "
                        "e.g. small sizes in one recipe, the size to predict in another; repeatable")
    p.add_argument("--target-params", metavar="N", help="the target student's parameters, e.g. 150M")
    p.add_argument("--target-tokens", metavar="D",
                   help="its training tokens (default: the tokens per parameter of the recipe's largest classical run)")
    p.add_argument("--hold-out", nargs="+", default=[], metavar="RUN",
                   help="runs or configurations (a name without its seed and tuning suffixes) left out of the fit and "
                        "not trained here; once trained (`experiment`), each distilled one is predicted and measured")
    p.add_argument("--out", metavar="DIR", help="where the results go (default: <recipe out_dir>/calibration)")
    p.add_argument("--no-train", action="store_true",
                   help="train nothing: fit on the runs that have finished (trained elsewhere, or still training)")
    p.add_argument("--final-only", action="store_true",
                   help="one point per run, its final loss (default: every evaluation of metrics.jsonl is a point)")
    p.add_argument("--top-k", type=int, default=32, help="L-BFGS-B starts of each fit, as `fit --top-k` (default 32)")
    p.add_argument("--device", default="auto", help="where the report evaluates held-out runs' snapshots (default auto)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides applied to every run, as `experiment`")
    p.set_defaults(func=cmd_calibrate, interrupted="interrupted: finished runs and the last checkpoint of the current "
                                                   "one are intact; run the same command to continue")

    add_report_commands(sub)
    add_scaling_commands(sub, leave_out=unchosen)  # scaling/ reads no tuning grids: the report's choice is passed in
    add_interop_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        if "bootdistill.runtime.distributed" in sys.modules:  # under torchrun: all ranks leave together
            sys.modules["bootdistill.runtime.distributed"].finish()
        return code
    except BootdistillError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank hits the same error: rank 0 says it
            print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as e:  # anything not translated where it happened: still one line
        where = f" '{e.filename}'" if e.filename else ""
        print(f"error: cannot access{where}: {e.strerror or e}; check the path, its permissions and free space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        message = getattr(args, "interrupted", "interrupted: nothing half-written was left; run the command again")
        print(message, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
