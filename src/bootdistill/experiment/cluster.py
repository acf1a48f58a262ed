"""Recipes on a cluster: one shell command per run (`experiment --list`) and one run at a time (`--only`).

Runs share nothing but the filesystem: a student reads its teacher's checkpoint from the teacher's run
directory, so a scheduler only has to start a student after its teacher has finished.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import ConfigError
from .recipe import PlannedRun


def run_commands(recipe_path: str, overrides: list[str], order: list[PlannedRun]) -> list[str]:
    """One `bootdistill experiment RECIPE [overrides] --only RUN` per run, teachers first; a student's line
    ends with `# after TEACHER` (a shell comment) so a scheduler can see what must finish before it."""
    head = " ".join(shlex.quote(a) for a in ["bootdistill", "experiment", str(recipe_path), *overrides])
    return [f"{head} --only {shlex.quote(p.name)}" + (f"  # after {p.teacher}" if p.teacher else "") for p in order]


def teacher_ready(p: PlannedRun, teacher: PlannedRun) -> bool:
    """Whether the teacher checkpoint `p` distills from is there: the finished run, or its step_N checkpoint."""
    if p.teacher_step is not None:
        return (teacher.run_dir / "checkpoints" / f"step_{p.teacher_step:08d}" / "meta.json").is_file()
    return (teacher.run_dir / "summary.json").is_file()


def select_run(order: list[PlannedRun], name: str, recipe_path: str | Path, overrides: list[str]) -> list[PlannedRun]:
    """[the run called `name`], after checking its teacher is ready; ConfigError (one line) otherwise."""
    runs = {p.name: p for p in order}
    if name not in runs:
        raise ConfigError(f"--only {name}: the recipe has no run of that name (runs: {', '.join(runs)})")
    p = runs[name]
    if p.teacher and not teacher_ready(p, runs[p.teacher]):
        first = run_commands(str(recipe_path), overrides, [runs[p.teacher]])[0]
        what = f"checkpoint step {p.teacher_step} of its teacher" if p.teacher_step is not None else "its teacher"
        raise ConfigError(f"run '{name}' needs {what} '{p.teacher}' to be finished first: run `{first}`")
    return [p]
