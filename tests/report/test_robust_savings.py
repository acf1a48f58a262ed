"""The savings number holds still: evaluation noise in the in-training curves and a kill-and-resume move it by
less than 1 point, because target and crossing are measured on the final evaluation set (report/crossing.py)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, write_recipe
from bootdistill.errors import BootdistillError
from bootdistill.report import build_report, load_runs
from bootdistill.report.archive import snapshot_steps
from bootdistill.report.crossing import FullSetEvaluator

def experiment(recipe: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bootdistill.cli", "experiment", str(recipe), *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def student_saving(root: Path) -> tuple[float, dict]:
    report = build_report(load_runs([root / "runs"]))
    row = next(r for r in report["runs"] if r["name"].startswith("student"))
    assert row["measured_on"] == "final val set" and row["crossing"] is not None, report["warnings"]
    return row["savings_pct"], row


@pytest.fixture(scope="module")
def finished(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    proc = experiment(write_recipe(root, tiny_corpus, root / "prep"), "--report")  # as the demo runs it
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert (root / "runs" / "report" / "report.md").is_file() and "one seed cannot tell" in out
    return root


def test_crossing_is_on_the_final_set(finished):
    saving, row = student_saving(finished)
    runs = {r.name.split("-")[0]: r for r in load_runs([finished / "runs"])}
    student, classical = runs["student"], runs["classical"]
    assert snapshot_steps(student.path) == list(range(2, 25, 2))
    target = classical.summary["final_val_loss"]
    assert row["target"] == target
    # the crossing lies between two snapshots evaluated on the whole split, one above the target, one at/below
    evaluated = {int(s): v for s, v in row["crossing"]["evaluated"].items()}
    step = row["crossing"]["step"]
    above = max(s for s in evaluated if s <= step)
    below = min(s for s in evaluated if s >= step)
    assert evaluated[above] >= target >= evaluated[below]
    # the cached loss equals a fresh full-split evaluation of that snapshot
    fresh = FullSetEvaluator(student)
    fresh.losses.clear()
    assert fresh.loss(below) == pytest.approx(evaluated[below], abs=1e-6)
    # C_classical is the baseline's whole run
    base = next(r for r in build_report(load_runs([finished / "runs"]))["runs"] if r["name"] == classical.name)
    assert base["crossing"]["flops_total"] == classical.summary["flops"]["flops_total"]
    assert saving == pytest.approx(100 * (1 - row["crossing"]["flops_total"] / base["crossing"]["flops_total"]))


def test_noise_in_the_training_curve_moves_the_saving_by_under_one_point(finished, tmp_path):
    saving, _ = student_saving(finished)
    # another validation subset of the same size reads every in-training loss with its own sampling error
    rng = random.Random(7)
    for run in (finished / "runs").iterdir():
        metrics = run / "metrics.jsonl"
        if not metrics.is_file():
            continue
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        for r in rows:
            if "val_loss" in r:
                r["val_loss"] += rng.gauss(0, 0.05)
        metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    noisy, _ = student_saving(finished)
    assert abs(noisy - saving) < 1.0


def test_kill_and_resume_moves_the_saving_by_under_one_point(finished, tiny_corpus, tmp_path):
    saving, _ = student_saving(finished)
    recipe = write_recipe(tmp_path, tiny_corpus, finished / "prep")
    proc = experiment(recipe)
    deadline = time.time() + 300
    # kill while the student trains, after its first checkpoint
    while not list((tmp_path / "runs").glob("student-*/checkpoints/step_00000008")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "runs").glob("student-*/summary.json")), "the student finished before the kill"
    proc = experiment(recipe)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    resumed, _ = student_saving(tmp_path)
    assert abs(resumed - saving) < 1.0


def test_diagnostics_ood_and_teacher_difficulty_buckets(finished):
    import numpy as np
    import torch

    from bootdistill.data.prepare import token_file
    from bootdistill.report.diagnostics import BUCKETS, ood_tokens, run_diagnostics
    from bootdistill.runtime.loading import load_model_from_checkpoint

    runs = {r.name.split("-")[0]: r for r in load_runs([finished / "runs"])}
    data_dir = runs["student"].summary["data"]["dir"]
    ids, desc = ood_tokens(data_dir)
    assert len(ids) > 10_000 and ids.max() < 300 and "Python" in desc
    torch.set_num_threads(1)
    d = run_diagnostics(runs["student"].path, runs["classical"].path, runs["teacher"].path, data_dir)
    # brute force: the teacher's per-token test losses, split at their tertiles
    teacher, _, _ = load_model_from_checkpoint(runs["teacher"].path)
    test = torch.from_numpy(np.asarray(token_file(data_dir, "test"), dtype=np.int64))
    n = (len(test) - 1) // 32 * 32
    x, y = test[:n].view(-1, 32), test[1 : n + 1].view(-1, 32)
    with torch.no_grad():
        t_loss = torch.nn.functional.cross_entropy(teacher(x).flatten(0, 1), y.flatten(), reduction="none").numpy()
    assert d["test_tokens"] == n
    assert d["models"]["teacher"]["test_loss"] == pytest.approx(t_loss.mean(), rel=1e-5)
    lo, hi = np.quantile(t_loss, [1 / 3, 2 / 3])
    assert d["models"]["teacher"]["buckets"]["hard"] == pytest.approx(t_loss[t_loss >= hi].mean(), rel=1e-5)
    for m in d["models"].values():  # the thirds recompose the mean
        counts = [(t_loss < lo).sum(), ((t_loss >= lo) & (t_loss < hi)).sum(), (t_loss >= hi).sum()]
        recomposed = sum(m["buckets"][b] * c for b, c in zip(BUCKETS, counts)) / n
        assert recomposed == pytest.approx(m["test_loss"], rel=1e-5)
        assert m["ood_loss"] > 0
    report = build_report(load_runs([finished / "runs"]))
    student = next(r for r in report["runs"] if r["name"].startswith("student"))
    # the report evaluates in the run's own precision (bf16 where the CPU has it), the reference above in fp32
    assert student["diagnostics"]["models"]["student"]["buckets"] == pytest.approx(d["models"]["student"]["buckets"],
                                                                                 abs=0.02)


def test_prediction_written_before_training_and_reported_beside_the_measurement(finished):
    from bootdistill.experiment.prediction import predict_saving

    runs = {r.name.split("-")[0]: r for r in load_runs([finished / "runs"])}
    student, teacher = runs["student"], runs["teacher"]
    pred = json.loads((student.path / "prediction.json").read_text())
    assert not (runs["classical"].path / "prediction.json").exists()
    assert pred["laws"] == "Table 6" and pred["extrapolated"]  # 100M-13B laws, applied to a tiny model
    # the same numbers the planner gives for this student, its token budget and its teacher's whole cost
    expected = predict_saving(student.summary["n_params"], student.summary["tokens"], teacher.summary["n_params"],
                              teacher.summary["flops"]["flops_total"], 0.05)
    assert pred["best_saving_pct"] == pytest.approx(expected["best_saving_pct"], rel=1e-6)
    assert pred["saving_pct"] == expected["saving_pct"] or pred["saving_pct"] == pytest.approx(expected["saving_pct"])
    report = build_report(load_runs([finished / "runs"]), diagnostics=False)
    row = next(r for r in report["runs"] if r["name"] == student.name)
    measured = row["savings_pct"]
    assert row["prediction"]["measured_pct"] == measured
    if pred["saving_pct"] is not None:
        assert row["prediction"]["error_points"] == pytest.approx(measured - pred["saving_pct"])
    from bootdistill.report.markdown import render_markdown
    assert "## Predicted against measured" in render_markdown(report, {})


def test_an_archive_reports_like_its_run_and_its_teacher_still_teaches(finished, tmp_path, capsys):
    import torch

    from bootdistill.cli import main
    from bootdistill.runtime.loading import load_model_from_checkpoint

    runs_dir, archive = finished / "runs", tmp_path / "archive"
    before = {split: build_report(load_runs([runs_dir]), split=split, diagnostics=split == "val")
              for split in ("val", "test")}  # every split reported first: that caches the whole-split losses
    assert main(["archive", str(runs_dir), "--to", str(archive), "--weights"]) == 0
    first = {f: f.read_bytes() for f in archive.rglob("*") if f.is_file()}
    time.sleep(1.1)  # the marker's time has a resolution of one second
    assert main(["archive", str(runs_dir), "--to", str(archive)]) == 0  # again: the archive is updated in place
    assert {f: f.read_bytes() for f in archive.rglob("*") if f.is_file()} == first  # unchanged runs: not one byte
    assert not list(archive.rglob("evals/step_*.safetensors")) and not list(archive.rglob("state.pt"))
    runs = {r.name.split("-")[0]: r for r in load_runs([runs_dir])}
    student = archive / runs["student"].name
    assert json.loads((student / "archive.json").read_text())["snapshot_steps"] == snapshot_steps(runs["student"].path)
    for split, report in before.items():
        after = build_report(load_runs([archive]), split=split, diagnostics=split == "val")
        row = lambda rep: next(r for r in rep["runs"] if r["name"].startswith("student"))  # noqa: E731
        assert row(after)["savings_pct"] == row(report)["savings_pct"]
        assert row(after)["crossing"] == row(report)["crossing"]
        if split == "val":
            assert row(after)["diagnostics"] == row(report)["diagnostics"] is not None
    # the teacher's final weights came along (without optimizer state): it loads as a teacher, bit for bit
    original, _, _ = load_model_from_checkpoint(runs["teacher"].path)
    kept, meta, _ = load_model_from_checkpoint(archive / runs["teacher"].name)
    assert meta["weights_only"] and all(torch.equal(a, b) for a, b in zip(original.parameters(), kept.parameters()))
    # a split that was not cached cannot be measured without the snapshots: one clear error, not a wrong number
    (student / "evals" / "full_test.json").unlink()
    with pytest.raises(BootdistillError, match="no longer has its step-.* snapshot"):
        build_report(load_runs([archive]), split="test", diagnostics=False)
    # a directory that is not an archive is never overwritten
    (tmp_path / "taken" / runs["classical"].name).mkdir(parents=True)
    capsys.readouterr()
    assert main(["archive", str(runs["classical"].path), "--to", str(tmp_path / "taken")]) == 2
    assert "is not an archive" in capsys.readouterr().err
    assert not list((tmp_path / "taken" / runs["classical"].name).iterdir())

