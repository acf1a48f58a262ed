"""`bootdistill prepare` and `bootdistill vocab-sweep` subcommands (registered by bootdistill.cli)."""

from __future__ import annotations

import argparse

from ..config import load_config
from ..errors import DataError
from ..fsutil import check_writable
from .prepare import prepare
from .vocab_sweep import DEFAULT_SIZES, vocab_sweep


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=None, help="YAML run config; its data: section is used")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides, e.g. data.corpus=/path/to/corpus data.vocab_size=5000",
    )
    p.add_argument(
        "--corpus",
        default=None,
        help="corpus: a WikiText .raw/.txt file or directory (also .xz/.gz), a .jsonl/.parquet file, "
        "hf:NAME[:CONFIG], or synthetic[:MB] (default: $BOOTDISTILL_CORPUS, ../shared/corpus, HF wikitext-103, synthetic)",
    )
    p.add_argument("--text-field", default=None, help="field holding the text in jsonl/parquet/HF rows (default: text)")


def _data_config(args, extra: list[str]):
    overrides = list(args.overrides or [])
    if args.corpus is not None:
        overrides.append(f"data.corpus={_quote(args.corpus)}")
    if args.text_field is not None:
        overrides.append(f"data.text_field={_quote(args.text_field)}")
    overrides += extra
    return load_config(args.config, overrides).data


def _quote(value) -> str:
    # values in overrides are parsed as YAML; quote strings so paths like 'on' or '1e3' stay strings
    return "'" + str(value).replace("'", "''") + "'"


def _run_prepare(args) -> int:
    extra = []
    if args.vocab_size is not None:
        extra.append(f"data.vocab_size={args.vocab_size}")
    if args.max_train_mb is not None:
        extra.append(f"data.max_train_mb={args.max_train_mb}")
    if args.out is not None:
        extra.append(f"data.prepared_dir={_quote(args.out)}")
    data_cfg = _data_config(args, extra)
    out = prepare(data_cfg, progress=not args.no_progress)
    print(out)
    return 0


def _run_vocab_sweep(args) -> int:
    data_cfg = _data_config(args, [])
    check_writable(args.out)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise DataError(f"--sizes must be comma-separated integers, e.g. 500,1000,5000; got '{args.sizes}'") from None
    rows = vocab_sweep(
        data_cfg,
        sizes=sizes,
        sample_mb=args.sample_mb,
        out_dir=args.out,
        heldout=args.heldout,
        plot=not args.no_plot,
    )
    print("vocab_size,tokens_per_word")
    for r in rows:
        print(f"{r['vocab_size']},{r['tokens_per_word']}")
    return 0


def add_subcommands(subparsers) -> None:
    """Register `prepare` and `vocab-sweep` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "prepare",
        help="train the BPE tokenizer (or take data.tokenizer=PATH) and write token files (train.bin, val.bin, test.bin, meta.json)",
        description="Corpus -> tokenizer (BPE trained on the training split, or data.tokenizer=TOKENIZER.json / HF "
        "tokenizer directory / hub name) -> flat token streams (uint16, uint32 above 65,535 ids), one separator "
        "after each article. Re-running with the same corpus and settings reuses the prepared directory.",
    )
    _add_config_args(p)
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size incl. 4 special tokens (default: 5000)")
    p.add_argument("--max-train-mb", type=float, default=None, help="read at most this many MB of training text (whole articles)")
    p.add_argument("--out", default=None, help="prepared-data directory (default: data/prepared/<hash of corpus and settings>)")
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    p.set_defaults(func=_run_prepare)

    s = subparsers.add_parser(
        "vocab-sweep",
        help="paper Figure 1: token-to-word ratio against vocabulary size (PNG + CSV)",
        description="Train BPE on a sample of the training text and measure tokens per whitespace word of the "
        "held-out text for each vocabulary size.",
    )
    _add_config_args(s)
    s.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="comma-separated vocabulary sizes (default: %(default)s)",
    )
    s.add_argument("--sample-mb", type=float, default=20.0, help="MB of training text to train the tokenizers on (default: %(default)s)")
    s.add_argument("--heldout", choices=("valid", "test"), default="valid", help="held-out split whose words are counted (default: valid)")
    s.add_argument("--out", default="runs/vocab_sweep", help="output directory for vocab_sweep.csv/.png (default: %(default)s)")
    s.add_argument("--no-plot", action="store_true", help="write the CSV only")
    s.set_defaults(func=_run_vocab_sweep)
