"""distill.teacher=hf:PATH with tiny models built and saved here (nothing is downloaded)."""

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from bootdistill.config import load_config
from bootdistill.data.prepare import token_file
from bootdistill.errors import BootdistillError
from bootdistill.train.trainer import Trainer

transformers = pytest.importorskip("transformers")  # the [hf] extra

# fp32: the teacher's signal and val loss are compared with the HF model's own float32 forward
STUDENT = {"model.d_model": 48, "model.n_layers": 2, "model.n_heads": 2, "distill.policy": "kd", "distill.alpha": 0.5,
           "train.precision": "fp32"}


@pytest.fixture(scope="module")
def prepared(tiny_corpus, tmp_path_factory):
    from bootdistill.data.prepare import prepare

    out = tmp_path_factory.mktemp("hfprep") / "data"
    cfg = load_config(None, tiny_overrides(tiny_corpus, out / "unused", out)).data
    return prepare(cfg, progress=False)


def save_tiny_gpt2(out, tokenizer_json, vocab=300, n_positions=64):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    model.save_pretrained(out)
    transformers.PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json)).save_pretrained(out)
    return model.eval()


def test_hf_teacher_gives_the_models_logits_and_unknown_training_compute(tiny_corpus, prepared, tmp_path):
    hf = save_tiny_gpt2(tmp_path / "gpt2", prepared / "tokenizer.json")
    trainer = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s", prepared, **STUDENT,
                                                       **{"distill.teacher": f"hf:{tmp_path / 'gpt2'}"})))
    tokens = token_file(prepared, "train")
    x = torch.from_numpy(np.asarray(tokens[:64], dtype=np.int64)).view(2, 32)
    with torch.no_grad():
        ref = hf(input_ids=x).logits
    torch.testing.assert_close(trainer.teacher.signal(x).logits, ref)
    val = token_file(prepared, "val")  # val_loss: mean CE over the first train.eval_sequences (8) blocks
    vx = torch.from_numpy(np.asarray(val[: 8 * 32 + 1], dtype=np.int64))
    with torch.no_grad():
        logits = hf(input_ids=vx[:-1].view(8, 32)).logits
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 300), vx[1:]).item()
    assert trainer.teacher.val_loss == pytest.approx(want, rel=1e-5)
    s = trainer.fit()
    n = sum(p.numel() for p in hf.parameters())
    assert s["teacher"]["source"] == "hf" and s["teacher"]["train_flops"] is None
    assert "unknown" in s["teacher"]["train_flops_note"] and s["flops"]["flops_teacher_train"] == 0.0
    assert s["flops"]["flops_teacher_inference"] == pytest.approx(12 * 256 * 2 * n)
    given = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s2", prepared, **STUDENT, **{
        "distill.teacher": f"hf:{tmp_path / 'gpt2'}", "distill.teacher_train_flops": 1e12, "train.max_steps": 1})))
    assert given.ledger.teacher_train == 1e12 and given.teacher.summary()["train_flops"] == 1e12


def test_hf_teacher_with_another_tokenizer_is_refused(tiny_corpus, prepared, tmp_path):
    from bootdistill.data.prepare import prepare

    other = prepare(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "u", tmp_path / "p280",
                                                     **{"data.vocab_size": 280})).data, progress=False)
    save_tiny_gpt2(tmp_path / "gpt2", other / "tokenizer.json")
    with pytest.raises(BootdistillError, match="gives other ids than the student's") as e:
        Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s", prepared, **STUDENT,
                                                 **{"distill.teacher": f"hf:{tmp_path / 'gpt2'}"})))
    assert "\n" not in str(e.value) and not (tmp_path / "s").exists()
    with pytest.raises(BootdistillError, match="does not exist"):
        Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s", prepared, **STUDENT,
                                                 **{"distill.teacher": f"hf:{tmp_path / 'none'}"})))
    save_tiny_gpt2(tmp_path / "short", prepared / "tokenizer.json", n_positions=16)
    with pytest.raises(BootdistillError, match="context"):
        Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s", prepared, **STUDENT,
                                                 **{"distill.teacher": f"hf:{tmp_path / 'short'}"})))


def test_exported_bootdistill_model_as_hf_teacher_equals_the_live_teacher(tiny_corpus, prepared, tmp_path):
    from conftest import run_cli
    from bootdistill.runtime.metrics import read_metrics

    out = tmp_path / "t"
    Trainer(load_config(None, tiny_overrides(tiny_corpus, out, prepared, **{"model.d_model": 24, "train.total_steps": 8,
                                                                             "train.precision": "fp32"}))).fit()
    r = run_cli("export", str(out), str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    kd = {**STUDENT, "distill.combine": "mix"}
    live = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "live", prepared, **kd,
                                                    **{"distill.teacher": out}))).fit()
    hf = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "hfs", prepared, **kd,
                                                  **{"distill.teacher": f"hf:{tmp_path / 'hf'}"}))).fit()
    assert hf["teacher"]["val_loss"] == pytest.approx(live["teacher"]["val_loss"], rel=1e-5)
    for a, b in zip(read_metrics(tmp_path / "live" / "metrics.jsonl"), read_metrics(tmp_path / "hfs" / "metrics.jsonl")):
        assert b["kd_loss"] == pytest.approx(a["kd_loss"], rel=1e-4) and b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert hf["final_val_loss"] == pytest.approx(live["final_val_loss"], rel=1e-4)
