"""End-to-end training through the CLI on a tiny corpus: determinism, outputs, bad input (kill-and-resume:
test_resume.py)."""

import json

import pytest

from conftest import run_cli, tiny_overrides
from bootdistill.runtime.metrics import read_metrics
from bootdistill.train.metrics import duration, progress_line


def test_train_writes_metrics_summary_checkpoints(tiny_corpus, prepared, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", *tiny_overrides(tiny_corpus, out, prepared))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = read_metrics(out / "metrics.jsonl")
    evals = [row for row in rows if "val_loss" in row]
    assert [row["step"] for row in evals] == [4, 8, 12]
    for key in ("step", "tokens", "flops_total", "lr", "train_loss", "tokens_per_s", "mfu"):
        assert key in rows[-1]
    assert rows[-1]["tokens"] == 12 * 256
    assert summary["flops"]["flops_total"] == pytest.approx(6 * summary["n_params"] * 12 * 256)
    assert summary["final_val_loss"] < 5.7  # ln(300) = 5.70 at init: it learned something
    assert set(summary["positional_test_loss"]) == {"32"}
    assert summary["machine"]["cpu"] and summary["machine"]["threads"] == 1  # figures name their machine
    assert (out / "config.yaml").is_file()
    assert len(list((out / "checkpoints").glob("step_*"))) == 2  # keep_checkpoints
    # without a progress bar (log.progress=false, as in logs and background jobs): a plain line per evaluation
    progress = [line for line in r.stdout.splitlines() if line.startswith("step ") and "so far" in line]
    assert [line.split(":")[0] for line in progress] == ["step 4/12 (33%)", "step 8/12 (67%)", "step 12/12 (100%)"]
    for line, row in zip(progress, evals):
        assert f"val {row['val_loss']:.4f}, " in line and " tokens/s, " in line
    assert progress[-1].endswith("about 0s to go")


def test_progress_line_speed_and_time_left():
    # 300 steps of 4096 tokens in 40 minutes: 512 tokens/s; 1,075 steps left at 8 s each
    line = progress_line(425, 1500, 300, 2400.0, 4096, 5.61414)
    assert line == "step 425/1500 (28%): val 5.6141, 512 tokens/s, 40m00s so far, about 2h23m to go"
    assert duration(59.4) == "59s" and duration(61) == "1m01s" and duration(4 * 3600 + 300) == "4h05m"
    assert progress_line(3, 10, 0, 0.0, 8, None) == \
        "step 3/10 (30%): speed not yet known, 0s so far, time left not yet known"


def test_same_config_same_curve(tiny_corpus, prepared, tmp_path):
    curves = []
    for name in ("a", "b"):
        out = tmp_path / name
        r = run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **{"train.max_steps": 6}))
        assert r.returncode == 0, r.stderr
        curves.append([row["train_loss"] for row in read_metrics(out / "metrics.jsonl")])
    assert curves[0] == curves[1]


def _one_error_line(r):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr  # progress notes may precede it
    assert "Traceback" not in r.stderr
    return errors[0]


def test_bad_config_key_suggests(tiny_corpus, prepared, tmp_path):
    line = _one_error_line(run_cli("train", *tiny_overrides(tiny_corpus, tmp_path / "r", prepared), "train.lr_mx=1"))
    assert "did you mean 'lr_max'" in line
    assert not (tmp_path / "r").exists()


def test_wrong_type_and_range(tiny_corpus, prepared, tmp_path):
    assert "integer" in _one_error_line(run_cli("train", *tiny_overrides(tiny_corpus, tmp_path / "r", prepared), "train.total_steps=many"))
    assert "must be > 0" in _one_error_line(run_cli("train", *tiny_overrides(tiny_corpus, tmp_path / "r", prepared), "model.n_layers=0"))


def test_missing_and_empty_corpus(tmp_path, prepared):
    line = _one_error_line(run_cli("train", *tiny_overrides(tmp_path / "nope", tmp_path / "r", tmp_path / "p")))
    assert "nope" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "wiki.train.raw").write_text("")
    _one_error_line(run_cli("train", *tiny_overrides(empty, tmp_path / "r", tmp_path / "p2")))
    assert not (tmp_path / "r").exists()


def test_corpus_without_articles(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "wiki.train.raw").write_text("just some lines\nwithout any title line\n" * 50)
    line = _one_error_line(run_cli("train", *tiny_overrides(bad, tmp_path / "r", tmp_path / "p")))
    assert "article" in line.lower()


def test_out_dir_holding_another_run(tiny_corpus, prepared, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **{"train.max_steps": 2})).returncode == 0
    before = sorted(p.name for p in out.rglob("*"))
    line = _one_error_line(run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **{"train.lr_max": 1e-3})))
    assert "another run" in line and "train.lr_max" in line
    line = _one_error_line(run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **{"train.max_steps": 2})))
    assert "--resume" in line
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing the user had was touched
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert "not a bootdistill run" in _one_error_line(run_cli("train", *tiny_overrides(tiny_corpus, other, prepared)))


def test_corrupt_and_truncated_checkpoint(tiny_corpus, prepared, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **{"train.max_steps": 4})).returncode == 0
    ckpt = sorted((out / "checkpoints").glob("step_*"))[-1]
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = _one_error_line(run_cli("train", "--resume", *tiny_overrides(tiny_corpus, out, prepared, **{"train.max_steps": 8})))
    assert "corrupt or truncated" in line
    assert "corrupt or truncated" in _one_error_line(run_cli("eval", str(ckpt)))
    assert "does not exist" in _one_error_line(run_cli("eval", str(tmp_path / "missing")))


def test_eval_checks_context_and_tokenizer(tiny_corpus, prepared, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **{"train.max_steps": 2})).returncode == 0
    r = run_cli("eval", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["loss"] > 0
    assert "longer than the model's context" in _one_error_line(run_cli("eval", str(out), "--context", "64"))
    other = tmp_path / "other-data"
    r = run_cli("prepare", f"data.corpus={tiny_corpus}", "data.vocab_size=280", f"data.prepared_dir={other}")
    assert r.returncode == 0, r.stderr
    assert "tokenizer" in _one_error_line(run_cli("eval", str(out), "--data", str(other)))


def test_full_disk_leaves_no_half_written_checkpoint(tiny_corpus, prepared, tmp_path, monkeypatch):
    import errno

    import safetensors.torch

    from bootdistill.config import load_config
    from bootdistill.errors import BootdistillError
    from bootdistill.train.trainer import Trainer

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", full)  # what checkpoint.py writes weights with
    out = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(tiny_corpus, out, prepared, **{"train.max_steps": 4}))
    with pytest.raises(BootdistillError, match="no space left"):
        Trainer(cfg).fit()
    assert list((out / "checkpoints").iterdir()) == []


def test_unclipped_training_logs_the_raw_gradient_norm(tiny_corpus, prepared, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **{"train.grad_clip": 0, "train.total_steps": 4}))
    assert r.returncode == 0, r.stderr
    rows = [row for row in read_metrics(out / "metrics.jsonl") if "grad_norm" in row]
    assert rows and all(row["grad_norm"] > 0 for row in rows)
    assert all("val_entropy" in row for row in read_metrics(out / "metrics.jsonl") if "val_loss" in row)


def test_metrics_deleted_during_a_run_are_written_again(tiny_corpus, prepared, tmp_path, capsys):
    from bootdistill.config import load_config
    from bootdistill.train.trainer import Trainer

    out = tmp_path / "run"
    trainer = Trainer(load_config(None, tiny_overrides(tiny_corpus, out, prepared)))
    step = trainer.train_step

    def step_then_delete():  # someone removes metrics.jsonl while the run writes it
        if trainer.step == 5:
            (out / "metrics.jsonl").unlink()
        return step()

    trainer.train_step = step_then_delete
    trainer.fit()
    assert [row["step"] for row in read_metrics(out / "metrics.jsonl")] == [2, 4, 6, 8, 10, 12]
    assert f"warning: '{out / 'metrics.jsonl'}' was deleted or replaced during the run" in capsys.readouterr().err
