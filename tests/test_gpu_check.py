"""benchmarks/gpu_check.sh's own logic on CPU: python detection, summary, and phases skipped once the budget is
spent (GPU_CHECK_SMOKE=1 with a real budget runs every phase for seconds; too slow for the suite)."""

import os
import subprocess

from conftest import REPO


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
