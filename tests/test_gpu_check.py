"""benchmarks/gpu_check.sh's own logic on CPU: python detection, summary, and phases skipped once the budget is
spent (GPU_CHECK_SMOKE=1 with a real budget runs every phase for seconds; too slow for the suite)."""

import json
import os
import subprocess

import yaml

from conftest import REPO, write_recipe


def test_gpu_check_skips_phases_when_the_budget_is_spent(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_SMOKE": "1", "GPU_CHECK_BUDGET": "0",
           "GPU_CHECK_WORK": str(tmp_path / "work")}
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = (out / "summary.txt").read_text().splitlines()
    assert any("torch 2." in line for line in summary)
    skipped = [line.split(":")[0] for line in summary if line.endswith("SKIPPED (budget spent)")]
    assert skipped == ["tests", "mfu_1M", "mfu_compile_1M", "kd_step", "mid_teacher", "mfu_compile_2M", "mid_classical"]
    assert summary[-1].startswith("total ")


def test_where_it_pays_task_searches_confirms_and_packs_what_comes_back(tiny_corpus, tmp_path):
    """GPU_CHECK_TASK=where-it-pays on CPU with a tiny recipe: the search, the leader's confirmation on seeds
    1, 2, 3, and one tarball that restores the archives, the confirmation recipe and the reports."""
    recipe = write_recipe(tmp_path, tiny_corpus, tmp_path / "prep")
    spec = yaml.safe_load(recipe.read_text())
    spec["runs"]["student"]["train"]["total_steps"] = 12  # the classical run's length: it is the baseline
    recipe.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_SMOKE": "1", "GPU_CHECK_TASK": "where-it-pays",
           "GPU_CHECK_WORK": str(tmp_path / "work"), "GPU_CHECK_BUDGET": "1500", "WIP_RECIPE": str(recipe),
           "WIP_ARCHIVE": str(tmp_path / "archive"), "WIP_JOBS": "6"}
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=1500)
    summary = (out / "summary.txt").read_text()
    assert r.returncode == 0, summary + r.stdout + r.stderr
    assert "wip_search: ok" in summary and "wip_confirm: ok" in summary
    parts = sorted(out.glob("where-it-pays.tgz.part-*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(f"cat {' '.join(map(str, parts))} | tar xzf -", shell=True, cwd=home, check=True)
    back = home / str(tmp_path).lstrip("/")  # absolute paths come back below the folder they are unpacked in
    confirm = yaml.safe_load((back / "confirm.yaml").read_text())
    assert confirm["seeds"] == [1, 2, 3] and set(confirm["runs"]) == {"teacher", "classical", "student"}
    archived = {p.name.rsplit("-", 1)[0] for p in (back / "archive-confirm").iterdir()}
    assert archived == {f"{n}-s{s}" for n in ("teacher", "classical", "student") for s in (1, 2, 3)}
    assert list((back / "archive").glob("teacher-*/checkpoints/*/model.safetensors"))  # teachers keep weights
    assert not list((back / "archive").glob("classical-*/checkpoints/*/model.safetensors"))  # baselines do not
    report = json.loads((back / "runs-confirm.report-test" / "report.json").read_text())
    students = [x for x in report["runs"] if x["policy"] != "classical" and x.get("teacher")]
    assert len(students) == 3 and all(x["finished"] for x in students)
    assert "== " in summary and "runs-confirm.report-val/report.md" in summary
