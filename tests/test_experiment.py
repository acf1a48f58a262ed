"""Recipes end to end: plan, run, reuse finished runs, resume an interrupted one, report."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli, wait_for_checkpoint
from bootdistill.errors import ConfigError
from bootdistill.experiment import batch_threads, load_recipe

TINY = {"d_model": 32, "n_layers": 2, "n_heads": 2, "context": 32}


def write_recipe(path: Path, corpus: Path, out: Path, prepared: Path, steps: int = 12, **runs_extra) -> Path:
    recipe = {
        "name": "tiny",
        "out_dir": str(out),
        "defaults": {
            "data": {"corpus": str(corpus), "vocab_size": 300, "prepared_dir": str(prepared)},
            "train": {"batch_tokens": 128, "micro_batch": 4, "warmup_steps": 2, "total_steps": steps, "eval_every": 2,
                      "eval_sequences": 8, "log_every": 2, "checkpoint_every": 2, "threads": 1},
            "log": {"progress": False, "tensorboard": False},
        },
        "runs": {
            "teacher": {"model": {**TINY, "d_model": 16}, "train": {"lr_max": 3e-3, "total_steps": 24}},
            "classical": {"model": {**TINY, "d_model": 48}, "train": {"lr_max": 3e-3}},
            "boot": {"extends": "classical", "distill": {"policy": "bootstrapped", "teacher": "teacher", "margin": 0.2}},
            **runs_extra,
        },
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_plan_resolves_teachers_grids_and_weak_teachers(tiny_corpus, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_corpus, tmp_path / "out", tmp_path / "prep",
                          kd={"extends": "boot", "grid": {"distill.margin": [0.1, 0.3]}},
                          weak={"extends": "boot", "distill": {"teacher": "teacher@10"}})
    _, order = load_recipe(recipe)
    names = [p.name for p in order]
    assert names[0] == "teacher" and {"kd-margin0.1", "kd-margin0.3", "weak"} <= set(names)
    by = {p.name: p for p in order}
    assert by["boot"].cfg.distill.teacher == str(by["teacher"].run_dir)
    assert by["weak"].cfg.distill.teacher.endswith("checkpoints/step_00000010")
    assert by["teacher"].cfg.train.keep_checkpoints >= 13  # every checkpoint kept for the weak teacher
    assert by["kd-margin0.1"].run_dir != by["kd-margin0.3"].run_dir
    r = run_cli("experiment", str(recipe), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "boot" in r.stdout and "t.train" in r.stdout and not (tmp_path / "out").exists()


@pytest.mark.parametrize("runs, message", [
    ({"x": {"extends": "nope"}}, "extends unknown run 'nope'"),
    ({"x": {"extends": "x"}}, "cycle"),
    ({"x": {"extends": "classical", "distill": {"policy": "kd", "teacher": "ghost"}}}, "not a run of this recipe"),
    ({"x": {"extends": "classical", "train": {"lr_mx": 1}}}, "did you mean 'lr_max'"),
    ({"x": {"extends": "boot", "distill": {"teacher": "teacher@3"}}}, "not a checkpoint"),
])
def test_bad_recipes(tiny_corpus, tmp_path, runs, message):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_corpus, tmp_path / "out", tmp_path / "prep", **runs)
    with pytest.raises(ConfigError, match=message):
        load_recipe(recipe)


def test_a_batch_shares_the_cores_among_the_runs_still_to_train(tiny_corpus, tmp_path):
    """Side by side on 2 cores: a finished run is only reused (1), a started run resumes on the threads it began
    with (bitwise resume), the runs still to start share what is left."""
    recipe = write_recipe(tmp_path / "r.yaml", tiny_corpus, tmp_path / "out", tmp_path / "prep",
                          other={"extends": "classical", "model": {"d_model": 40}})
    _, order = load_recipe(recipe)
    by = {p.name: p for p in order}
    batch = [by["classical"], by["boot"], by["other"]]
    assert batch_threads(batch, 2) == {"classical": 1, "boot": 1, "other": 1}  # three new on 2 cores: never 0
    assert batch_threads(batch[:1], 2) == {"classical": 2}  # alone: every core
    for name, started_with in (("classical", None), ("boot", 1)):
        by[name].run_dir.mkdir(parents=True)
        (by[name].run_dir / "config.yaml").write_text(yaml.safe_dump({"train": {"threads": started_with}}))
    (by["classical"].run_dir / "summary.json").write_text("{}")
    assert batch_threads(batch, 2) == {"classical": 1, "boot": 1, "other": 1}
    assert batch_threads(batch, 4) == {"classical": 1, "boot": 1, "other": 3}
    (by["classical"].run_dir / "summary.json").unlink()  # started with torch's default: it keeps every core
    assert batch_threads(batch, 4) == {"classical": 4, "boot": 1, "other": 1}


def test_interrupted_experiment_reuses_and_resumes_then_reports(tiny_corpus, tmp_path):
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_corpus, out, tmp_path / "prep", steps=40)
    _, order = load_recipe(recipe)
    boot_dir = next(p.run_dir for p in order if p.name == "boot")
    proc = subprocess.Popen([sys.executable, "-m", "bootdistill.cli", "experiment", str(recipe)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoint(boot_dir, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (boot_dir / "summary.json").exists()

    r = run_cli("experiment", str(recipe))
    assert r.returncode == 0, r.stderr
    assert "teacher: finished earlier, reused" in r.stdout and "classical: finished earlier, reused" in r.stdout
    assert "boot: resuming" in r.stdout
    assert (boot_dir / "summary.json").is_file()

    r = run_cli("experiment", str(recipe), "train.lr_min=1e-5")  # a changed config is a new run
    assert r.returncode == 0 and r.stdout.count("starting") == 3

    report = tmp_path / "report"
    r = run_cli("report", *(str(p.run_dir) for p in order), "--out", str(report))
    assert r.returncode == 0, r.stderr
    assert "boot" in r.stdout
    assert (report / "report.md").stat().st_size > 0 and (report / "report.json").is_file()
    pngs = list(report.glob("*.png"))
    assert len(pngs) >= 4 and all(p.stat().st_size > 1000 for p in pngs)
