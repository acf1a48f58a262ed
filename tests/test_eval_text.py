"""`bootdistill eval RUN --text FILE`: loss and bits per byte of any UTF-8 text with the run's own tokenizer,
without the corpus (it is removed before evaluating)."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from conftest import WORDS, run_main, tiny_overrides


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaltext")
    corpus = root / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    r = run_main("train", *tiny_overrides(corpus, root / "run", root / "prepared", **{"train.max_steps": 4}))
    assert r.returncode == 0, r.stderr
    shutil.rmtree(corpus)  # evaluating a text needs the run's tokenizer, not its corpus
    return root


def reference(run, text: str) -> tuple[float, int]:
    """Total nats of every token of `text` after the separator, one context-long window at a time, and the count."""
    from tokenizers import Tokenizer

    from bootdistill.runtime.loading import load_model_from_checkpoint
    from bootdistill.runtime.device import autocast_context
    from bootdistill.runtime.device import resolve_precision

    model, _, _ = load_model_from_checkpoint(run / "run")
    meta = json.loads((run / "prepared" / "meta.json").read_text())
    ids = [meta["sep_id"]] + Tokenizer.from_file(str(run / "prepared" / "tokenizer.json")).encode(text).ids
    ctx, total = model.shape.context, 0.0
    amp, _ = resolve_precision("auto", torch.device("cpu"))  # what eval uses on this machine
    for s in range(0, len(ids) - 1, ctx):
        window = torch.tensor(ids[s:s + ctx + 1])
        with torch.no_grad(), autocast_context(torch.device("cpu"), amp):
            logits = model(window[None, :-1]).float()[0]
        total += torch.nn.functional.cross_entropy(logits, window[1:], reduction="sum").item()
    return total, len(ids) - 1


@pytest.mark.parametrize("words", [5, 400])  # shorter than one context; several windows and a short last one
def test_eval_text_gives_loss_and_bits_per_byte(run, words, tmp_path):
    rng = np.random.default_rng(words)
    text = "Café — " + " ".join(rng.choice(WORDS, words)) + " .\r\nZürich\n"  # non-ASCII, CRLF: bytes as in the file
    path = tmp_path / "mine.txt"
    path.write_bytes(text.encode("utf-8"))
    r = run_main("eval", str(run / "run"), "--text", str(path), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    nats, tokens = reference(run, text)
    assert got["tokens"] == tokens and got["bytes"] == path.stat().st_size
    assert got["loss"] == pytest.approx(nats / tokens, rel=2e-3)
    assert got["bits_per_byte"] == pytest.approx(nats / math.log(2) / path.stat().st_size, rel=2e-3)
    r = run_main("eval", str(run / "run"), "--text", str(path))
    assert r.returncode == 0 and "bits/byte" in r.stdout


def test_eval_text_bad_input_is_one_line(run, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "ok.txt").write_text("the city")
    for args, says in (((str(tmp_path / "none.txt"),), "does not exist"), ((str(tmp_path / "latin1.txt"),), "not UTF-8"),
                       ((str(tmp_path / "empty.txt"),), "holds no text"),
                       ((str(tmp_path / "ok.txt"), "--split", "test"), "drop --data, --split")):
        r = run_main("eval", str(run / "run"), "--text", *args)
        assert r.returncode == 2 and says in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")
