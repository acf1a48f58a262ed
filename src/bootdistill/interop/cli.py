"""`bootdistill export`: a run's model as a Hugging Face directory; `bootdistill generate`: sample from a model."""

from __future__ import annotations

# hf_export and generate load torch: imported when their subcommand runs, so `bootdistill --help` starts fast


def cmd_export(args) -> int:
    from .hf_export import export_hf

    out = export_hf(args.run, args.out, tokenizer=args.tokenizer)
    print(f"exported {args.run} to {out}: load it with transformers.AutoModelForCausalLM.from_pretrained('{out}') "
          f"and AutoTokenizer.from_pretrained('{out}')")
    return 0


def cmd_generate(args) -> int:
    from .generate import generate

    print(generate(args.run, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   top_k=args.top_k, seed=args.seed, tokenizer=args.tokenizer))
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("export", help="write a run's model as a Hugging Face transformers directory (model + tokenizer)",
                       description="Export a checkpoint as GPT2LMHeadModel (model.arch gpt2) or LlamaForCausalLM (llama) "
                                   "+ PreTrainedTokenizerFast: OUT loads with "
                                   "AutoModelForCausalLM / AutoTokenizer.from_pretrained(OUT). Needs bootdistill[hf].")
    p.add_argument("run", metavar="RUN", help="a run directory (its latest checkpoint) or a checkpoints/step_* directory")
    p.add_argument("out", metavar="OUT", help="output directory: must not exist yet, or be empty")
    p.add_argument("--tokenizer", help="tokenizer.json (or prepared-data directory) the run was trained with "
                                       "(default: found from the run's config)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("generate", help="continue a prompt with a trained model (a run, a checkpoint or an export)",
                       description="Print the model's continuation of --prompt, tokenized with the model's own tokenizer. "
                                   "The continuation ends at the end of a document or after --max-new-tokens. The same "
                                   "--seed gives the same text; --temperature 0 is greedy.")
    p.add_argument("run", metavar="RUN", help="a run directory (its latest checkpoint), a checkpoints/step_* directory "
                                              "or a directory written by `bootdistill export`")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=100, help="at most this many new tokens (default 100)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy (default 1.0)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens only (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.add_argument("--tokenizer", help="tokenizer.json (or prepared-data directory) the run was trained with "
                                       "(default: found from the run's config)")
    p.set_defaults(func=cmd_generate)
