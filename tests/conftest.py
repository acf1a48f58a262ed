"""Shared fixtures: a tiny WikiText-layout corpus written by the tests themselves, tiny run configs, a module's
prepared data and a tiny trained teacher."""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO.parent / "shared" / "corpus"

WORDS = ("the of and in to a was is for on as by with he that at from his it an were are which this also be "
         "first city river school war album song game team season church film born north south later new two "
         "played built called known released station during between after before three university").split()


def write_wikitext(path: Path, n_articles: int, seed: int, words_per_article: int = 300) -> Path:
    rng = random.Random(seed)
    lines = []
    for a in range(n_articles):
        lines += [" ", f" = Article {seed}-{a} = ", " "]
        for s in range(3):
            if s:
                lines += [" ", f" = = Section {s} = = ", " "]
            words = [rng.choice(WORDS) for _ in range(words_per_article // 3)]
            lines.append(" " + " ".join(words) + " . ")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A directory laid out like ../shared/corpus: train text plus wiki.valid.raw and wiki.test.raw."""
    root = tmp_path_factory.mktemp("corpus")
    write_wikitext(root / "wiki.train.raw", 120, seed=1)
    write_wikitext(root / "wiki.valid.raw", 12, seed=2)
    write_wikitext(root / "wiki.test.raw", 12, seed=3)
    return root


def tiny_overrides(corpus: Path, out: Path, prepared: Path, **extra) -> list[str]:
    base = {
        "data.corpus": str(corpus), "data.vocab_size": 300, "data.prepared_dir": str(prepared),
        "model.d_model": 32, "model.n_layers": 2, "model.n_heads": 2, "model.context": 32,
        "train.lr_max": 3e-3, "train.batch_tokens": 256, "train.micro_batch": 4, "train.warmup_steps": 2,
        "train.total_steps": 12, "train.eval_every": 4, "train.eval_sequences": 8, "train.log_every": 2,
        "train.checkpoint_every": 4, "train.threads": 1, "log.progress": False,
        "log.tensorboard": False, "out_dir": str(out),
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items() if v is not None]  # None: leave that key at its default


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Where a test module's runs keep their prepared data: the first run prepares it, the others reuse it."""
    return tmp_path_factory.mktemp("prepared") / "data"


@pytest.fixture(scope="module")
def teacher(request, tiny_corpus, prepared, tmp_path_factory) -> Path:
    """A finished tiny teacher run (d_model 24, otherwise tiny_overrides) on the module's prepared data. A module
    sets TINY_TEACHER, a dict of overrides, for what its tests need of it (steps, precision ...)."""
    from bootdistill.config import load_config
    from bootdistill.train.trainer import Trainer  # imports torch: only the modules that train a teacher pay for it

    out = tmp_path_factory.mktemp("teacher") / "run"
    extra = {"model.d_model": 24, **getattr(request.module, "TINY_TEACHER", {})}
    Trainer(load_config(None, tiny_overrides(tiny_corpus, out, prepared, **extra))).fit()
    return out


def ctrl_c_reaches_child() -> None:
    """preexec_fn for a child the test will Ctrl-C: a shell starting the suite in the background (`cmd &`) makes
    SIGINT ignored, children inherit that, and Python then never raises KeyboardInterrupt. A terminal user's
    Ctrl-C always arrives, so restore that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_checkpoint(run_dir: Path, min_step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Wait until `run_dir` has a finished checkpoint at `min_step` or later. Not one exact step: old ones are
    rotated away (keep_checkpoints), and a loaded machine can poll past the moment one existed."""
    import time

    from bootdistill.runtime.checkpoint import STEP_DIR, checkpoint_dirs

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(int(STEP_DIR.match(d.name)[1]) >= min_step for d in checkpoint_dirs(run_dir)):
            return
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step >= {min_step} in {run_dir} before the run ended or {timeout} s passed")


def run_cli(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bootdistill.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)


def run_main(*args: str) -> subprocess.CompletedProcess:
    """`bootdistill ARGS` through the CLI's main() in this process: the user's code path without the cost of
    a new interpreter (for commands that fail or finish fast)."""
    from bootdistill.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as e:  # argparse errors
            rc = e.code
    return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())


TINY = {"d_model": 32, "n_layers": 2, "n_heads": 2, "context": 32}


def write_recipe(root: Path, corpus: Path, prepared: Path) -> Path:
    """A teacher, a classical run and a student of it that keep evaluation snapshots: the robust-savings setup."""
    recipe = {
        "name": "robust", "out_dir": str(root / "runs"),
        "defaults": {
            "data": {"corpus": str(corpus), "vocab_size": 300, "prepared_dir": str(prepared)},
            "train": {"batch_tokens": 128, "micro_batch": 4, "warmup_steps": 2, "eval_every": 2, "eval_sequences": 4,
                      "final_eval_sequences": None, "eval_snapshots": True, "log_every": 2, "checkpoint_every": 4,
                      "threads": 1},
            "log": {"progress": False, "tensorboard": False},
        },
        "runs": {
            "teacher": {"model": {**TINY, "d_model": 16}, "train": {"lr_max": 3e-3, "total_steps": 12}},
            "classical": {"model": TINY, "train": {"lr_max": 3e-3, "total_steps": 12}},
            "student": {"model": TINY, "train": {"lr_max": 3e-3, "total_steps": 24},
                        "distill": {"policy": "fixed", "kd_steps": 6, "teacher": "teacher"}},
        },
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# ---------------------------------------------------------------- Hugging Face teachers built here (nothing downloaded)


def train_tokenizer(corpus, kind: str):
    """A tokenizer of each family, trained on the tiny corpus: Llama-like (Metaspace, <s> added by its
    post-processor) or GPT-2-like (byte-level, <|endoftext|>)."""
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    text = [(corpus / "wiki.train.raw").read_text()]
    if kind == "llama":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=350, special_tokens=["<unk>", "<s>", "</s>"],
                                                          show_progress=False))
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        return tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"], show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def save_teacher(out, corpus, kind: str, context: int = 64):
    """(model, tokenizer) saved to `out`; the Llama's vocabulary is padded to a multiple of 64 above its tokenizer's."""
    import torch
    import transformers as tf

    tok = train_tokenizer(corpus, kind)
    torch.manual_seed(0)
    if kind == "llama":
        cfg = tf.LlamaConfig(vocab_size=-(-len(tok) // 64) * 64 + 64, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                             max_position_embeddings=context, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = tf.LlamaForCausalLM(cfg)
    else:
        cfg = tf.GPT2Config(vocab_size=len(tok), n_positions=context, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        model = tf.GPT2LMHeadModel(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return model.eval(), tok


def word_level(path, n_filler: int, eos: str = "<|endoftext|>"):
    """A WordLevel tokenizer.json whose corpus words sit above `n_filler` filler entries (cheap to build at any size)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, eos: 1, **{f"filler{i}": i + 2 for i in range(n_filler)}}
    for w in (*WORDS, ".", "=", "Article", "Section"):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([eos])
    tok.save(str(path))
    return tok
