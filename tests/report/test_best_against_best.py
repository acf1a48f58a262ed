"""Best against best (tuning grids, report/tuning.py) and the evaluations that decided a switch, on hand-made
run directories (tests/report/test_report.py's make_run)."""

from __future__ import annotations

import json

import pytest
import yaml

from bootdistill.compute import flops_per_token
from bootdistill.report import build_report, first_crossing, load_runs
from bootdistill.report.markdown import render_markdown, savings_table, tuning_lines
from bootdistill.shape import ModelShape
from test_report import CLASSICAL, DISTILLED, by_name, make_run, pair  # noqa: F401 (pair: a fixture)

LR_GRID = [1e-3, 2e-3, 4e-3]


def tuned(run, lr: float, grid=LR_GRID):
    """Make `run` the lr_max point of a tuning grid, as `bootdistill experiment` leaves it."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"].update(lr_max=lr, lr_min=lr / 10)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "tune.json").write_text(json.dumps({"grid": {"train.lr_max": grid}, "point": {"train.lr_max": lr}}))
    return run


def shifted(evals, by):
    return [(s, v + by) for s, v in evals]


def add_eval_flops(run, per_eval: float, decided_by=None):
    """flops_eval as the trainer logs it: cumulative, one `per_eval` per scheduled evaluation."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    n = 0
    for row in rows:
        n += "val_loss" in row
        row["flops_eval"] = row["flops_eval_exact"] = n * per_eval
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = json.loads((run / "summary.json").read_text())
    summary["flops"]["flops_eval"] = n * per_eval
    if decided_by:
        summary["policy"]["switch_on"] = decided_by
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["distill"]["switch_on"] = decided_by
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "summary.json").write_text(json.dumps(summary))
    return rows


@pytest.fixture
def grids(tmp_path):
    """A classical grid whose best lr (2e-3) is inside it, and a distilled grid whose best (4e-3) is at its edge."""
    teacher = make_run(tmp_path, "teacher", [(10, 3.5), (20, 3.0)], d_model=32)
    for lr, by in zip(LR_GRID, (0.3, 0.0, 0.1)):
        tuned(make_run(tmp_path, f"classical-lr_max{lr:g}", shifted(CLASSICAL, by)), lr)
    for lr, by in zip(LR_GRID, (0.3, 0.2, 0.0)):
        tuned(make_run(tmp_path, f"boot-lr_max{lr:g}", shifted(DISTILLED, by), policy="bootstrapped",
                       teacher=teacher, teacher_train=5e9, kd_until=20), lr)
    return tmp_path


def test_report_compares_each_arms_best_point_and_warns_at_a_grid_edge(grids):
    report = build_report(load_runs([grids]), diagnostics=False)
    tuning = {g["configuration"]: g for g in report["tuning"]}
    assert tuning["classical"]["chosen"] == {"train.lr_max": 2e-3} and tuning["classical"]["edge"] == []
    assert tuning["boot"]["chosen"] == {"train.lr_max": 4e-3} and tuning["boot"]["edge"] == ["train.lr_max"]
    assert [p["final_val_loss"] for p in tuning["classical"]["points"]] == pytest.approx([2.81, 2.51, 2.61])
    edge = [w for w in report["warnings"] if "optimum may lie outside" in w]
    assert len(edge) == 1 and "boot" in edge[0] and "largest value" in edge[0]
    # only the chosen points are measured: the target is the best classical run's final loss
    assert {r["name"] for r in report["runs"]} == {"teacher", "classical-lr_max0.002", "boot-lr_max0.004"}
    boot = by_name(report, "boot-lr_max0.004")
    assert boot["baseline"] == "classical-lr_max0.002" and boot["target"] == CLASSICAL[-1][1]
    # the grid's cost: every point's compute, the one teacher's training once
    points = tuning["boot"]["points"]
    own = sum(p["compute_pflops"] - p["teacher_train_pflops"] for p in points)
    assert tuning["boot"]["grid_pflops"] == pytest.approx(own + 5e9 / 1e15)
    assert tuning["classical"]["grid_pflops"] == pytest.approx(sum(p["compute_pflops"] for p in tuning["classical"]["points"]))
    md = render_markdown(report, {})
    assert "Best against best" in md and md.count("**chosen**") == 2
    lines = "\n".join(tuning_lines(report))
    assert "3.0x the chosen run" in lines and "edge of its grid" in lines


def test_with_several_seeds_the_best_mean_is_chosen_not_the_best_seed(tmp_path):
    # lr 1e-3 has the single best seed (2.40) but the worse mean (2.55 against 2.51)
    for lr, losses in ((1e-3, (2.40, 2.70)), (2e-3, (2.50, 2.52))):
        for seed, final in zip((1, 2), losses):
            tuned(make_run(tmp_path, f"classical-lr_max{lr:g}-s{seed}", [(10, 4.0), (20, final - 0.01)], seed=seed),
                  lr, grid=[1e-3, 2e-3])
    report = build_report(load_runs([tmp_path]), diagnostics=False)
    (grid,) = report["tuning"]
    assert grid["chosen"] == {"train.lr_max": 2e-3} and grid["seeds"] == 2 and "mean over 2 seeds" in grid["chosen_by"]
    assert sorted(p["final_val_loss"] for p in grid["points"]) == pytest.approx([2.51, 2.55])


def test_savings_with_and_without_the_evaluations_that_decided_the_switch(tmp_path):
    teacher = make_run(tmp_path, "teacher", [(10, 3.5), (20, 3.0)], d_model=32)
    c = make_run(tmp_path, "classical", CLASSICAL)
    val = make_run(tmp_path, "boot-val", DISTILLED, policy="bootstrapped", teacher=teacher, teacher_train=5e9, kd_until=20)
    free = make_run(tmp_path, "boot-train", DISTILLED, policy="bootstrapped", teacher=teacher, teacher_train=5e9,
                    kd_until=20)
    per_eval = 2e9
    for run in (c, teacher):
        add_eval_flops(run, per_eval)
    rows = add_eval_flops(val, per_eval)
    add_eval_flops(free, per_eval, decided_by="train")
    report = build_report(load_runs([tmp_path]), diagnostics=False)
    cross = first_crossing([r for r in rows if "val_loss" in r], CLASSICAL[-1][1])
    base = 6.0 * 1_000_000 * 1000 * CLASSICAL[-1][0]  # the classical run's whole compute (make_run's ledger)
    charged = 2 * per_eval  # the evaluations at steps 10 and 20 decided the switch at step 20; later ones did not
    r = by_name(report, "boot-val")
    assert r["evals_charged_pflops"] == pytest.approx(charged / 1e15)
    assert r["savings_without_evals_pct"] == pytest.approx(100 * (1 - cross["flops_total"] / base))
    assert r["savings_pct"] == pytest.approx(100 * (1 - (cross["flops_total"] + charged) / base))
    assert r["savings_without_evals_pct"] - r["savings_pct"] == pytest.approx(100 * charged / base)
    f = by_name(report, "boot-train")  # the free rule: no evaluation decided anything
    assert f["evals_charged_pflops"] == 0 and f["savings_pct"] == f["savings_without_evals_pct"]
    assert "Savings without evaluations" in savings_table(report)
    assert not any("no flops_eval" in w for w in report["warnings"])


def test_a_ledger_without_evaluations_says_they_are_not_counted(pair):  # noqa: F811 (the fixture imported above)
    report = build_report(load_runs([pair[0]]), diagnostics=False)
    assert any("boot: its ledger has no flops_eval" in w for w in report["warnings"])
    assert by_name(report, "boot")["savings_pct"] == by_name(report, "boot")["savings_without_evals_pct"]


def test_a_grid_over_a_setting_whose_name_looks_like_a_seed_keeps_its_configuration_name(tmp_path):
    for steps, by in ((100, 0.1), (200, 0.0)):
        for seed in (1, 2):
            run = make_run(tmp_path, f"kd-len-kd_steps{steps}-s{seed}-0123abcd", shifted(CLASSICAL, by), seed=seed)
            cfg = yaml.safe_load((run / "config.yaml").read_text())
            cfg["distill"]["kd_steps"] = steps
            (run / "config.yaml").write_text(yaml.safe_dump(cfg))
            (run / "tune.json").write_text(json.dumps({"grid": {"distill.kd_steps": [100, 200]},
                                                       "point": {"distill.kd_steps": steps}}))
    (grid,) = build_report(load_runs([tmp_path]), diagnostics=False)["tuning"]
    assert grid["configuration"] == "kd-len" and grid["chosen"] == {"distill.kd_steps": 200}


def test_over_seeds_the_verdict_is_with_the_evaluations_and_says_the_saving_without(tmp_path):
    from bootdistill.report.markdown import significance_lines

    teacher = make_run(tmp_path, "teacher", [(10, 3.5), (20, 3.0)], d_model=32)
    for seed, by in ((1, 0.0), (2, 0.02), (3, -0.02)):
        add_eval_flops(make_run(tmp_path, f"classical-s{seed}", CLASSICAL, seed=seed), 2e9)
        add_eval_flops(make_run(tmp_path, f"boot-s{seed}", shifted(DISTILLED, by), policy="bootstrapped", seed=seed,
                                teacher=teacher, teacher_train=5e9, kd_until=20), 2e9)
    report = build_report(load_runs([tmp_path]), diagnostics=False)
    (row,) = [r for r in report["rows"] if r["role"] == "distilled"]
    assert row["savings_pct"]["mean"] < row["savings_without_evals_pct"]["mean"]
    (line,) = [x for x in significance_lines(report) if x.startswith("- ")]
    assert f"{row['savings_pct']['mean']:+.1f}% ±" in line.split("Without")[0]
    assert f"Without the evaluations that decided the switch: {row['savings_without_evals_pct']['mean']:+.1f}%" in line


def test_a_ledger_without_evaluations_has_them_reconstructed_from_its_config(pair):  # noqa: F811 (the fixture imported above)
    """An older run (no flops_eval) whose config and summary give its evaluation set and both shapes: the switch
    evaluations are rebuilt as the trainer counts them and charged, marked as reconstructed."""
    root, _, _, boot = pair
    cfg = yaml.safe_load((boot / "config.yaml").read_text())
    cfg["train"].update(eval_every=10, eval_batches=2, micro_batch=4)  # an older config: batches of micro_batch
    cfg["distill"]["diag_batches"] = 1
    (boot / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = json.loads((boot / "summary.json").read_text())
    summary["teacher"]["model"] = {"vocab_size": 300, "d_model": 32, "n_layers": 2, "n_heads": 2, "context": 32}
    (boot / "summary.json").write_text(json.dumps(summary))
    rows = [json.loads(line) for line in (boot / "metrics.jsonl").read_text().splitlines()]
    for row in rows:  # KD diagnostics ran at the evaluations while the teacher was loaded (up to the switch at 20)
        if "val_loss" in row and row["step"] <= 20:
            row["val_kl_teacher_student"] = 0.5
    (boot / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    report = build_report(load_runs([root]), diagnostics=False)
    r = by_name(report, "boot")
    # the formula: 8 sequences x 32 tokens per evaluation, 4 per diagnostics, each at its model's forward FLOPs
    student, teacher = (flops_per_token(ModelShape(300, d, 2, 2, 32), training=False) for d in (64, 32))
    per_eval, per_diag = 8 * 32 * student, 4 * 32 * (student + teacher)
    charged = 8 * 32 * teacher + 2 * (per_eval + per_diag)  # the teacher's loss once; evaluations at steps 10, 20
    assert r["evals_charged_pflops"] == pytest.approx(charged / 1e15) and r["evals_reconstructed"]
    assert r["savings_without_evals_pct"] - r["savings_pct"] == pytest.approx(100 * charged / (6.0e6 * 1000 * 30))
    assert any("boot: its ledger has no flops_eval" in w and "reconstructed" in w for w in report["warnings"])
    assert "(reconstructed)" in savings_table(report)


def test_a_grid_point_trained_by_an_older_version_joins_the_grid_of_the_newer_points(grids):
    """An archived point written before evaluation sizes were counted in sequences, and before the config and
    the teacher's record named settings at their defaults, is the same configuration as the points trained now."""
    old = grids / "boot-lr_max0.001"
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    cfg["train"].update(micro_batch=4, eval_batches=2)
    cfg["distill"]["diag_batches"] = 1
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    for new in ("boot-lr_max0.002", "boot-lr_max0.004"):
        cfg = yaml.safe_load((grids / new / "config.yaml").read_text())
        cfg["train"].update(micro_batch=4, eval_sequences=8)
        cfg["model"]["arch"] = "gpt2"  # the default, written out
        cfg["distill"].update(diag_sequences=4, switch_on="val")
        (grids / new / "config.yaml").write_text(yaml.safe_dump(cfg))
        summary = json.loads((grids / new / "summary.json").read_text())
        summary["teacher"]["model"] = {"vocab_size": 300, "d_model": 32, "n_layers": 2, "n_heads": 2, "context": 32,
                                       "arch": "gpt2"}
        (grids / new / "summary.json").write_text(json.dumps(summary))
    summary = json.loads((old / "summary.json").read_text())
    summary["teacher"]["model"] = {"vocab_size": 300, "d_model": 32, "n_layers": 2, "n_heads": 2, "context": 32}
    (old / "summary.json").write_text(json.dumps(summary))
    report = build_report(load_runs([grids]), diagnostics=False)
    (boot,) = [g for g in report["tuning"] if g["configuration"] == "boot"]
    assert len(boot["points"]) == 3 and boot["chosen"] == {"train.lr_max": 4e-3}


def test_report_headline_prints_only_the_verdicts_and_still_writes_the_report(grids, capsys):
    from bootdistill.cli import main

    out = grids / "out"
    assert main(["report", str(grids), "--out", str(out), "--no-diagnostics", "--headline"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("- ") and "boot-lr_max0.004" in lines[0]  # the distilled arm's best
    assert "Target loss" not in printed.out and printed.err == ""  # no table, no warnings
    assert (out / "report.md").is_file() and (out / "report.json").is_file()


def test_the_tuned_tables_script_marks_the_chosen_points_and_each_seeds_saving(grids, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from bootdistill.report.markdown import write_report

    paths = {}
    for split in ("val", "test"):
        report = build_report(load_runs([grids]), diagnostics=False)  # the hand-made runs have one set of losses
        paths[split] = write_report(report, {}, tmp_path / split)["json"]
    script = Path(__file__).resolve().parents[2] / "scripts" / "where_it_pays_tuned_table.py"
    out = subprocess.run([sys.executable, str(script), "--val", str(paths["val"]), "--test", str(paths["test"])],
                         capture_output=True, text=True, check=True).stdout
    chosen = [line for line in out.splitlines() if "**chosen**" in line]
    assert len(chosen) == 2 and "| classical | lr_max 0.002 |" in chosen[0] and "| boot | lr_max 0.004 |" in chosen[1]
    saving = by_name(report, "boot-lr_max0.004")["savings_pct"]
    assert "| boot-lr_max0.004 | " in out and f"{saving:+.1f}%" in out
    missing = subprocess.run([sys.executable, str(script), "--val", str(tmp_path / "none.json")], capture_output=True,
                             text=True)
    assert missing.returncode != 0 and "is not a report.json" in missing.stderr


def test_the_scale_script_tabulates_each_sizes_saving_and_plots_it(grids, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from bootdistill.report.markdown import write_report

    report = build_report(load_runs([grids]), diagnostics=False)
    dirs = {split: write_report(report, {}, tmp_path / split)["json"].parent for split in ("val", "test")}
    script = Path(__file__).resolve().parents[2] / "scripts" / "where_it_pays_scale.py"
    png = tmp_path / "scale.png"
    out = subprocess.run([sys.executable, str(script), "--val", str(dirs["val"]), "--test", str(dirs["test"]),
                          "--png", str(png), "--json", str(tmp_path / "scale.json")],
                         capture_output=True, text=True, check=True).stdout
    boot, runs = by_name(report, "boot-lr_max0.004"), {r["name"]: r for r in report["runs"]}
    (record,) = json.loads((tmp_path / "scale.json").read_text())
    assert record["student_params"] == boot_params(runs) and record["teacher_params"] == runs["teacher"]["n_params"]
    assert record["val"]["mean"] == pytest.approx(boot["savings_pct"])
    (row,) = [line for line in out.splitlines() if line.startswith(f"| {boot_params(runs) / 1e6:.2f}M |")]
    assert f"{boot['savings_pct']:+.1f}% (1 seed)" in row
    assert f"{boot_params(runs) / runs['teacher']['n_params']:.1f}x" in row
    assert png.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    unequal = subprocess.run([sys.executable, str(script), "--val", str(dirs["val"]), "--test"], capture_output=True,
                             text=True)
    assert unequal.returncode != 0


def boot_params(runs: dict) -> int:
    return runs["boot-lr_max0.004"]["n_params"]


def test_a_widened_grid_is_one_grid_with_its_points_old_and_new(grids):
    """Points run before the grid was widened keep the narrower grid in their tune.json: still one grid."""
    wide = LR_GRID + [8e-3]
    tuned(make_run(grids, "classical-lr_max0.008", shifted(CLASSICAL, 0.2)), 8e-3, grid=wide)
    tuned(make_run(grids, "classical-lr_max0.0005", shifted(CLASSICAL, 0.4)), 5e-4, grid=[5e-4] + LR_GRID)
    report = build_report(load_runs([grids]), diagnostics=False)
    (classical,) = [g for g in report["tuning"] if g["configuration"] == "classical"]
    assert classical["grid"] == {"train.lr_max": [5e-4] + wide} and len(classical["points"]) == 5
    assert classical["chosen"] == {"train.lr_max": 2e-3} and classical["edge"] == []
    assert not any("lack part of its tuning grid" in w for w in report["warnings"])
