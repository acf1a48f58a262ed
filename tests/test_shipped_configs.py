"""Every config shipped under configs/ loads and passes every check made before compute: a recipe through
`bootdistill experiment RECIPE --dry-run` (its plan printed, nothing trained or written), a plain run config
through the same load and pre-run checks as `bootdistill train -c CONFIG`."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO, run_main

CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml"))


def test_every_config_file_is_found():
    assert "configs/cpu-demo.yaml" in CONFIGS and "configs/where-it-pays/search.yaml" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_config_loads_and_dry_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative out_dirs resolve here: a check must not touch the repository
    config = REPO / path
    if "runs" in yaml.safe_load(config.read_text()):  # a recipe
        from bootdistill.experiment import load_recipe

        r = run_main("experiment", str(config), "--dry-run")
        assert r.returncode == 0, r.stderr
        _, planned = load_recipe(config)
        plan = r.stdout.splitlines()
        assert plan[0].startswith("recipe ") and f"{len(planned)} runs" in plan[0], r.stdout
        assert all(any(line.startswith(p.name + " ") for line in plan) for p in planned), r.stdout  # a row per run
    else:  # one run
        from bootdistill.config import load_config
        from bootdistill.train import preflight

        preflight.check_run(load_config(str(config)))
    assert not any(tmp_path.iterdir())  # nothing written
