"""The planner calibrated on the user's own runs: `fit` reads only each tuning grid's chosen point, and `calibrate`
goes from a recipe of tiny runs to fitted laws to a prediction, then to predicted against measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import TINY, run_main
from bootdistill.experiment import load_recipe
from bootdistill.report import build_report, load_runs
from bootdistill.report.calibration import split
from bootdistill.report.tuning import unchosen
from bootdistill.scaling import TABLE6_SUPERVISED, runs, supervised_loss
from bootdistill.scaling.plan import load_laws

# ---- fit reads only the chosen grid points ---------------------------------------------------------------


def _run(root, name, n, lr, losses, tune=None):
    """A finished supervised run: config, summary, one evaluation row per loss, and its tuning point if any."""
    run = root / name
    run.mkdir(parents=True)
    tokens = [1e9 * (i + 1) for i in range(len(losses))]
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"d_model": n // 1000}, "train": {"lr_max": lr}}))
    (run / "summary.json").write_text(json.dumps({"n_params": n, "n_params_non_embedding": n, "tokens": tokens[-1],
                                                  "final_val_loss": losses[-1]}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1, "tokens": t, "val_loss": v}) + "\n"
                                               for i, (t, v) in enumerate(zip(tokens, losses))))
    if tune:
        (run / "tune.json").write_text(json.dumps({"grid": {"train.lr_max": tune}, "point": {"train.lr_max": lr}}))
    return run


def _grid(root):
    """Three sizes on the supervised law; the middle one tuned over two learning rates, the 2e-3 point worse."""
    law = lambda n, k: float(supervised_loss(n, 1e9 * k, TABLE6_SUPERVISED))  # noqa: E731
    for n in (100_000_000, 300_000_000, 900_000_000):
        losses = [law(n, k) for k in (1, 2, 3, 4)]
        if n == 300_000_000:
            _run(root, "mid-lr_max0.001", n, 1e-3, losses, tune=[1e-3, 2e-3])
            _run(root, "mid-lr_max0.002", n, 2e-3, [v + 0.3 for v in losses], tune=[1e-3, 2e-3])
        else:
            _run(root, f"n{n // 1_000_000}", n, 1e-3, losses)


def test_collect_reads_only_the_chosen_grid_point(tmp_path):
    _grid(tmp_path)
    everything = runs.collect([tmp_path], every_eval=True)
    chosen = runs.collect([tmp_path], every_eval=True, leave_out=unchosen)
    assert everything.count("supervised") == 16 and chosen.count("supervised") == 12
    (left,) = chosen.left_out
    assert left[0].endswith("mid-lr_max0.002") and "train.lr_max=0.002" in left[1] and "chosen train.lr_max=0.001" in left[1]
    # the worse point's losses are gone, the chosen point's are there
    worse = {v + 0.3 for v in everything.supervised["L"][4:8]}
    assert not worse & set(chosen.supervised["L"]) and len(set(chosen.supervised["N"])) == 3
    # runs outside any grid and CSV files are read as before
    runs.write_csv(tmp_path / "extra.csv", "supervised", {"N": [1e8], "D": [1e9], "L": [3.0]})
    assert runs.collect([tmp_path / "extra.csv", tmp_path / "n100"], leave_out=unchosen).count("supervised") == 2


def test_fit_command_leaves_out_unchosen_points_and_says_why(tmp_path):
    _grid(tmp_path / "runs")
    r = run_main("fit", str(tmp_path / "runs"), "--out", str(tmp_path / "fit"), "--law", "supervised", "--every-eval",
                 "--bootstrap", "0", "--top-k", "4", "--workers", "1", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert "left out" in r.stderr and "mid-lr_max0.002" in r.stderr and "is not its best" in r.stderr
    fit = json.loads((tmp_path / "fit" / "scaling_fit.json").read_text())
    assert fit["supervised"]["n_points"] == 12
    assert [x["run"].rsplit("/", 1)[-1] for x in fit["left_out"]] == ["mid-lr_max0.002"]
    # noise-free points of the law: the fit on the chosen points recovers it
    lw = load_laws(None)
    lw.supervised = fit["supervised"]["coefficients"]
    assert lw.L(3e8, 5e9) == pytest.approx(float(supervised_loss(3e8, 5e9, TABLE6_SUPERVISED)), rel=1e-3)


# ---- calibrate end to end on a tiny grid ----------------------------------------------------------------


def write_recipe(path, corpus, prepared, out):
    """A teacher; classical and distilled students at three widths (the smallest classical one tuned over two
    learning rates); the widest pair is the configuration to predict."""
    size = lambda d: {**TINY, "d_model": d}  # noqa: E731
    recipe = {
        "name": "calib", "out_dir": str(out),
        "defaults": {
            "data": {"corpus": str(corpus), "vocab_size": 300, "prepared_dir": str(prepared)},
            "train": {"batch_tokens": 128, "micro_batch": 4, "warmup_steps": 2, "total_steps": 12, "eval_every": 2,
                      "eval_sequences": 4, "final_eval_sequences": None, "eval_snapshots": True, "log_every": 2,
                      "checkpoint_every": 4, "threads": 1, "lr_max": 3e-3},
            "log": {"progress": False, "tensorboard": False},
        },
        "runs": {
            "teacher": {"model": size(16)},
            "classical-24": {"model": size(24), "tune": {"train.lr_max": [3e-3, 1e-2]}},
            "kd-24": {"model": size(24), "distill": {"policy": "kd", "teacher": "teacher"}},
            "classical-32": {"model": size(32)},
            "kd-32": {"model": size(32), "distill": {"policy": "kd", "teacher": "teacher"}},
            "classical-48": {"model": size(48)},
            # a longer schedule, so that it reaches its classical run's loss: the saving is measured at that point
            "boot-48": {"model": size(48), "train": {"total_steps": 24},
                        "distill": {"policy": "bootstrapped", "teacher": "teacher", "margin": 0.5}},
        },
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def calibrated(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    recipe = write_recipe(root / "recipe.yaml", tiny_corpus, root / "prep", root / "runs")
    args = ["calibrate", str(recipe), "--hold-out", "classical-48", "boot-48", "--target-params", "2M",
            "--top-k", "4", "--out", str(root / "cal")]
    before = run_main(*args)
    assert before.returncode == 0, before.stderr
    first = json.loads((root / "cal" / "calibration.json").read_text())
    assert run_main("experiment", str(recipe)).returncode == 0  # now the held-out pair trains
    after = run_main(*args)
    assert after.returncode == 0, after.stderr
    return root, recipe, first, json.loads((root / "cal" / "calibration.json").read_text()), before, after


def test_calibrate_fits_on_the_small_runs_only(calibrated):
    root, recipe, first, _, before, _ = calibrated
    _, order = load_recipe(recipe)
    by = {p.name: p for p in order}
    fit = json.loads((root / "cal" / "scaling_fit.json").read_text())
    assert first["held_out_runs"] == ["classical-48", "boot-48"]
    assert all(name not in first["fit"]["runs"] for name in (by["classical-48"].run_dir.name, by["boot-48"].run_dir.name))
    # of the tuning grid, only the chosen point: the one with the lower final validation loss
    losses = {lr: json.loads((by[f"classical-24-lr_max{lr:g}"].run_dir / "summary.json").read_text())["final_val_loss"]
              for lr in (3e-3, 1e-2)}
    worse = max(losses, key=losses.get)
    assert [x["run"] for x in first["fit"]["left_out"]] == [by[f"classical-24-lr_max{worse:g}"].run_dir.name]
    assert "left out" in before.stderr
    # every evaluation of the teacher, the chosen classical-24 and classical-32 (6 each); of the two KD runs
    n_evals = 12 // 2
    assert fit["supervised"]["n_points"] == 3 * n_evals and fit["distillation"]["n_points"] == 2 * n_evals
    assert fit["supervised"]["range"]["N"][1] < json.loads((by["classical-48"].run_dir / "summary.json").read_text())["n_params"]


def test_calibrate_predicts_with_the_fitted_laws(calibrated):
    root, recipe, first, after, _, _ = calibrated
    from bootdistill.experiment.prediction import predict_saving

    t = first["target"]
    assert t["student_params"] == 2e6 and t["laws"] == str(root / "cal" / "scaling_fit.json")
    # the same prediction from the fit file: the planner's own numbers, F(N) = 2N
    again = predict_saving(2e6, t["student_tokens"], t["teacher_params"], t["teacher_flops"], t["margin"],
                           t["laws"], t["teacher_loss"], "6n")
    assert again["saving_pct"] == t["saving_pct"] and again["best_saving_pct"] == pytest.approx(t["best_saving_pct"])
    assert t["classical_flops"] == pytest.approx(6 * 2e6 * t["student_tokens"])
    # the prediction depends only on the runs fitted on: the same before and after the held-out runs train
    assert after["target"]["best_saving_pct"] == pytest.approx(t["best_saving_pct"])
    (h0,), (h1,) = first["held_out"], after["held_out"]
    assert h0["configuration"] == "boot-48" and h0["predicted_pct"] == pytest.approx(h1["predicted_pct"])
    assert h0["best_predicted_pct"] is not None and np.isfinite(h0["best_predicted_pct"])
    # its D is the tokens of the classical run whose final loss is the target, not the student's longer schedule
    assert h0["baseline"] == "classical-48" and h0["student_tokens"] == 12 * 128


def test_calibrate_shows_predicted_against_measured(calibrated):
    root, recipe, first, after, before, after_run = calibrated
    _, order = load_recipe(recipe)
    by = {p.name: p for p in order}
    (h,) = after["held_out"]
    assert first["held_out"][0]["measured_pct"] is None and "not run yet" in before.stdout
    # measured: the report's saving of the held-out student against the classical run of its size
    dirs = [by[n].run_dir for n in ("teacher", "classical-48", "boot-48")]
    row = next(r for r in build_report(load_runs(dirs), diagnostics=False)["rows"] if r["role"] == "distilled")
    measured = row["savings_pct"]["mean"]
    assert h["measured_pct"] == (None if measured is None else pytest.approx(measured))
    assert h["measured"] == ("measured" if measured is not None else "no saving: it never reaches its target")
    if h["measured_pct"] is not None and h["predicted_pct"] is not None:
        assert h["error_points"] == pytest.approx(h["measured_pct"] - h["predicted_pct"])
        assert h["within_3_points"] == (abs(h["error_points"]) <= 3)
    md = (root / "cal" / "calibration.md").read_text()
    assert "| boot-48 |" in md and "predicted against measured" in md and "| boot-48 |" in after_run.stdout


@pytest.mark.parametrize("extra, message", [
    ([], "nothing to predict"),
    (["--target-params", "-5"], "--target-params: expected a positive number"),
    (["--target-params", "lots"], "--target-params: expected a positive number"),
    (["--target-tokens", "1M", "--hold-out", "boot-48"], "--target-tokens needs --target-params"),
    (["--hold-out", "nope"], "--hold-out nope: no run or configuration"),
    (["--hold-out", "teacher", "--target-params", "1M"], "needs held-out run 'teacher'"),
])
def test_calibrate_refuses_bad_requests_in_one_line(tiny_corpus, tmp_path, extra, message):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_corpus, tmp_path / "prep", tmp_path / "runs")
    r = run_main("calibrate", str(recipe), *extra)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything trains


def test_split_needs_classical_and_distilled_runs(tiny_corpus, tmp_path):
    from bootdistill.errors import ConfigError

    _, order = load_recipe(write_recipe(tmp_path / "r.yaml", tiny_corpus, tmp_path / "prep", tmp_path / "runs"))
    with pytest.raises(ConfigError, match="no distilled runs"):
        split(order, ["kd-24", "kd-32", "boot-48"])
    with pytest.raises(ConfigError, match="no classical runs"):
        split([p for p in order if p.cfg.distill.policy != "classical"], [])


def test_too_few_points_is_one_line(calibrated, tmp_path):
    root, recipe, *_ = calibrated
    r = run_main("calibrate", str(recipe), "--hold-out", "boot-48", "--target-params", "1M", "--final-only",
                 "--out", str(tmp_path / "cal"))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        "error: too few points to fit the supervised law: 4 from the recipe's classical runs"), r.stderr


def test_calibrate_joins_a_second_recipe_with_its_own_out_dir(tiny_corpus, tmp_path):
    """Small sizes in one recipe, the size to predict (and its own teacher) in another: `--with` joins them."""
    small = write_recipe(tmp_path / "small.yaml", tiny_corpus, tmp_path / "prep", tmp_path / "runs-small")
    recipe = yaml.safe_load(small.read_text())
    big = {**recipe, "name": "big", "out_dir": str(tmp_path / "runs-big"),
           "runs": {"teacher-big": recipe["runs"]["teacher"],
                    "classical-48": recipe["runs"]["classical-48"],
                    "boot-48": {**recipe["runs"]["boot-48"],
                                "distill": {**recipe["runs"]["boot-48"]["distill"], "teacher": "teacher-big"}}}}
    for name in big["runs"]:
        recipe["runs"].pop(name, None)
    small.write_text(yaml.safe_dump(recipe, sort_keys=False))
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(big, sort_keys=False))
    args = ["calibrate", str(small), "--with", str(tmp_path / "big.yaml"), "--hold-out", "classical-48", "boot-48",
            "--target-params", "2M", "--top-k", "4", "--out", str(tmp_path / "cal")]
    nothing = run_main(*args, "--no-train")
    assert nothing.returncode == 2 and "--no-train: none of the runs to fit on has finished" in nothing.stderr
    assert not (tmp_path / "runs-small").exists() and not (tmp_path / "runs-big").exists()  # nothing trained
    r = run_main(*args)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert result["held_out_runs"] == ["classical-48", "boot-48"]
    # once trained, --no-train fits on the same runs and predicts the same saving
    again = run_main(*args, "--no-train")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())["target"] == result["target"]
    (_, big_order) = load_recipe(tmp_path / "big.yaml")
    teacher_big = next(p for p in big_order if p.name == "teacher-big")
    # the second recipe's teacher trained in its own out_dir and is fitted on; its held-out pair is not trained yet
    assert teacher_big.run_dir.parent == tmp_path / "runs-big" and teacher_big.run_dir.name in result["fit"]["runs"]
    assert [h["configuration"] for h in result["held_out"]] == ["boot-48"]
    assert result["held_out"][0]["teacher"] == "teacher-big" and result["held_out"][0]["measured"] == "not run yet"
    clash = run_main("calibrate", str(small), "--with", str(small), "--target-params", "2M")
    assert clash.returncode == 2 and "in both" in clash.stderr and clash.stderr.count("\n") == 1, clash.stderr
