"""`experiment --list` / `--only`: a recipe spread over machines one run at a time."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, run_cli

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "context": 32}


def write_recipe(tmp: Path, corpus: Path) -> Path:
    recipe = {
        "name": "tiny", "out_dir": str(tmp / "out"),
        "defaults": {
            "data": {"corpus": str(corpus), "vocab_size": 300, "prepared_dir": str(tmp / "prep")},
            "model": TINY,
            "train": {"lr_max": 3e-3, "batch_tokens": 128, "micro_batch": 4, "warmup_steps": 1, "total_steps": 4,
                      "eval_every": 2, "eval_sequences": 4, "final_eval_sequences": 4, "log_every": 2,
                      "checkpoint_every": 2, "precision": "fp32"},
            "log": {"progress": False, "tensorboard": False},
        },
        "runs": {
            "student": {"model": {"d_model": 32}, "distill": {"policy": "kd", "teacher": "teacher"}},
            "teacher": {},
            "weak": {"extends": "student", "distill": {"teacher": "teacher@2"}},
        },
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_list_prints_one_runnable_command_per_run_in_dependency_order(tiny_corpus, tmp_path):
    recipe = write_recipe(tmp_path, tiny_corpus)
    r = run_cli("experiment", str(recipe), "train.threads=1", "--list")
    assert r.returncode == 0, r.stderr
    head = f"bootdistill experiment {recipe} train.threads=1 --only"
    assert r.stdout.splitlines() == [f"{head} teacher", f"{head} student  # after teacher",
                                     f"{head} weak  # after teacher"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]  # nothing prepared, nothing run


def test_only_runs_exactly_one_run_and_refuses_a_student_before_its_teacher(tiny_corpus, tmp_path):
    recipe = write_recipe(tmp_path, tiny_corpus)
    r = run_cli("experiment", str(recipe), "train.threads=1", "--only", "student")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "run 'student' needs its teacher 'teacher' to be finished first" in lines[0]
    assert f"bootdistill experiment {recipe} train.threads=1 --only teacher" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]  # failed before any data or compute

    r = run_cli("experiment", str(recipe), "--only", "nobody")
    assert r.returncode == 2 and "no run of that name (runs: teacher, student, weak)" in r.stderr

    # the listed commands, run as they are by a shell, one at a time
    commands = run_cli("experiment", str(recipe), "train.threads=1", "--list").stdout.splitlines()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(commands[0], shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    runs = {p.name.rsplit("-", 1)[0]: p for p in (tmp_path / "out").iterdir()}
    assert list(runs) == ["teacher"] and (runs["teacher"] / "summary.json").is_file()

    r = subprocess.run(commands[2], shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    runs = {p.name.rsplit("-", 1)[0]: p for p in (tmp_path / "out").iterdir()}
    assert sorted(runs) == ["teacher", "weak"] and (runs["weak"] / "summary.json").is_file()
    assert "[1/1] weak: starting" in r.stdout


def test_list_presets_and_their_config_errors_never_import_torch(tiny_corpus, tmp_path):
    """A launch script calls `--list` once per job; importing torch took 12-20 s on a slow VM."""
    recipe = write_recipe(tmp_path, tiny_corpus)
    probe = (
        "import sys\n"
        "from bootdistill.cli import main\n"
        f"codes = [main(['experiment', {str(recipe)!r}, '--list']),\n"
        f"         main(['experiment', {str(recipe)!r}, '--list', 'distill.loss=jsd', 'distill.loss_params.beta=2']),\n"
        f"         main(['experiment', {str(recipe)!r}, '--list', 'distill.loss=jsd', 'distill.loss_params.bta=0.2']),\n"
        "         main(['presets'])]\n"
        "print('codes', codes, 'torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.stdout.splitlines()[-1] == "codes [0, 2, 2, 0] False", (r.stdout, r.stderr)
    assert "--only student  # after teacher" in r.stdout and "150M" in r.stdout  # the list and the preset table
    errors = r.stderr.strip().splitlines()
    assert errors == ["error: jsd beta must be a number in [0, 1], got 2 (set distill.loss_params.beta)",
                      "error: distill.loss_params.bta is not a parameter of loss 'jsd' (did you mean 'beta'?)"]
