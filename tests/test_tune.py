"""Recipes with a `tune:` block: one run per point in its own directory, then `report` keeps each arm's best."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import TINY, run_main
from bootdistill.errors import ConfigError
from bootdistill.experiment import load_recipe

GRID = [1e-3, 3e-3, 1e-2]


def write(path, corpus, out, prepared, seeds=None, **runs):
    recipe = {
        "name": "tuned", "out_dir": str(out),
        "defaults": {
            "data": {"corpus": str(corpus), "vocab_size": 300, "prepared_dir": str(prepared)},
            "train": {"batch_tokens": 128, "micro_batch": 4, "warmup_steps": 2, "total_steps": 8, "eval_every": 2,
                      "eval_batches": 2, "log_every": 2, "checkpoint_every": 4, "threads": 1},
            "log": {"progress": False, "tensorboard": False},
        },
        **({"seeds": seeds} if seeds else {}),
        "runs": {
            "teacher": {"model": {**TINY, "d_model": 16}, "train": {"lr_max": 3e-3}},
            "classical": {"model": TINY, "train": {"lr_max": 3e-3}, "tune": {"train.lr_max": GRID}},
            "boot": {"extends": "classical", "tune": {"train.lr_max": ["1e-3", "3e-3"]},  # as YAML 1.1 reads 1e-3
                     "distill": {"policy": "bootstrapped", "teacher": "teacher", "margin": 0.5}},
            **runs,
        },
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_a_grid_expands_into_runs_with_distinct_directories(tiny_corpus, tmp_path):
    recipe = write(tmp_path / "r.yaml", tiny_corpus, tmp_path / "out", tmp_path / "prep", seeds=[1, 2])
    _, order = load_recipe(recipe)
    by = {p.name: p for p in order}
    assert set(by) == {f"teacher-s{s}" for s in (1, 2)} | \
        {f"classical-lr_max{lr:g}-s{s}" for lr in GRID for s in (1, 2)} | \
        {f"boot-lr_max{lr:g}-s{s}" for lr in (1e-3, 3e-3) for s in (1, 2)}
    assert len({p.run_dir for p in order}) == len(order)  # every point and seed has its own directory
    p = by["boot-lr_max0.001-s2"]
    assert p.cfg.train.lr_max == 1e-3 and p.cfg.train.seed == 2 and p.teacher == "teacher-s2"
    assert p.tune == {"grid": {"train.lr_max": [1e-3, 3e-3]}, "point": {"train.lr_max": 1e-3}}
    assert by["teacher-s1"].tune is None
    lines = run_main("experiment", str(recipe), "--list").stdout.splitlines()
    assert "--only boot-lr_max0.003-s1  # after teacher-s1" in "\n".join(lines) and len(lines) == len(order)


@pytest.mark.parametrize("runs, message", [
    ({"x": {"extends": "classical", "tune": {"train.lr_max": [1e-3]}}}, "lists of at least two values"),
    ({"x": {"extends": "classical", "tune": {"train.lr_max": 1e-3}}}, "lists of at least two values"),
    ({"t2": {"extends": "teacher", "tune": {"train.lr_max": [1e-3, 2e-3]}},
      "y": {"extends": "boot", "distill": {"teacher": "t2"}}}, "tuned over several runs: name one of them"),
])
def test_bad_tuning(tiny_corpus, tmp_path, runs, message):
    recipe = write(tmp_path / "r.yaml", tiny_corpus, tmp_path / "out", tmp_path / "prep", **runs)
    with pytest.raises(ConfigError, match=message):
        load_recipe(recipe)


def test_experiment_then_report_keeps_each_arms_best_point(tiny_corpus, tmp_path):
    out = tmp_path / "out"
    recipe = write(tmp_path / "r.yaml", tiny_corpus, out, tmp_path / "prep")
    r = run_main("experiment", str(recipe), "--report", "--report-out", str(tmp_path / "report"))
    assert r.returncode == 0, r.stderr
    _, order = load_recipe(recipe)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    for arm, grid in (("classical", GRID), ("boot", [1e-3, 3e-3])):
        points = {p.cfg.train.lr_max: p for p in order if p.name.startswith(arm + "-")}
        assert sorted(points) == grid and all((p.run_dir / "tune.json").is_file() for p in points.values())
        losses = {lr: json.loads((p.run_dir / "summary.json").read_text())["final_val_loss"] for lr, p in points.items()}
        best = min(losses, key=losses.get)
        (g,) = [g for g in report["tuning"] if g["configuration"] == arm]
        assert g["chosen"] == {"train.lr_max": best}
        assert {p["point"]["train.lr_max"]: p["final_val_loss"] for p in g["points"]} == losses
        at_edge = best in (min(grid), max(grid))
        assert (g["edge"] == ["train.lr_max"]) == at_edge
        assert any(arm in w and "optimum may lie outside" in w for w in report["warnings"]) == at_edge
        assert g["grid_pflops"] > g["chosen_pflops"]
    chosen = {g["configuration"]: g["chosen_runs"][0] for g in report["tuning"]}
    (boot,) = [x for x in report["runs"] if x["policy"] == "bootstrapped"]
    assert boot["name"] == chosen["boot"] and boot["baseline"] == chosen["classical"]
    assert "best lr_max" in r.stdout  # the console says which point each arm kept


def test_a_widened_grid_reuses_finished_points_and_updates_their_grid(tiny_corpus, tmp_path):
    out, prep = tmp_path / "out", tmp_path / "prep"
    narrow = {"boot": {"model": TINY, "train": {"lr_max": 3e-3}}}  # no teacher needed: a plain second arm
    recipe = write(tmp_path / "r.yaml", tiny_corpus, out, prep, **narrow)
    assert run_main("experiment", str(recipe), "--only", "classical-lr_max0.001").returncode == 0
    wide = GRID + [3e-2]
    recipe = write(tmp_path / "r.yaml", tiny_corpus, out, prep, **narrow,
                   classical={"model": TINY, "train": {"lr_max": 3e-3}, "tune": {"train.lr_max": wide}})
    r = run_main("experiment", str(recipe), "--only", "classical-lr_max0.001")
    assert r.returncode == 0, r.stderr
    assert "finished earlier, reused" in r.stdout
    (p,) = [p for p in load_recipe(recipe)[1] if p.name == "classical-lr_max0.001"]
    assert json.loads((p.run_dir / "tune.json").read_text())["grid"] == {"train.lr_max": wide}
