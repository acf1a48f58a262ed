"""scripts/where_it_pays.sh spreads a search over sessions through archives, and the confirmation is chosen by
the rule fixed before the search (scripts/where_it_pays_confirm.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import yaml

from conftest import REPO, write_recipe
from bootdistill.experiment import load_recipe

SEARCH = REPO / "configs" / "where-it-pays" / "search.yaml"


def run(policy: str, name: str, saving, final: float, pflops: float = 0.17) -> dict:
    distilled = policy != "classical"
    return {"name": f"{name}-0123abcd", "policy": policy, "finished": True, "savings_pct": saving,
            "final_val_loss": final, "compute_pflops": pflops, "teacher": "teacher-11112222" if distilled else None,
            "baseline": "classical-33334444" if distilled else None}


def confirm(tmp_path, runs: list[dict]) -> tuple[subprocess.CompletedProcess, dict | None]:
    report, out = tmp_path / "report.json", tmp_path / "confirm.yaml"
    report.write_text(json.dumps({"runs": runs}))
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "where_it_pays_confirm.py"), "--report", str(report),
                        "--recipe", str(SEARCH), "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    return r, (yaml.safe_load(out.read_text()) if out.is_file() else None)


def test_the_largest_saving_leads_and_is_confirmed_on_three_fresh_seeds(tmp_path):
    runs = [run("classical", "classical", None, 4.95), run("classical", "teacher", None, 5.9),
            run("bootstrapped", "paper", None, 5.03), run("bootstrapped", "mix-a0.1-t1", 0.5, 4.94),
            run("bootstrapped", "mix-a0.25-tt0.5", 1.5, 4.945), run("fixed", "salt-linear", -2.0, 4.94)]
    r, recipe = confirm(tmp_path, runs)
    assert r.returncode == 0, r.stderr
    assert "leader: mix-a0.25-tt0.5 (largest validation saving, +1.5%" in r.stdout
    assert recipe["seeds"] == [1, 2, 3] and set(recipe["runs"]) == {"teacher", "classical", "mix-a0.25-tt0.5"}
    path = tmp_path / "confirm.yaml"
    _, planned = load_recipe(path)
    by_name = {p.name: p for p in planned}
    assert sorted(by_name) == sorted(f"{n}-s{s}" for n in ("teacher", "classical", "mix-a0.25-tt0.5") for s in (1, 2, 3))
    lead = by_name["mix-a0.25-tt0.5-s2"]
    # the leader's whole extends chain is kept: tt0.5 on top of alpha-mix 0.25, tau 1, margin 5%, and the seed's teacher
    assert (lead.cfg.distill.teacher_temperature, lead.cfg.distill.alpha, lead.cfg.distill.margin) == (0.5, 0.25, 0.05)
    assert lead.teacher == "teacher-s2" and lead.cfg.train.seed == 2
    # the same settings as the search's run: only the seed differs
    _, search = load_recipe(SEARCH)
    searched = next(p for p in search if p.name == "mix-a0.25-tt0.5")
    assert lead.cfg.model == searched.cfg.model and lead.cfg.distill.combine == searched.cfg.distill.combine
    assert lead.cfg.train.total_steps == searched.cfg.train.total_steps == 1500



def test_the_follow_up_reuses_the_searchs_teacher_and_baseline():
    """The post-hoc follow-up (longer teacher, sharpened) is measured against the search's own runs: same
    directories, so nothing but the new student trains, and its baseline is the search's seed."""
    _, search = load_recipe(SEARCH)
    _, follow = load_recipe(SEARCH.with_name("followup.yaml"))
    dirs = {p.name: p.run_dir for p in search}
    new = {p.name: p for p in follow}
    assert new["teacher-long"].run_dir == dirs["teacher-long"] and new["classical"].run_dir == dirs["classical"]
    combo, tlong, tt = new["mix-a0.25-tlong-tt0.5"], *(next(p for p in search if p.name == n)
                                                        for n in ("mix-a0.25-tlong", "mix-a0.25-tt0.5"))
    assert combo.teacher == "teacher-long" and combo.run_dir not in dirs.values()
    assert combo.cfg.distill == dataclasses.replace(tlong.cfg.distill, teacher_temperature=0.5)
    assert combo.cfg.train == tt.cfg.train and combo.cfg.model == tt.cfg.model


def test_the_confirmation_trains_seed_by_seed_and_plan_writes_nothing(tmp_path):
    """Each batch is one seed's baseline and leader, so a session that stops early still leaves whole seeds."""
    runs = [run("classical", "classical", None, 4.95), run("bootstrapped", "mix-a0.25-tt0.5", 1.5, 4.945)]
    r, recipe = confirm(tmp_path, runs)
    assert r.returncode == 0, r.stderr
    recipe["out_dir"] = str(tmp_path / "runs")
    path = tmp_path / "confirm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "RECIPE": str(path), "PLAN": "1", "ARCHIVE": str(tmp_path / "archive")}
    plan = subprocess.run(["bash", str(REPO / "scripts" / "where_it_pays.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines() == ["[where-it-pays] teachers: teacher-s1 teacher-s2 teacher-s3"] + [
        f"[where-it-pays] batch {s}/3: classical-s{s} mix-a0.25-tt0.5-s{s}" for s in (1, 2, 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confirm.yaml", "report.json"]

def test_when_nothing_reaches_the_target_the_closest_is_confirmed(tmp_path):
    runs = [run("classical", "classical", None, 4.95), run("bootstrapped", "paper", None, 5.03),
            run("bootstrapped", "mix-a0.5-t1", None, 4.957)]
    r, recipe = confirm(tmp_path, runs)
    assert r.returncode == 0, r.stderr
    assert "no configuration reached the target; lowest final validation loss, 4.9570" in r.stdout
    assert set(recipe["runs"]) == {"teacher", "classical", "mix-a0.5-t1"}


def test_a_report_without_students_is_refused(tmp_path):
    r, recipe = confirm(tmp_path, [run("classical", "classical", None, 4.95)])
    assert r.returncode != 0 and "no finished distilled run" in r.stderr and recipe is None


def test_where_it_pays_script_spreads_a_search_over_sessions(tiny_corpus, tmp_path):
    """scripts/where_it_pays.sh archives after every batch; a later session without runs/ restores and reuses it."""
    recipe = write_recipe(tmp_path, tiny_corpus, tmp_path / "prep")
    env = {**os.environ, "RECIPE": str(recipe), "ARCHIVE": str(tmp_path / "archive"), "JOBS": "1",
           "CHECKPOINT_EVERY": "0"}
    script = [str(REPO / "scripts" / "where_it_pays.sh")]
    bad = subprocess.run(["bash", *script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "CHECKPOINT_EVERY must be a whole number of steps >= 1, got '0'" in bad.stderr
    assert not (tmp_path / "runs").exists()
    env["CHECKPOINT_EVERY"] = "3"  # the recipe says 4; a slow machine checkpoints more often, same runs
    first = subprocess.run(["bash", *script], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    for config in (tmp_path / "runs").glob("*/config.yaml"):
        train = yaml.safe_load(config.read_text())["train"]
        assert train["checkpoint_every"] == 3, config
        if not config.parent.name.startswith("teacher"):  # JOBS=1: the one run of each batch gets every core
            assert train["threads"] == len(os.sched_getaffinity(0)), config
    # one student at a time, the baseline first: its results are reported and archived before the student starts,
    # so a session that ends during the student keeps them
    out = first.stdout
    archived_first = out.index("[where-it-pays] batch 1/2 archived (classical)")
    assert archived_first < out.index("[where-it-pays] done: student") < out.index("batch 2/2 archived (student)")
    assert f"commit {tmp_path / 'archive'} now" in out[archived_first:]
    names = sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == names
    for kept in ("teacher", "classical"):  # final weights: a teacher still teaches, a baseline still compares
        assert list((tmp_path / "archive").glob(f"{kept}-*/checkpoints/step_*/model.safetensors"))
    assert not list((tmp_path / "archive").glob("student-*/checkpoints"))
    saving = json.loads((tmp_path / "runs.report-test" / "report.json").read_text())
    # the docs' results table, from both reports: one row per distilled run, its savings as the reports give them
    table = subprocess.run([sys.executable, str(REPO / "scripts" / "where_it_pays_table.py"), "--recipe", str(recipe),
                            "--val", str(tmp_path / "runs.report-val" / "report.json"),
                            "--test", str(tmp_path / "runs.report-test" / "report.json")],
                           capture_output=True, text=True, cwd=REPO)
    assert table.returncode == 0, table.stderr
    student = [line for line in table.stdout.splitlines() if line.startswith("| student |")]
    val_student = next(r for r in json.loads((tmp_path / "runs.report-val" / "report.json").read_text())["runs"]
                       if r["name"].startswith("student-"))
    test_saving = next(r["savings_pct"] for r in saving["runs"] if r["name"].startswith("student-"))
    cells = student[0].strip("| ").split(" | ")
    assert len(student) == 1 and cells[3] == f"{val_student['final_val_loss']:.4f}"
    assert cells[5:7] == ["not reached" if v is None else f"{v:+.1f}%" for v in (val_student["savings_pct"], test_saving)]
    shutil.rmtree(tmp_path / "runs")  # the next session starts without the run directories and logs
    shutil.rmtree(tmp_path / "runs.logs")
    env["JOBS"] = "2"
    del env["CHECKPOINT_EVERY"]
    second = subprocess.run(["bash", *script], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("restored") == len(names)
    logs = "".join(p.read_text() for p in (tmp_path / "runs.logs").glob("*.log"))
    # finished runs are not batched again: only the teacher is asked for (it prepares the data), and reused
    assert "starting" not in logs and "finished earlier, reused" in logs
    assert "[where-it-pays] batch 1/1 archived (nothing to train)" in second.stdout
    again = json.loads((tmp_path / "runs.report-test" / "report.json").read_text())
    assert [r["savings_pct"] for r in again["runs"]] == [r["savings_pct"] for r in saving["runs"]]
    # a report that fails after a batch (here: every report) costs neither the later batches nor the archives
    fake = tmp_path / "bin" / "bootdistill"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\n[ "$1" = report ] && {{ echo "error: no space left" >&2; exit 1; }}\n'
                    f'exec "{sys.executable}" -m bootdistill.cli "$@"\n')
    fake.chmod(0o755)
    shutil.rmtree(tmp_path / "archive")
    for d in (tmp_path / "runs").glob("[cs]*-*"):  # the baseline and the student train again, in two batches
        shutil.rmtree(d)
    # the fake first, then this interpreter's environment: the script then skips setup_env.sh, as with a user's venv
    env.update(JOBS="1", PATH=os.pathsep.join([str(fake.parent), os.path.dirname(sys.executable), env["PATH"]]))
    failing = subprocess.run(["bash", *script], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert failing.stderr.count("FAILED: the reports or archives after batch") == 2
    assert "batch 2/2 archived (student)" in failing.stdout
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == names


def test_results_table_of_a_confirmation_names_each_seeds_target(tmp_path):
    """Seeds are measured against their own seed's classical run: the table says which target each one had."""
    runs = []
    for seed, target in ((1, 4.99), (2, 4.97)):
        runs += [{"name": f"classical-s{seed}-0000000{seed}", "policy": "classical", "finished": True},
                 {"name": f"mix-s{seed}-1111111{seed}", "policy": "bootstrapped", "finished": True, "target": target,
                  "baseline": f"classical-s{seed}-0000000{seed}", "savings_pct": 3.0 * seed, "final_val_loss": 4.9,
                  "crossing": None, "kd_stopped_step": 225}]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"runs": runs}))
    recipe = tmp_path / "confirm.yaml"
    recipe.write_text(yaml.safe_dump({"seeds": [1, 2], "runs": {"classical": {}, "mix": {"extends": "classical"}}}))
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "where_it_pays_table.py"), "--recipe", str(recipe),
                          "--val", str(report), "--test", str(report)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Targets (each seed's classical run, whole validation split): "
                                 "classical-s1 4.9900, classical-s2 4.9700\n")
    assert [line.split(" | ")[:2] for line in out.stdout.splitlines() if line.startswith("| mix")] == \
        [["| mix-s2", "seed 2 of mix"], ["| mix-s1", "seed 1 of mix"]]  # the larger saving first


def test_where_it_pays_script_refuses_a_bad_recipe_before_writing_anything(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"name: typo\nout_dir: {tmp_path / 'runs'}\nruns:\n  a: {{model: {{d_modl: 3}}}}\n")
    script = str(REPO / "scripts" / "where_it_pays.sh")
    for recipe, message in [(typo, "error: unknown config key 'a.model.d_modl' (did you mean 'd_model'?)"),
                            (tmp_path / "missing.yaml", f"error: RECIPE '{tmp_path / 'missing.yaml'}' is not a file")]:
        r = subprocess.run(["bash", script], cwd=REPO, env={**os.environ, "RECIPE": str(recipe)}, capture_output=True,
                           text=True, timeout=300)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typo.yaml"]


def test_results_table_without_reports_says_what_to_run(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "where_it_pays_table.py"),
                        "--val", str(tmp_path / "none.json")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: cannot read the reports or the recipe") and len(r.stderr.splitlines()) == 1


def test_where_it_pays_script_refuses_bad_parallelism_before_writing_anything(tmp_path):
    script = str(REPO / "scripts" / "where_it_pays.sh")
    for knob, value in [("JOBS", "0"), ("TEACHER_JOBS", "two")]:
        r = subprocess.run(["bash", script], cwd=tmp_path, env={**os.environ, knob: value}, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 2 and r.stderr.strip() == \
            f"[where-it-pays] error: {knob} must be a whole number >= 1, got '{value}'", r.stderr
    assert list(tmp_path.iterdir()) == []
