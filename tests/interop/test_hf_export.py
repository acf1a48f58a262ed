"""`bootdistill export`: a trained run loads in transformers and computes the same logits and token ids."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import SHARED_CORPUS, run_cli, tiny_overrides
from bootdistill.data.tokenizer import load_tokenizer
from bootdistill.errors import BootdistillError, CheckpointError, DataError
from bootdistill.interop.hf_export import export_hf
from bootdistill.runtime.loading import load_model_from_checkpoint

transformers = pytest.importorskip("transformers")  # the [hf] extra; scripts/setup_env.sh installs it

# NFKC (ligature, full-width), accents, dashes, digits: where a re-built tokenizer pipeline would differ
TRICKY = " The ﬁrst café — naïve Ｔｏｋｙｏ 1,234 @-@ km² \" quoted \" ( 1999 ) ."


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory, tiny_corpus) -> Path:
    """Real Wikipedia text from the shared corpus (WikiText's valid/test files), cut small; else the tiny one."""
    if not (SHARED_CORPUS / "wiki.valid.raw").is_file():
        return tiny_corpus
    root = tmp_path_factory.mktemp("real")
    valid = (SHARED_CORPUS / "wiki.valid.raw").read_text()
    test = (SHARED_CORPUS / "wiki.test.raw").read_text()
    (root / "wiki.train.raw").write_text(valid[:300_000])
    (root / "wiki.valid.raw").write_text(test[:40_000])
    (root / "wiki.test.raw").write_text(test[40_000:80_000])
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prep") / "data"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_corpus, prepared) -> Path:
    out = tmp_path_factory.mktemp("hf") / "run"
    r = run_cli("train", *tiny_overrides(real_corpus, out, prepared, **{
        "model.context": 64, "train.batch_tokens": 512, "train.total_steps": 8, "train.eval_every": 8,
        "train.checkpoint_every": 8, "model.dropout": 0.1}))
    assert r.returncode == 0, r.stderr
    return out


def test_export_loads_in_transformers_with_equal_logits_and_ids(trained, real_corpus, tmp_path):
    out = tmp_path / "hf"
    r = run_cli("export", str(trained), str(out))
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    provenance = json.loads((out / "bootdistill.json").read_text())
    assert provenance["step"] == 8 and provenance["checkpoint"].endswith("step_00000008")

    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    assert hf.config.activation_function == "gelu" and hf.config.n_positions == 64

    ours_tok = load_tokenizer(Path(json.loads((trained / "summary.json").read_text())["data"]["dir"]))
    text = (real_corpus / "wiki.valid.raw").read_text()[:6000] + TRICKY
    ids = tok(text)["input_ids"]
    assert ids == ours_tok.encode(text, add_special_tokens=False).ids
    assert len(ids) > 4 * 64
    assert tok.decode(tok(TRICKY)["input_ids"]) == ours_tok.decode(ours_tok.encode(TRICKY).ids)
    assert tok.eos_token == "[SEP]" and tok.pad_token_id == 1

    model, _, _ = load_model_from_checkpoint(trained)
    x = torch.tensor(ids[: 4 * 64]).view(4, 64)
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    assert theirs.dtype == torch.float32 and theirs.shape == ours.shape
    assert (ours - theirs).abs().max().item() <= 1e-4
    assert ours.std() > 0.1  # a trained model, not all-equal logits


@pytest.fixture(scope="module")
def trained_llama(tmp_path_factory, real_corpus, prepared) -> Path:
    """A llama run with grouped-query attention and an untied head."""
    out = tmp_path_factory.mktemp("hf_llama") / "run"
    r = run_cli("train", *tiny_overrides(real_corpus, out, prepared, **{
        "model.arch": "llama", "model.n_kv_heads": 1, "model.tie_embeddings": False, "model.context": 64,
        "train.batch_tokens": 512, "train.total_steps": 8, "train.eval_every": 8, "train.checkpoint_every": 8}))
    assert r.returncode == 0, r.stderr
    return out


def test_llama_export_is_a_llama_with_equal_logits_on_real_text(trained_llama, real_corpus, tmp_path):
    out = tmp_path / "hf"
    r = run_cli("export", str(trained_llama), str(out))
    assert r.returncode == 0, r.stderr
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert type(hf).__name__ == "LlamaForCausalLM"
    c = hf.config
    assert (c.num_attention_heads, c.num_key_value_heads, c.tie_word_embeddings) == (2, 1, False)
    ids = tok((real_corpus / "wiki.valid.raw").read_text()[:6000])["input_ids"][: 4 * 64]
    model, _, _ = load_model_from_checkpoint(trained_llama)
    x = torch.tensor(ids).view(4, 64)
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    assert theirs.dtype == torch.float32 and theirs.shape == ours.shape
    assert (ours - theirs).abs().max().item() <= 1e-4
    assert ours.std() > 0.1


def test_export_bad_input_one_line_and_nothing_written(trained, tmp_path):
    for args, match in (((str(tmp_path / "nope"), str(tmp_path / "o1")), "does not exist"),
                        ((str(trained), str(trained)), "already exists")):
        r = run_cli("export", *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], r.stderr
    assert not (tmp_path / "o1").exists()

    # the rest in-process (BootdistillError is what the CLI prints as one line)
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        export_hf(empty_run, tmp_path / "o2")
    for unwritable in (Path("/sys/bootdistill-hf"), tmp_path / "a_file" / "hf"):  # /sys: even root cannot write
        (tmp_path / "a_file").write_text("x")
        with pytest.raises(BootdistillError, match="cannot write"):
            export_hf(trained, unwritable)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "empty_run"]  # no temp dirs left


def test_export_tokenizer_lookup_and_missing_transformers(trained, tmp_path, monkeypatch):
    run = tmp_path / "moved"
    shutil.copytree(trained, run)
    (run / "summary.json").unlink()  # an unfinished run: no summary; config.yaml names the prepared data
    prepared = Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["prepared_dir"])
    assert export_hf(run / "checkpoints" / "step_00000008", tmp_path / "a").is_dir()
    (run / "config.yaml").write_text("data: {prepared_dir: /nonexistent}\n")
    with pytest.raises(DataError, match="pass --tokenizer"):
        export_hf(run, tmp_path / "b")
    assert export_hf(run, tmp_path / "c", tokenizer=prepared).is_dir()
    (tmp_path / "other.json").write_text((prepared / "tokenizer.json").read_text().replace("[CLS]", "[CLX]"))
    with pytest.raises(DataError, match="sha256 differs"):
        export_hf(run, tmp_path / "d", tokenizer=tmp_path / "other.json")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the [hf] extra were not installed
    with pytest.raises(BootdistillError, match=r"pip install 'bootdistill\[hf\]'"):
        export_hf(run, tmp_path / "e")
    assert not (tmp_path / "b").exists() and not (tmp_path / "d").exists() and not (tmp_path / "e").exists()
