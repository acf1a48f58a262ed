"""`bootdistill generate`: deterministic for a seed, the same text from a run, its checkpoint and its export."""

import json
from pathlib import Path

import pytest
import torch

from conftest import run_main, tiny_overrides
from bootdistill.data.tokenizer import SEP_ID, load_tokenizer
from bootdistill.interop.generate import sample
from bootdistill.runtime.loading import load_model_from_checkpoint

PROMPT = " The history of the"


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("gen")
    out = tmp / "run"
    r = run_main("train", *tiny_overrides(tiny_corpus, out, tmp / "prep", **{
        "model.arch": "llama", "model.n_kv_heads": 1, "train.total_steps": 8, "train.checkpoint_every": 8}))
    assert r.returncode == 0, r.stderr
    return out


def generate(source, *args) -> str:
    r = run_main("generate", str(source), "--prompt", PROMPT, "--max-new-tokens", "24", *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n")
    return r.stdout[:-1]


def test_same_seed_same_text_from_run_checkpoint_and_export(run, tmp_path):
    first = generate(run, "--seed", "1")
    assert first and first == generate(run, "--seed", "1")
    assert len({generate(run, "--seed", str(s)) for s in (1, 2, 3)}) > 1  # other seeds, other draws
    assert generate(run / "checkpoints" / "step_00000008", "--seed", "1") == first
    pytest.importorskip("transformers")
    assert run_main("export", str(run), str(tmp_path / "hf")).returncode == 0
    assert generate(tmp_path / "hf", "--seed", "1") == first
    greedy = generate(tmp_path / "hf", "--temperature", "0", "--seed", "5")
    assert greedy == generate(run, "--temperature", "0", "--seed", "6")  # greedy: no draw, no seed


def test_greedy_and_top_k_against_the_model(run):
    """Temperature 0 takes each step's argmax; top-k 1 samples only it; the prompt starts after a boundary."""
    model, _, _ = load_model_from_checkpoint(run)
    tok = load_tokenizer(Path(json.loads((run / "summary.json").read_text())["data"]["dir"]))
    ids = [SEP_ID] + tok.encode(PROMPT).ids
    greedy = sample(model, ids, 12, temperature=0.0, top_k=None, seed=0)
    x = list(ids)
    with torch.no_grad():
        for token in greedy:
            assert token == int(model(torch.tensor([x]))[0, -1].argmax())
            x.append(token)
    assert sample(model, ids, 12, temperature=0.7, top_k=1, seed=3) == greedy
    assert len(sample(model, ids, 40, temperature=1.0, top_k=None, seed=0)) <= 40
    stopped = sample(model, ids, 12, temperature=0.0, top_k=None, seed=0, stop=greedy[0])
    assert stopped == []  # the boundary token ends the continuation


@pytest.mark.parametrize("args, message", [
    (["--prompt", ""], "--prompt is empty"),
    (["--prompt", "x", "--max-new-tokens", "-3"], "--max-new-tokens must be a positive integer"),
    (["--prompt", "x", "--temperature", "-1"], "--temperature must be >= 0"),
    (["--prompt", "x", "--top-k", "0"], "--top-k must be a positive integer"),
])
def test_bad_input_is_one_line(run, args, message):
    r = run_main("generate", str(run), *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert r.stdout == ""


def test_missing_or_empty_source_is_one_line(tmp_path):
    for source, message in ((tmp_path / "nope", "does not exist"), (tmp_path, "no checkpoint")):
        r = run_main("generate", str(source), "--prompt", "x")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
