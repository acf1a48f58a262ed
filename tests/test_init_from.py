"""`model.init_from`: a run starts from a checkpoint's or a Hugging Face model's weights, counts their compute
when it is known, resumes bitwise, and refuses a source of another shape in one line before any work."""

import json
from pathlib import Path

import pytest
import torch

from conftest import run_main, tiny_overrides
from test_resume import assert_same_run
from bootdistill.runtime.loading import load_model_from_checkpoint

FROZEN = {"train.lr_max": 0.0, "train.lr_min": 0.0, "train.total_steps": 1, "train.warmup_steps": 1, "train.eval_every": 1,
          "train.checkpoint_every": 1, "model.dropout": 0.0}  # one step that changes no weight


def one_line_error(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return tmp_path_factory.mktemp("prepared") / "data"


@pytest.fixture(scope="module")
def source(tiny_corpus, prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source") / "run"
    r = run_main("train", *tiny_overrides(tiny_corpus, out, prepared, **{"train.total_steps": 8}))
    assert r.returncode == 0, r.stderr
    return out


def test_init_from_a_checkpoint_continues_at_its_loss_and_counts_its_compute(tiny_corpus, prepared, source, tmp_path):
    out = tmp_path / "run"
    r = run_main("train", *tiny_overrides(tiny_corpus, out, prepared, **FROZEN, **{"model.init_from": str(source)}))
    assert r.returncode == 0, r.stderr
    assert "starts from the weights of" in r.stdout and "the source checkpoint's own ledger" in r.stdout
    src = json.loads((source / "summary.json").read_text())
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    src_val = json.loads((source / "checkpoints" / "step_00000008" / "meta.json").read_text())["val_loss"]
    assert first["val_loss"] == pytest.approx(src_val, abs=1e-6)  # the same weights: its loss, not ln(V)
    s = json.loads((out / "summary.json").read_text())
    assert s["init"]["kind"] == "checkpoint" and s["init"]["step"] == 8
    assert s["flops"]["flops_init"] == s["init"]["train_flops"] == src["flops"]["flops_total"]
    f = s["flops"]
    assert f["flops_total"] == pytest.approx(f["flops_student"] + f["flops_init"])
    r = run_main("report", str(out), "--out", str(tmp_path / "report"))
    assert r.returncode == 0, r.stderr
    assert f"starts from the weights of `{source / 'checkpoints' / 'step_00000008'}`; their training compute: the " \
           "source checkpoint's own ledger" in (tmp_path / "report" / "report.md").read_text()

    given = tmp_path / "given"  # a given compute replaces the ledger's
    r = run_main("train", *tiny_overrides(tiny_corpus, given, prepared, **FROZEN, **{
        "model.init_from": str(source / "checkpoints" / "step_00000008"), "model.init_flops": 1e12}))
    assert r.returncode == 0, r.stderr
    assert json.loads((given / "summary.json").read_text())["flops"]["flops_init"] == 1e12


def test_init_from_run_resumes_bitwise(tiny_corpus, prepared, source, tmp_path):
    extra = {"model.init_from": str(source), "train.total_steps": 6, "train.checkpoint_every": 3, "train.eval_every": 3}
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert run_main("train", *tiny_overrides(tiny_corpus, ref, prepared, **extra)).returncode == 0
    args = tiny_overrides(tiny_corpus, out, prepared, **extra)
    assert run_main("train", *args, "train.max_steps=3").returncode == 0
    r = run_main("train", "--resume", *args)
    assert r.returncode == 0, r.stderr
    assert_same_run(ref, out)


def test_init_from_a_hugging_face_llama(tiny_corpus, prepared, source, tmp_path):
    """A LlamaForCausalLM saved by transformers (GQA, untied head, its own FFN width) becomes our llama exactly."""
    transformers = pytest.importorskip("transformers")
    vocab = json.loads((source / "summary.json").read_text())["model"]["vocab_size"]
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, rms_norm_eps=1e-5, tie_word_embeddings=False)).eval()
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "run"
    llama = {"model.arch": "llama", "model.n_kv_heads": 1, "model.d_ff": 80, "model.tie_embeddings": False}
    r = run_main("train", *tiny_overrides(tiny_corpus, out, prepared, **FROZEN, **llama,
                                          **{"model.init_from": str(tmp_path / "hf")}))
    assert r.returncode == 0, r.stderr
    assert "unknown: not counted" in r.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["init"]["kind"] == "hf" and s["init"]["train_flops"] is None and s["flops"]["flops_init"] == 0.0
    ours, _, _ = load_model_from_checkpoint(out)
    x = torch.randint(0, vocab, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=0)

    r = run_main("train", *tiny_overrides(tiny_corpus, tmp_path / "mismatch", prepared, **FROZEN,
                                          **{**llama, "model.d_ff": None, "model.init_from": str(tmp_path / "hf")}))
    assert "model.d_ff 80 there, 96 here" in one_line_error(r)


def test_mismatch_or_bad_source_is_one_line_before_any_work(tiny_corpus, prepared, source, tmp_path):
    out = tmp_path / "run"
    r = run_main("train", *tiny_overrides(tiny_corpus, out, tmp_path / "unprepared", **{
        "model.init_from": str(source), "model.d_model": 48, "model.n_layers": 3}))
    line = one_line_error(r)
    assert "model.d_model 32 there, 48 here" in line and "model.n_layers 2 there, 3 here" in line
    assert not out.exists() and not (tmp_path / "unprepared").exists()  # checked before the data is prepared

    r = run_main("train", *tiny_overrides(tiny_corpus, out, prepared, **{"model.init_from": str(tmp_path / "nope")}))
    assert "does not exist" in one_line_error(r)
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    r = run_main("train", *tiny_overrides(tiny_corpus, out, prepared, **{"model.init_from": str(tmp_path / "bert")}))
    assert "BertForMaskedLM" in one_line_error(r) and "supported are GPT2LMHeadModel and LlamaForCausalLM" in r.stderr
    assert not out.exists()
