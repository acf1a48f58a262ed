"""`bootdistill report` on hand-made run directories: interpolation, targets never reached, teacher compute in
the savings, mean ± std over seeds, plots, and the CLI end to end."""

from __future__ import annotations

import argparse
import json
import math
import statistics

import pytest
import yaml

from bootdistill.errors import BootdistillError
from bootdistill.report import build_report, first_crossing, load_runs
from bootdistill.report.cli import add_subcommands
from bootdistill.report.markdown import describe_corpus, render_markdown, savings_table, sharing_lines
from bootdistill.report.plots import write_plots
from bootdistill.report.tables import teacher_accounting

TPS = 1000  # tokens per step
N_STUDENT, N_TEACHER = 1_000_000, 100_000
SHARED = {"kind": "files", "description": "/work/shared/corpus", "holdout": [],  # as data/prepare.py records it
          "splits": {"train": "/work/shared/corpus/wiki2015.train.00.raw.xz + 6 more",
                     "valid": "/work/shared/corpus/wiki.valid.raw", "test": "/work/shared/corpus/wiki.test.raw"}}


def make_run(root, name, evals, policy="classical", seed=1, teacher=None, teacher_train=0.0, kd_until=0,
             finished=True, d_model=64, source=SHARED, synthetic=False, arch=None):
    """A run dir as the trainer writes it: 6N per student token, 2N per teacher token while KD is on."""
    run = root / name
    run.mkdir(parents=True)
    cfg = {"out_dir": str(run), "data": {"vocab_size": 300},
           "model": {"preset": None, "d_model": d_model, "n_layers": 2, "n_heads": 2, "context": 32, "dropout": 0.1,
                     **({"arch": arch} if arch else {})},
           "train": {"seed": seed, "total_steps": 100, "max_steps": None},
           "distill": {"teacher": str(teacher) if teacher else None, "policy": policy, "alpha": 1.0},
           "log": {"progress": False}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = []
    for step, val in evals:
        kd = min(step, kd_until)
        row = {"step": step, "tokens": step * TPS, "flops_student": 6.0 * N_STUDENT * TPS * step,
               "flops_teacher_inference": 2.0 * N_TEACHER * TPS * kd, "flops_teacher_train": teacher_train,
               "lr": 1e-3 * (1 - step / 200), "train_loss": val + 0.1, "alpha": 1.0, "kd_on": step < kd_until}
        row["flops_total"] = row["flops_student"] + row["flops_teacher_inference"] + teacher_train
        row["flops_total_exact"] = 1.1 * row["flops_total"]
        rows.append({**row, "step": step - 5, "tokens": (step - 5) * TPS})  # a train-only row, no val_loss
        rows.append({**row, "val_loss": val, **({"events": ["kd_stopped: close to teacher"]} if step == kd_until else {})})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        last = rows[-1]
        summary = {"steps": last["step"], "tokens": last["tokens"], "tokens_per_step": TPS, "n_params": N_STUDENT,
                   "n_params_non_embedding": N_STUDENT - 30000,
                   "model": {"vocab_size": 300, "d_model": d_model, "n_layers": 2, "n_heads": 2, "context": 32,
                             **({"arch": arch} if arch else {})},
                   "final_val_loss": evals[-1][1] + 0.01, "test_loss": evals[-1][1] + 0.02,
                   "positional_test_loss": {"16": evals[-1][1] + 0.1, "32": evals[-1][1]},
                   "flops": {k: last[k] for k in ("flops_student", "flops_teacher_inference", "flops_teacher_train",
                                                  "flops_total", "flops_total_exact")},
                   "policy": {"policy": policy, "kd_stopped_step": kd_until or None},
                   "teacher": {"checkpoint": str(teacher), "n_params": N_TEACHER, "val_loss": 3.0,
                               "train_flops": teacher_train} if teacher else None,
                   "data": {"dir": "data/prepared/x", "source": source, "synthetic": synthetic, "tokenizer_sha256": "ab"}}
        (run / "summary.json").write_text(json.dumps(summary))
    return run


CLASSICAL = [(10, 4.0), (20, 3.0), (30, 2.5)]
DISTILLED = [(10, 3.5), (20, 2.7), (30, 2.4)]


@pytest.fixture
def pair(tmp_path):
    teacher = make_run(tmp_path, "teacher", [(10, 3.5), (20, 3.0)], d_model=32)
    c = make_run(tmp_path, "classical", CLASSICAL)
    d = make_run(tmp_path, "boot", DISTILLED, policy="bootstrapped", teacher=teacher, teacher_train=5e9, kd_until=20)
    return tmp_path, teacher, c, d


def by_name(report, name):
    return next(r for r in report["runs"] if r["name"] == name)


def test_first_crossing_interpolates_step_and_compute():
    evals = [{"step": 10, "flops_total": 100.0, "val_loss": 4.0}, {"step": 20, "flops_total": 300.0, "val_loss": 3.0}]
    x = first_crossing(evals, 3.25)
    assert x["step"] == pytest.approx(17.5) and x["flops_total"] == pytest.approx(250.0) and not x["at_first_eval"]
    assert first_crossing(evals, 2.9) is None
    assert first_crossing(evals, 4.5)["at_first_eval"]  # below target at once: that evaluation, flagged


def test_savings_include_teacher_training_and_inference(pair):
    root, teacher, c, d = pair
    report = build_report(load_runs([teacher, c, d]))
    boot, classical = by_name(report, "boot"), by_name(report, "classical")
    assert boot["baseline"] == "classical" and boot["teacher"] == "teacher"
    assert boot["target"] == classical["target"] == 2.5  # the baseline's last evaluation
    f = (2.7 - 2.5) / (2.7 - 2.4)  # between the evaluations at steps 20 and 30
    assert boot["crossing"]["step"] == pytest.approx(20 + 10 * f)
    student = 6.0 * N_STUDENT * TPS * (20 + 10 * f)
    inference = 2.0 * N_TEACHER * TPS * 20  # KD stopped at step 20
    assert boot["crossing"]["flops_student"] == pytest.approx(student)
    assert boot["crossing"]["flops_teacher_inference"] == pytest.approx(inference)
    c_classical = 6.0 * N_STUDENT * TPS * 30
    assert classical["crossing"]["flops_total"] == pytest.approx(c_classical)
    assert boot["savings_pct"] == pytest.approx(100 * (1 - (student + inference + 5e9) / c_classical))
    row = next(r for r in report["rows"] if r["role"] == "distilled")
    assert row["teacher_train_pflops"]["mean"] == pytest.approx(5e9 / 1e15)
    # the teacher is listed as a teacher, not as a Table 3 row
    assert [t["name"] for t in report["teachers"]] == ["teacher"]
    assert len(report["rows"]) == 2 and report["rows"][0]["role"] == "classical"


def test_a_llama_is_not_the_baseline_of_a_gpt2_of_the_same_widths(pair):
    root, teacher, c, d = pair
    llama = make_run(root, "llama", CLASSICAL, seed=1, arch="llama")
    llama_boot = make_run(root, "llama-boot", DISTILLED, policy="bootstrapped", teacher=teacher, kd_until=20, arch="llama")
    report = build_report(load_runs([llama, teacher, c, d, llama_boot]))
    assert by_name(report, "boot")["baseline"] == "classical"
    assert by_name(report, "llama-boot")["baseline"] == "llama"
    assert "Runs llama, llama-boot use the llama block" in render_markdown(report, {})


def test_teacher_counted_four_ways_and_students_needed_to_share_it(tmp_path):
    """Table 2 of the distillation scaling laws, read off the ledger at the crossing; and the smallest number of
    students that, sharing one teacher's training and each paying its own inference, all save."""
    teacher = make_run(tmp_path, "teacher", [(10, 3.5), (20, 3.0)], d_model=32)
    make_run(tmp_path, "classical", CLASSICAL)
    make_run(tmp_path, "boot", DISTILLED, policy="bootstrapped", teacher=teacher, teacher_train=4e10, kd_until=20)
    make_run(tmp_path, "late", [(10, 3.9), (20, 3.2), (30, 2.5)], policy="fixed", teacher=teacher,
             teacher_train=4e10, kd_until=20)
    report = build_report(load_runs([tmp_path]))
    boot = by_name(report, "boot")
    student, inference = boot["crossing"]["flops_student"], boot["crossing"]["flops_teacher_inference"]
    base = 6.0 * N_STUDENT * TPS * 30
    expected = {"both": student + inference + 4e10, "inference": student + inference,
                "pretraining": student + 4e10, "best": student}
    for scenario, cost in expected.items():
        assert boot["teacher_accounting"][scenario] == pytest.approx(100 * (1 - cost / base)), scenario
    assert boot["teacher_accounting"]["both"] == pytest.approx(boot["savings_pct"])  # the headline is the worst case
    assert boot["savings_pct"] < 0 < boot["teacher_accounting"]["inference"]
    shared = lambda k: student + inference + 4e10 / k < base  # noqa: E731
    k = boot["teacher_accounting"]["break_even_students"]
    assert shared(k) and not shared(k - 1) and k == 3
    # reaching the target no earlier than the baseline: no number of students makes the teacher pay
    late = by_name(report, "late")["teacher_accounting"]
    assert late["break_even_students"] is None and late["best"] == pytest.approx(0.0, abs=1e-9)
    assert teacher_accounting({**boot["crossing"], "flops_teacher_inference": math.nan},
                              by_name(report, "classical")["crossing"]) is None  # no split ledger: no claim
    md = render_markdown(report, {})
    section = md.split("## The teacher's cost, counted four ways")[1].split("\n## ")[0]
    boot_line = next(line for line in section.splitlines() if "(boot)" in line)
    assert boot_line.rstrip(" |").endswith("| 3") and f"{boot['teacher_accounting']['inference']:.1f}%" in boot_line
    assert next(line for line in section.splitlines() if "(late)" in line).rstrip(" |").endswith("| never")


def test_sharing_lines_over_seeds_claim_only_what_every_seed_shows():
    from bootdistill.report.tables import stat

    def row(name, inference, students):
        return {"configuration": name, "baseline": "classical",
                "teacher_accounting": {"inference": stat(inference), "break_even_students": stat(students)}}

    lines = sharing_lines({"rows": [row("a", [3.0, 4.0, 5.0], [2, 3, 2]), row("b", [1.0, 2.0], [None, 1]),
                                    row("c", [2.0, None], [1, None]), row("d", [4.0], [1])]})
    assert lines == ["- a: with a teacher you already have (its inference counted) +4.0%; training the teacher "
                     "for it, it pays once 3 students share it (enough for every seed).",
                     "- b: with a teacher you already have (its inference counted) +1.5%; training the teacher "
                     "for it, no number of students sharing it saves in 1 of 2 seeds.",
                     "- d: with a teacher you already have (its inference counted) +4.0%; training the teacher "
                     "for it, it pays on its own."]  # c: a seed never reached the target, nothing to claim


def test_target_never_reached_says_so(pair):
    root, teacher, c, d = pair
    report = build_report(load_runs([teacher, c, d]), target=2.0)
    assert by_name(report, "boot")["crossing"] is None and by_name(report, "boot")["savings_pct"] is None
    assert any("never reaches the target loss 2.0000" in w for w in report["warnings"])
    line = next(l for l in savings_table(report).splitlines() if "Bootstrapped" in l)
    assert "not reached" in line and "%" not in line
    # a target only the distilled run reaches: no savings number, the baseline did not get there
    report = build_report(load_runs([teacher, c, d]), target=2.45)
    assert by_name(report, "boot")["crossing"] is not None and by_name(report, "boot")["savings_pct"] is None
    assert "baseline not reached" in savings_table(report)


def test_seeds_mean_and_std(tmp_path):
    teacher = make_run(tmp_path, "teacher", [(10, 3.5), (20, 3.0)], d_model=32)
    finals = {1: 2.5, 2: 2.6}
    for s, final in finals.items():
        make_run(tmp_path, f"classical-s{s}", [(10, 4.0), (20, 3.0), (30, final)], seed=s)
        make_run(tmp_path, f"boot-s{s}", [(10, 3.5), (20, 2.7 + 0.05 * s), (30, 2.4)], policy="bootstrapped",
                 seed=s, teacher=teacher, teacher_train=5e9, kd_until=20)
    report = build_report(load_runs([tmp_path]))  # a directory of run dirs stands for all of them
    assert {r["name"]: r["baseline"] for r in report["runs"] if r["policy"] != "classical"} == \
        {"boot-s1": "classical-s1", "boot-s2": "classical-s2"}  # same seed preferred
    row = next(r for r in report["rows"] if r["role"] == "distilled")
    assert row["runs"] == ["boot-s1", "boot-s2"] and "2 seeds" in row["configuration"]
    per = [by_name(report, f"boot-s{s}")["savings_pct"] for s in finals]
    assert row["savings_pct"]["mean"] == pytest.approx(statistics.fmean(per))
    assert row["savings_pct"]["std"] == pytest.approx(statistics.stdev(per))
    assert row["target"]["mean"] == pytest.approx(2.55) and row["target"]["std"] == pytest.approx(statistics.stdev([2.5, 2.6]))
    assert " ± " in savings_table(report)



def test_a_teacher_trained_longer_is_another_configuration_not_another_seed(tmp_path):
    """Seeds of one configuration have teachers of one shape and training; a longer-trained teacher of the same
    shape makes a configuration of its own (it was merged with the short one as a second seed)."""
    short = [make_run(tmp_path, f"teacher-s{s}", [(10, 3.5), (20, 3.0)], d_model=32, seed=s) for s in (1, 2)]
    long = make_run(tmp_path, "teacher-long", [(10, 3.4), (20, 2.9)], d_model=32)
    for s in (1, 2):
        make_run(tmp_path, f"classical-s{s}", CLASSICAL, seed=s)
        make_run(tmp_path, f"boot-s{s}", DISTILLED, policy="bootstrapped", seed=s, teacher=short[s - 1],
                 teacher_train=5e9, kd_until=20)
    make_run(tmp_path, "boot-long", DISTILLED, policy="bootstrapped", teacher=long, teacher_train=1e10, kd_until=20)
    report = build_report(load_runs([tmp_path]))
    distilled = sorted(tuple(r["runs"]) for r in report["rows"] if r["role"] == "distilled")
    assert distilled == [("boot-long",), ("boot-s1", "boot-s2")]

def test_held_out_split_leaves_unfinished_seeds_out_until_they_finish(tmp_path):
    """A confirmation reports after every seed: the test split (measured once, at the end) shows the finished
    seeds and names the ones still training, instead of failing the whole report."""
    teacher = make_run(tmp_path, "teacher", [(10, 3.5), (20, 3.0)], d_model=32)
    make_run(tmp_path, "classical-s1", CLASSICAL, seed=1)
    make_run(tmp_path, "classical-s2", CLASSICAL[:2], seed=2, finished=False)
    make_run(tmp_path, "boot-s2", DISTILLED, policy="bootstrapped", seed=2, teacher=teacher, teacher_train=5e9,
             kd_until=20)  # finished, but its baseline is not: no target on the test split yet
    report = build_report(load_runs([tmp_path]), split="test", diagnostics=False)
    assert {r["name"] for r in report["runs"]} == {"teacher", "classical-s1"}
    assert by_name(report, "classical-s1")["target"] == pytest.approx(CLASSICAL[-1][1] + 0.02)  # its test loss
    waiting = [w for w in report["warnings"] if "left out of the test report" in w]
    assert sorted(w.split(":")[0] for w in waiting) == ["boot-s2", "classical-s2"]
    assert {r["name"] for r in build_report(load_runs([tmp_path]))["runs"]} == \
        {"teacher", "classical-s1", "classical-s2", "boot-s2"}  # the validation report shows progress so far
    with pytest.raises(BootdistillError, match="no finished runs yet"):
        build_report(load_runs([tmp_path / "classical-s2"]), split="test", diagnostics=False)


def test_predicted_against_measured_says_why_a_prediction_is_missing(pair):
    root, _, _, boot = pair
    base = {"laws": "Table 6", "extrapolated": True, "margin": 0.05, "best_saving_pct": 0.33}
    (boot / "prediction.json").write_text(json.dumps({**base, "saving_pct": 5.0}))
    report = build_report(load_runs([root]), diagnostics=False)
    row = by_name(report, "boot")
    assert row["prediction"]["error_points"] == pytest.approx(row["savings_pct"] - 5.0)
    assert f"| boot | Table 6 (extrapolated) | +5.0% | {row['savings_pct']:+.1f}% |" in render_markdown(report, {})
    (boot / "prediction.json").write_text(json.dumps({**base, "saving_pct": None}))  # the law never switches
    text = render_markdown(build_report(load_runs([root]), diagnostics=False), {})
    assert "| none: by the law the student never gets within 5% of the teacher (best switch: +0.3%) |" in text


def test_plots_are_written(pair, tmp_path):
    root, teacher, c, d = pair
    runs = load_runs([teacher, c, d])
    plots = write_plots(runs, tmp_path / "plots", build_report(runs))
    assert set(plots) == {"loss_vs_compute", "loss_vs_step", "lr_vs_loss", "positional_loss", "savings"}
    for file in plots.values():
        data = (tmp_path / "plots" / file).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *map(str, argv)])
    return args.func(args)


def test_cli_end_to_end(pair, capsys):
    root, teacher, c, d = pair
    unfinished = make_run(root, "boot-unfinished", DISTILLED[:2], policy="bootstrapped", seed=7, teacher=teacher,
                          teacher_train=5e9, kd_until=20, finished=False)
    lone = make_run(root, "lonely", DISTILLED, policy="kd", d_model=48, teacher=teacher, teacher_train=5e9, kd_until=30)
    assert run_cli(teacher, c, d, unfinished, lone) == 0
    out, err = capsys.readouterr()
    assert "Savings" in out and "Bootstrapped" in out and "%" in out
    rows = json.loads((root / "report" / "report.json").read_text())["rows"]
    boot = next(r for r in rows if "(boot, 2 seeds)" in r["configuration"])
    assert boot["teacher_accounting"]["inference"]["reached"] == 1  # the unfinished seed never got there
    assert "(boot, 2 seeds): with a teacher" not in out  # so nothing is claimed for the configuration
    assert "boot-unfinished: unfinished" in err and "lonely: no classical baseline" in err
    md = (root / "report" / "report.md").read_text()
    assert "| Configuration |" in md and "![" in md and "(unfinished)" in md and "no baseline" in md
    # the shared corpus and how it differs from the paper's
    assert "Wikitext-103" in md and "2015 dump" in md and "exactly WikiText's" in md
    doc = json.loads((root / "report" / "report.json").read_text())
    assert {r["name"] for r in doc["runs"]} == {"teacher", "classical", "boot", "boot-unfinished", "lonely"}
    assert all((root / "report" / f).stat().st_size > 0 for f in doc["plots"].values())
    # --json, --target, --out and an explicit baseline
    assert run_cli(c, d, lone, "--json", "--target", "2.6", "--out", root / "r2", "--baseline",
                   f"lonely={c}") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] == 2.6 and by_name(doc, "lonely")["baseline"] == "classical"
    assert (root / "r2" / "report.md").is_file()
    # the plain lines under the table: the one finished seed of the pair saves, teacher included
    assert run_cli(teacher, c, d, "--out", root / "r3") == 0
    out = capsys.readouterr().out
    inference = build_report(load_runs([teacher, c, d]))["rows"][1]["teacher_accounting"]["inference"]["mean"]
    assert f"(boot): with a teacher you already have (its inference counted) {inference:+.1f}%; training the " \
        "teacher for it, it pays on its own." in out


def test_cli_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BootdistillError, match="not a run directory"):
        run_cli(tmp_path / "empty")
    with pytest.raises(BootdistillError, match="not a run directory"):
        run_cli(tmp_path / "missing")
    with pytest.raises(BootdistillError, match="NAME=RUN_DIR"):
        run_cli(tmp_path / "empty", "--baseline", "oops")
    with pytest.raises(BootdistillError, match="no run directories"):
        load_runs([])


def test_a_run_without_metrics_is_said_loudly(pair, capsys):
    root, teacher, c, d = pair
    (d / "metrics.jsonl").unlink()  # deleted: the summary alone has no curve or crossing
    assert run_cli(c, d, "--out", root / "r") == 0
    assert f"warning: boot: NO METRICS ({d / 'metrics.jsonl'} is missing or empty)" in capsys.readouterr().err
    (c / "metrics.jsonl").write_text("")
    with pytest.raises(BootdistillError, match="no metrics to report: metrics.jsonl is missing or empty"):
        run_cli(c, d, "--out", root / "r2")


def test_synthetic_corpus_is_flagged(tmp_path):
    make_run(tmp_path, "syn", CLASSICAL, source="synthetic", synthetic=True)
    report = build_report(load_runs([tmp_path / "syn"]))
    assert "SYNTHETIC" in describe_corpus(report)


def test_seed_significance_is_a_t_interval():
    from bootdistill.report.markdown import significance_lines
    from bootdistill.report.tables import significance, stat

    s = significance(stat([5.0, 7.0, 6.0]))  # mean 6, std 1, t(0.975, 2) = 4.3027
    assert s["ci95"] == pytest.approx([6 - 4.3027 / 3 ** 0.5, 6 + 4.3027 / 3 ** 0.5], abs=1e-3)
    assert s["distinguishable_from_zero"] is True
    assert significance(stat([5.0, -3.0, 1.0]))["distinguishable_from_zero"] is False
    assert significance(stat([2.0, None]))["ci95"] is None  # one seed reached: unknown, not "significant"
    rows = [{"configuration": "boot", "savings_pct": {**stat([5.0, -3.0, 1.0]), **significance(stat([5.0, -3.0, 1.0]))}},
            {"configuration": "one", "savings_pct": {**stat([4.0]), **significance(stat([4.0]))}}]
    rows += [{"configuration": "half", "savings_pct": {**stat([3.0, None]), **significance(stat([3.0, None]))}},
             {"configuration": "none", "savings_pct": {**stat([None, None]), **significance(stat([None, None]))}}]
    text = "\n".join(significance_lines({"rows": rows}))
    assert "not distinguishable from 0" in text and "one seed cannot tell" in text
    # a seed that never reached the target is not dropped from the verdict
    assert "half: 1 of 2 seeds never reached the target, so there is no saving to claim" in text
    assert "none: no seed reached the target: no saving" in text


def test_sweeps_group_configurations_by_the_setting_they_vary(tmp_path):
    from types import SimpleNamespace

    from bootdistill.report.sweep_plot import FILE, _order, flat, sweeps, write_sweep_plot

    # ticks in numeric order (0.0 before 0.05, which string order reverses), the default last
    assert sorted([0.05, None, 0.0, 0.15], key=_order) == [0.0, 0.05, 0.15, None]

    base = {"train": {"seed": 1, "lr_max": 1e-3}, "distill": {"alpha": 0.25, "margin": 0.05, "teacher": "runs/x/t-0123abcd"}}

    def variant(**distill):
        return {"train": {"seed": 7, "lr_max": 1e-3}, "distill": {**base["distill"], **distill}}

    configs = {"lead": flat(base), "a0.1": flat(variant(alpha=0.1)), "a0.5": flat(variant(alpha=0.5)),
               "m0": flat(variant(margin=0.0)), "both": flat(variant(alpha=0.1, margin=0.0)),
               "kdlr": flat(variant(kd_lr_factor=1.5, post_kd_lr="cosine"))}
    assert "train.seed" not in configs["lead"]  # seeds are not a setting: the seeds of one config are averaged
    found = {(keys, dict(fixed)["distill.margin" if keys == ("distill.alpha",) else "distill.alpha"]
              if len(keys) == 1 else None): set(members) for (keys, fixed), members in sweeps(configs).items()}
    # alpha varied at margin 0.05 and, separately, at margin 0: two sweeps, not one
    assert found == {(("distill.alpha",), "0.05"): {"lead", "a0.1", "a0.5"}, (("distill.alpha",), "0.0"): {"m0", "both"},
                     (("distill.margin",), "0.25"): {"lead", "m0"}, (("distill.margin",), "0.1"): {"a0.1", "both"},
                     # two settings changed together with nothing in between count as one variable; alpha and
                     # margin do not (a0.1 and m0 each change one of them)
                     (("distill.kd_lr_factor", "distill.post_kd_lr"), None): {"lead", "kdlr"}}

    rows = [{"configuration": name, "role": "distilled", "runs": [name],
             "savings_pct": {"mean": None if name == "a0.5" else 1.0, "std": None}} for name in configs]
    runs = [SimpleNamespace(name=n, config={"train": {"seed": 1}, "distill": {}}) for n in configs]
    for r, cfg in zip(runs, (base, variant(alpha=0.1), variant(alpha=0.5), variant(margin=0.0),
                             variant(alpha=0.1, margin=0.0), variant(kd_lr_factor=1.5, post_kd_lr="cosine"))):
        r.config = cfg
    saved = []
    assert write_sweep_plot(runs, {"rows": rows}, tmp_path, lambda fig, path: saved.append(path) or fig.savefig(path)) == FILE
    assert saved == [tmp_path / FILE] and (tmp_path / FILE).stat().st_size > 0
    # nothing varied between distilled configurations: no plot
    assert write_sweep_plot(runs[:1], {"rows": rows[:1]}, tmp_path, lambda *a: None) is None


def test_seed_group_label_drops_seed_and_run_hash():
    from types import SimpleNamespace

    from bootdistill.report.tables import _label

    runs = [SimpleNamespace(name=n, n_params_non_embedding=3_160_000, policy="bootstrapped")
            for n in ("mix-a0.25-s1-bd921e6d", "mix-a0.25-s2-26cc1ac0")]
    assert _label(runs) == "3.16M Bootstrapped (mix-a0.25, 2 seeds)"


def test_runs_table_gives_test_bits_per_byte(tmp_path):
    run = make_run(tmp_path, "classical", CLASSICAL)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "test_bpb": 1.2345}))
    make_run(tmp_path, "older", CLASSICAL, seed=2)  # a summary from before bits per byte: shown as unknown
    runs = render_markdown(build_report(load_runs([tmp_path]), diagnostics=False), {}).split("## Runs")[1].split("\n## ")[0]
    header = next(line for line in runs.splitlines() if line.startswith("| Run"))
    cells = lambda name: [c.strip() for c in next(l for l in runs.splitlines() if f"| {name} " in l).split("|")]  # noqa: E731
    col = [c.strip() for c in header.split("|")].index("Test bits/byte")
    assert cells("classical")[col] == "1.2345" and cells("older")[col] == "?"


def test_seeds_checkpointed_at_other_intervals_are_one_configuration(tmp_path):
    """A search resumed with another CHECKPOINT_EVERY (or on more processes) still averages its seeds together."""
    for s, every in ((1, 50), (2, 25)):
        run = make_run(tmp_path, f"classical-s{s}", [(10, 4.0), (20, 3.0), (30, 2.5 + 0.1 * s)], seed=s)
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["train"].update(checkpoint_every=every, keep_checkpoints=s, parallel="ddp" if s == 2 else "none")
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (row,) = build_report(load_runs([tmp_path]))["rows"]
    assert row["runs"] == ["classical-s1", "classical-s2"] and "2 seeds" in row["configuration"]
