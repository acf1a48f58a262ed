"""The divergence guard: a diverging run stops with one line, keeps only good checkpoints, and continues with
a lower learning rate through --resume --allow-change."""

import json
import math
import re

import pytest
import torch

from conftest import run_cli, run_main, tiny_overrides
from bootdistill.config import load_config, resolve_model
from bootdistill.errors import BootdistillError
from bootdistill.runtime import checkpoint as ckpt_io
from bootdistill.train.rundir import check_run_dir
from bootdistill.train.eval_cli import evaluate_checkpoint
from bootdistill.train.guard import DivergenceError, DivergenceGuard
from bootdistill.runtime.metrics import read_metrics


def test_guard_reference_is_recent_median_capped_at_uniform():
    g = DivergenceGuard(2.0, vocab_size=300)
    assert g.reference() == pytest.approx(math.log(300))  # nothing seen yet: uniform guessing
    for loss in [4.0, 3.0, 3.2, 5.0, 3.1]:  # one noisy step does not move the median
        g.check_step(1, loss, "")
    assert g.reference() == pytest.approx(3.2)
    assert g.problem(6.3) is None  # < 2 x 3.2
    with pytest.raises(DivergenceError, match=r"step 3 \(loss 6.5 > 2 x its recent level"):
        g.check_step(3, 6.5, "hint")
    with pytest.raises(DivergenceError, match="loss nan"):
        g.check_step(4, float("nan"), "hint")
    slow = DivergenceGuard(2.0, vocab_size=300)
    slow.recent = [20.0] * 20  # a loss that crept up is still measured against ln V
    assert slow.problem(12.0) and not DivergenceGuard(None, 300).problem(1e9)


def test_guard_catches_a_slow_climb_of_the_validation_loss():
    """Each evaluation a little worse than the last never trips the step level; losing half of the best
    validation loss's gain over guessing (ln 300 = 5.70) does, and the guard's memory survives a resume."""
    g = DivergenceGuard(2.0, vocab_size=300)
    vals = [5.0, 4.2, 3.5, 3.7, 3.9, 4.2, 4.5, 4.7, 5.0]  # best 3.5: allowed 5.70 - (5.70 - 3.5) / 2 = 4.60
    for step, val in enumerate(vals[:7], 1):
        g.check_step(step, val, "", lr=0.1 * step)  # the step losses climb with it: no step is 2x the last ones
        g.check_val(step, val, "")
    assert (g.best_val, g.best_lr) == (3.5, pytest.approx(0.3)) and g.suggested_lr(1.0) == pytest.approx(0.3 / 4)
    resumed = DivergenceGuard(2.0, vocab_size=300)
    resumed.load_state_dict(g.state_dict())
    assert resumed.state_dict() == g.state_dict()
    for guard in (g, resumed):
        guard.check_step(8, 4.7, "", lr=0.8)
        assert guard.problem(4.7) is None  # the old rule (2 x the recent level) lets it through
        with pytest.raises(DivergenceError, match=r"step 8 \(validation loss 4.7 > 4.602: it lost more than 1 - 1/2"):
            guard.check_val(8, 4.7, "hint")
    early = DivergenceGuard(2.0, vocab_size=300)
    early.check_val(1, 5.6, "")  # little gained yet: a bump within 5% of the best is not a divergence
    assert early.val_problem(5.68) is None and early.val_problem(5.9)
    unscheduled = DivergenceGuard(2.0, vocab_size=300)
    unscheduled.check_val(1, 4.0, "", record=False)  # an extra evaluation (early max_steps) is checked, not recorded
    assert unscheduled.best_val == math.inf and DivergenceGuard(None, 300).val_problem(5.6) is None


def test_guard_rejects_non_finite_weights():
    model = torch.nn.Linear(2, 2)
    DivergenceGuard(2.0, 300).check_checkpoint(1, model, 3.0, "")
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(DivergenceError, match="non-finite weights"):
        DivergenceGuard(2.0, 300).check_checkpoint(1, model, 3.0, "")


def test_rotation_keeps_the_best_validation_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 2)
    for step, val in [(1, 3.0), (2, 2.0), (3, 2.5), (4, 2.6), (5, 2.7)]:
        ckpt_io.save_checkpoint(tmp_path, step, model, {}, {"val_loss": val}, keep=2)
    assert [p.name for p in ckpt_io.checkpoint_dirs(tmp_path)] == ["step_00000002", "step_00000004", "step_00000005"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def _error_line(r):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


@pytest.mark.parametrize("lr, warmup", [(3, 30), (10, 2)])  # a slow warmup (0.1 more each step): good steps come first
def test_divergence_keeps_good_checkpoints_and_resumes_with_lower_lr(tiny_corpus, tmp_path, lr, warmup):
    out, prepared = tmp_path / "run", tmp_path / "prep"
    extra = {"train.lr_max": lr, "train.checkpoint_every": 1, "train.total_steps": 30, "train.warmup_steps": warmup}
    line = _error_line(run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **extra)))
    assert "diverged" in line and "--resume --allow-change train.lr_max" in line
    assert not (out / "summary.json").exists()
    if warmup > 2:
        assert ckpt_io.checkpoint_dirs(out), "the good steps before the divergence were checkpointed"
    for ckpt in ckpt_io.checkpoint_dirs(out):  # every kept checkpoint evaluates to a sane loss
        assert evaluate_checkpoint(ckpt, max_batches=2)["loss"] < 2 * math.log(300)
    assert not list((out / "checkpoints").glob(".*"))  # no temporary leftovers

    lower = {**extra, "train.lr_max": 3e-3, "train.warmup_steps": 2}
    with pytest.raises(BootdistillError, match="another run.*--allow-change train.lr_max"):  # not without asking
        check_run_dir(out, resolve_model(load_config(None, tiny_overrides(tiny_corpus, out, prepared, **lower))), True)
    r = run_cli("train", "--resume", "--allow-change", "train.lr_max", "--allow-change", "train.warmup_steps",
                *tiny_overrides(tiny_corpus, out, prepared, **lower))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_val_loss"] < math.log(300)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[0]["event"] == "start" and history[-1]["event"] == "resume"
    changed = history[-1]["changed"]
    assert changed["train.lr_max"] == [lr, 3e-3] and changed["train.lr_min"] == [lr / 10, 3e-3 / 10]


def test_allow_change_is_limited_to_training_settings(tiny_corpus, tmp_path):
    args = tiny_overrides(tiny_corpus, tmp_path / "run", tmp_path / "prep")
    assert "with --resume" in _error_line(run_main("train", "--allow-change", "train.lr_max", *args))
    assert "only training settings" in _error_line(run_main("train", "--resume", "--allow-change", "model.d_model", *args))


def test_slow_divergence_keeps_no_bad_checkpoint_and_the_hint_converges(tiny_corpus, tmp_path):
    """The reproducer of a slow climb: a learning rate 10 reached over 300 warmup steps. Every checkpoint kept
    evaluates within the allowed level, and continuing with the learning rate the error line suggests converges
    below the best loss seen before the divergence."""
    out, prepared = tmp_path / "run", tmp_path / "prep"
    extra = {"train.lr_max": 10, "train.warmup_steps": 300, "train.checkpoint_every": 1, "train.total_steps": 300,
             "train.max_steps": 48}
    line = _error_line(run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **extra)))
    assert "validation loss" in line and "gain over guessing" in line, line
    kept = {int(c.name[5:]): json.loads((c / "meta.json").read_text())["val_loss"] for c in ckpt_io.checkpoint_dirs(out)}
    best = min(kept.values())  # every step was evaluated (checkpoint_every 1): the best one is kept
    allowed = max(math.log(300) - (math.log(300) - best) / 2, 1.05 * best)  # half the gain lost, 5% above the best
    assert kept and all(v <= allowed for v in kept.values()), (kept, allowed)
    assert all(evaluate_checkpoint(c, max_batches=1)["loss"] < math.log(300) for c in ckpt_io.checkpoint_dirs(out))

    lr = float(re.search(r"train\.lr_max=([0-9.e-]+)", line)[1])
    assert lr < 10 / 4  # a quarter of the peak, the former hint, diverges again here
    r = run_cli("train", "--resume", "--allow-change", "train.lr_max",
                *tiny_overrides(tiny_corpus, out, prepared, **{**extra, "train.lr_max": lr}))
    assert r.returncode == 0, r.stderr
    last = [row["val_loss"] for row in read_metrics(out / "metrics.jsonl") if "val_loss" in row][-1]
    assert last < best  # on the same validation sequences
