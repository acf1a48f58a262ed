"""Distillation through the one trainer: teacher checks, alpha = 0 equals classical, the ledger, resume in KD."""

import json

import pytest
from safetensors.torch import load_file

from conftest import run_cli, tiny_overrides
from bootdistill.compute import flops_per_token
from bootdistill.config import load_config
from bootdistill.errors import BootdistillError
from bootdistill.shape import ModelShape
from bootdistill.runtime.metrics import read_metrics
from bootdistill.train.trainer import Trainer

STUDENT = {"model.d_model": 48, "model.n_layers": 2, "model.n_heads": 2}
TINY_TEACHER = {"model.n_heads": 2, "train.total_steps": 40}  # conftest's `teacher`


def train(corpus, prepared, out, _resume=False, **kw):
    cfg = load_config(None, tiny_overrides(corpus, out, prepared, **{**STUDENT, **kw}))
    trainer = Trainer(cfg, resume=_resume)
    return trainer, trainer.fit()


def test_alpha_zero_is_exactly_classical(tiny_corpus, prepared, teacher, tmp_path):
    _, a = train(tiny_corpus, prepared, tmp_path / "classical")
    _, b = train(tiny_corpus, prepared, tmp_path / "kd0", **{"distill.policy": "kd", "distill.alpha": 0.0,
                                                             "distill.teacher": teacher})
    ra, rb = read_metrics(tmp_path / "classical" / "metrics.jsonl"), read_metrics(tmp_path / "kd0" / "metrics.jsonl")
    assert [r["train_loss"] for r in ra] == [r["train_loss"] for r in rb]
    assert a["final_val_loss"] == b["final_val_loss"]
    assert b["flops"]["flops_teacher_inference"] == 0.0  # alpha = 0: the teacher never ran


def test_bootstrapped_run_ledger_and_diagnostics(tiny_corpus, prepared, teacher, tmp_path):
    trainer, s = train(tiny_corpus, prepared, tmp_path / "boot", **{"distill.policy": "bootstrapped",
                                                                    "distill.teacher": teacher, "distill.margin": 0.5})
    teacher_summary = json.loads((teacher / "summary.json").read_text())
    rows = read_metrics(tmp_path / "boot" / "metrics.jsonl")
    first_eval = next(r for r in rows if "val_loss" in r)
    for key in ("teacher_val_loss", "val_kl_teacher_student", "student_entropy", "teacher_entropy", "top1_agreement"):
        assert key in first_eval
    switch = s["policy"]["kd_stopped_step"]
    assert switch is not None  # margin 50%: the student catches up within the run
    kd_steps = sum(1 for r in rows if r["kd_on"])  # rows every 2 steps; count from the policy instead
    t_shape = ModelShape(**{k: v for k, v in s["teacher"]["model"].items()}, dropout=0.1)
    expected_inference = switch * 256 * flops_per_token(t_shape, training=False)
    assert s["flops"]["flops_teacher_inference"] == pytest.approx(expected_inference)
    assert s["flops"]["flops_teacher_train"] == pytest.approx(teacher_summary["flops"]["flops_total"])
    f = s["flops"]
    assert f["flops_total"] == pytest.approx(f["flops_student"] + f["flops_teacher_inference"] + f["flops_teacher_train"])
    assert all(not r["kd_on"] for r in rows if r["step"] > switch)
    assert s["teacher"]["val_loss"] == pytest.approx(first_eval["teacher_val_loss"])
    assert trainer.teacher.model is None  # freed once KD stopped
    assert kd_steps >= 1


@pytest.mark.parametrize("offset", [-1, 1])  # stop in the middle of KD, and right after the switch
def test_resume_in_kd_and_after_switch_is_exact(tiny_corpus, prepared, teacher, tmp_path, offset):
    kd = {"distill.policy": "bootstrapped", "distill.teacher": teacher, "distill.margin": 0.15,
          "train.checkpoint_every": 1, "train.eval_every": 2}
    _, ref = train(tiny_corpus, prepared, tmp_path / "ref", **kd)
    switch = ref["policy"]["kd_stopped_step"]
    assert switch is not None and switch >= 4
    stop_at = switch + offset
    train(tiny_corpus, prepared, tmp_path / "split", **kd, **{"train.max_steps": stop_at})
    _, res = train(tiny_corpus, prepared, tmp_path / "split", **kd, _resume=True)
    assert res["final_val_loss"] == ref["final_val_loss"]
    assert res["policy"] == ref["policy"] and res["flops"] == ref["flops"]
    wa = load_file(sorted((tmp_path / "ref" / "checkpoints").glob("step_*"))[-1] / "model.safetensors")
    wb = load_file(sorted((tmp_path / "split" / "checkpoints").glob("step_*"))[-1] / "model.safetensors")
    assert all((wa[k] == wb[k]).all() for k in wa)


def test_teacher_bad_inputs(tiny_corpus, prepared, teacher, tmp_path):
    with pytest.raises(BootdistillError, match="does not exist"):
        train(tiny_corpus, prepared, tmp_path / "a", **{"distill.policy": "kd", "distill.teacher": tmp_path / "none"})
    with pytest.raises(BootdistillError, match="context"):
        train(tiny_corpus, prepared, tmp_path / "b", **{"distill.policy": "kd", "distill.teacher": teacher,
                                                        "model.context": 64, "train.batch_tokens": 256})
    other = tmp_path / "other-prep"
    with pytest.raises(BootdistillError, match="tokenizer|vocabulary"):
        train(tiny_corpus, other, tmp_path / "c", **{"distill.policy": "kd", "distill.teacher": teacher,
                                                     "data.vocab_size": 280})
    assert not (tmp_path / "c" / "config.yaml").exists()


def test_cli_bad_distill_values(tiny_corpus, prepared, teacher, tmp_path):
    for override, message in [("distill.alpha=1.5", "alpha"), ("distill.temperature=0", "temperature"),
                              ("distill.margin=-1", "margin")]:
        r = run_cli("train", *tiny_overrides(tiny_corpus, tmp_path / "r", prepared), "distill.policy=kd",
                    f"distill.teacher={teacher}", override)
        assert r.returncode == 2 and message in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr
