"""Evaluation FLOPs in the ledger (flops_eval) against the reference formula, and the free switch rule
(distill.switch_on=train) switching where its own logged numbers say it must."""

import pytest

from conftest import tiny_overrides
from bootdistill.compute import flops_per_token
from bootdistill.config import load_config
from bootdistill.data.loader import num_blocks
from bootdistill.data.prepare import token_file
from bootdistill.errors import ConfigError
from bootdistill.shape import ModelShape
from bootdistill.runtime.metrics import read_metrics
from bootdistill.train.trainer import Trainer

STUDENT = {"model.d_model": 48, "model.n_layers": 2, "model.n_heads": 2}
CONTEXT = 32  # tiny_overrides' context


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return tmp_path_factory.mktemp("evalprep") / "data"


@pytest.fixture(scope="module")
def teacher(tiny_corpus, prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    Trainer(load_config(None, tiny_overrides(tiny_corpus, out, prepared, **{"model.d_model": 24, "model.n_heads": 2,
                                                                             "train.total_steps": 40}))).fit()
    return out


def train(corpus, prepared, out, **kw):
    trainer = Trainer(load_config(None, tiny_overrides(corpus, out, prepared, **{**STUDENT, **kw})))
    return trainer, trainer.fit()


def evaluated_tokens(trainer, sequences: int) -> int:
    """Tokens one evaluation reads: the first `sequences` whole blocks of the validation split."""
    blocks = num_blocks(len(token_file(trainer.data_dir, "val")), CONTEXT)
    return min(blocks, sequences) * CONTEXT


def forward(shape: ModelShape, exact: bool = False) -> float:
    return flops_per_token(shape, training=False, exact=exact)


def test_classical_run_counts_every_in_training_evaluation(tiny_corpus, prepared, tmp_path):
    trainer, s = train(tiny_corpus, prepared, tmp_path / "c")
    evals = [r for r in read_metrics(tmp_path / "c" / "metrics.jsonl") if "val_loss" in r]
    per_eval = evaluated_tokens(trainer, trainer.cfg.train.eval_sequences)
    assert per_eval > 0
    for i, row in enumerate(evals, 1):  # cumulative: i evaluations so far
        assert row["flops_eval"] == pytest.approx(i * per_eval * forward(trainer.shape), rel=1e-12)
        assert row["flops_eval_exact"] == pytest.approx(i * per_eval * forward(trainer.shape, exact=True), rel=1e-12)
    assert s["flops"]["flops_eval"] == evals[-1]["flops_eval"]
    assert s["flops"]["flops_total"] == s["flops"]["flops_student"]  # evaluations are not training compute


def test_teacher_evaluations_are_counted_where_the_policy_uses_them(tiny_corpus, prepared, teacher, tmp_path):
    trainer, s = train(tiny_corpus, prepared, tmp_path / "b", **{"distill.policy": "bootstrapped",
                                                                 "distill.teacher": teacher, "distill.margin": 0.5})
    rows = read_metrics(tmp_path / "b" / "metrics.jsonl")
    evals = [r for r in rows if "val_loss" in r]
    t_shape = trainer.teacher.shape
    per_eval = evaluated_tokens(trainer, trainer.cfg.train.eval_sequences)
    diag = evaluated_tokens(trainer, trainer.cfg.distill.diag_sequences)
    expected = per_eval * forward(t_shape)  # the teacher's validation loss, measured once
    for row in evals:
        expected += per_eval * forward(trainer.shape)
        if "val_kl_teacher_student" in row:  # diagnostics: both models forward, while the teacher is loaded
            expected += diag * (forward(trainer.shape) + forward(t_shape))
        assert row["flops_eval"] == pytest.approx(expected, rel=1e-12)
    assert any("val_kl_teacher_student" in r for r in evals) and s["policy"]["kd_stopped_step"] is not None


def test_free_switch_rule_switches_where_its_logged_means_say(tiny_corpus, prepared, teacher, tmp_path):
    margin = 0.3
    _, s = train(tiny_corpus, prepared, tmp_path / "t", **{
        "distill.policy": "bootstrapped", "distill.teacher": teacher, "distill.margin": margin,
        "distill.switch_on": "train", "train.log_every": 1, "train.total_steps": 24})
    rows = read_metrics(tmp_path / "t" / "metrics.jsonl")
    expected, window = None, []
    for row in rows:  # the rule from the logged numbers: mean of each eval_every window of KD steps
        if "teacher_train_ce" in row:
            window.append((row["train_loss"], row["teacher_train_ce"]))
        if row["step"] % 4 == 0 and window:
            student, t = (sum(v) / len(window) for v in zip(*window))
            window = []
            if student <= (1 + margin) * t:
                expected = row["step"]
                break
    assert expected is not None and expected > 4, "pick a margin that switches after the first check"
    assert s["policy"]["kd_stopped_step"] == expected and s["policy"]["switch_on"] == "train"
    assert not any("teacher_train_ce" in r for r in rows if r["step"] > expected)  # KD and its teacher are off


def test_free_switch_rule_needs_a_live_teacher_and_the_bootstrapped_policy(tiny_corpus, prepared, tmp_path):
    with pytest.raises(ConfigError, match="switch_on=train chooses the bootstrapped policy"):
        load_config(None, tiny_overrides(tiny_corpus, tmp_path, prepared, **{"distill.switch_on": "train"}))


def test_an_older_ledger_without_flops_eval_is_reconstructed_as_the_trainer_counts_it(tiny_corpus, prepared, teacher,
                                                                                       tmp_path):
    """The report's reconstruction (report/eval_cost.py) of a run trained before evaluations were counted gives
    the numbers this run's own ledger logged, once they are stripped from its metrics."""
    from bootdistill.report.eval_cost import reconstruct_flops_eval
    from bootdistill.report.runs import load_run

    trainer, _ = train(tiny_corpus, prepared, tmp_path / "b", **{
        "distill.policy": "bootstrapped", "distill.teacher": teacher, "distill.margin": 0.5,
        "distill.diag_sequences": 4})  # the tiny split holds 8 blocks: neither set is cut short by it
    assert evaluated_tokens(trainer, 8) == 8 * CONTEXT
    run = load_run(tmp_path / "b")
    logged = [r[k] for r in run.metrics for k in ("flops_eval", "flops_eval_exact")]
    for row in run.metrics:
        del row["flops_eval"], row["flops_eval_exact"]
    assert reconstruct_flops_eval(run)
    assert [r[k] for r in run.metrics for k in ("flops_eval", "flops_eval_exact")] == pytest.approx(logged, rel=1e-12)
    assert not reconstruct_flops_eval(run)  # a ledger that has them is left alone
