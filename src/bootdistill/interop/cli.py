"""`bootdistill export`: a run's model as a Hugging Face directory."""

from __future__ import annotations


def cmd_export(args) -> int:
    from .hf_export import export_hf

    out = export_hf(args.run, args.out, tokenizer=args.tokenizer)
    print(f"exported {args.run} to {out}: load it with transformers.AutoModelForCausalLM.from_pretrained('{out}') "
          f"and AutoTokenizer.from_pretrained('{out}')")
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("export", help="write a run's model as a Hugging Face transformers directory (GPT-2 + tokenizer)",
                       description="Export a checkpoint as GPT2LMHeadModel + PreTrainedTokenizerFast: OUT loads with "
                                   "AutoModelForCausalLM / AutoTokenizer.from_pretrained(OUT). Needs bootdistill[hf].")
    p.add_argument("run", metavar="RUN", help="a run directory (its latest checkpoint) or a checkpoints/step_* directory")
    p.add_argument("out", metavar="OUT", help="output directory: must not exist yet, or be empty")
    p.add_argument("--tokenizer", help="tokenizer.json (or prepared-data directory) the run was trained with "
                                       "(default: found from the run's config)")
    p.set_defaults(func=cmd_export)
