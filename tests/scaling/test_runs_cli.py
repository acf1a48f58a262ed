"""Reading points (CSV, run directories) with one-line errors, and `fit` / `plan` end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootdistill.errors import DataError
from bootdistill.scaling import runs

REPO = Path(__file__).resolve().parents[2]


def _csv(tmp_path, text, name="p.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_both_csv_kinds(tmp_path):
    pts = runs.PointSet()
    assert runs.read_csv(_csv(tmp_path, "# comment\nN,D,L,note\n1e8,2e9,3.1,x\n2e8,4e9,2.9,y\n"), pts) == "supervised"
    assert runs.read_csv(_csv(tmp_path, "L_S,N_S,D_S,L_T\n2.5,1e8,2e9,2.4\n", "d.csv"), pts) == "distillation"
    assert pts.count("supervised") == 2 and pts.count("distillation") == 1
    assert pts.distillation["L_T"] == [2.4]


@pytest.mark.parametrize(
    "text, match",
    [
        ("N,D,loss\n1e8,2e9,3\n", "match neither"),
        ("N,D,L,N_S,D_S,L_T,L_S\n1,1,1,1,1,1,1\n", "match both"),
        ("N,D,L\n1e8,2e9,nan\n", "row 1: L must be a positive finite number"),
        ("N,D,L\n1e8,2e9,3\n1e8,2e9,0\n", "row 2: L must be a positive finite number"),
        ("N,D,L\n1e8,-2e9,3\n", "D must be a positive finite number"),
        ("N,D,L\n1e8,2e9\n", "2 fields but the header has 3"),
        ("N,D,L\n1e8,abc,3\n", "D must be a number"),
        ("", "empty"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path, text, match):
    with pytest.raises(DataError, match=match) as e:
        runs.collect([_csv(tmp_path, text)])
    assert "\n" not in str(e.value)


def _run_dir(root, name, n, tokens, losses, teacher=None):
    run = root / name
    run.mkdir(parents=True)
    summary = {"n_params": n, "n_params_non_embedding": n // 2, "tokens": tokens[-1], "final_val_loss": losses[-1],
               "model": {"d_model": 64, "n_layers": 2, "n_heads": 2, "context": 128, "vocab_size": 500}}
    if teacher:
        summary["teacher"] = teacher
    (run / "summary.json").write_text(json.dumps(summary))
    rows = [{"step": 0, "tokens": 0, "flops_total": 0, "val_loss": 9.0}]
    rows += [{"step": i + 1, "tokens": t, "flops_total": 6 * n * t, "val_loss": v}
             for i, (t, v) in enumerate(zip(tokens, losses))]
    rows.insert(2, {"step": 99, "tokens": tokens[0], "flops_total": 1})  # a training row without evaluation
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_reads_run_directories(tmp_path):
    _run_dir(tmp_path / "runs", "sup", 1000, [100, 200, 300], [5.0, 4.5, 4.2])
    _run_dir(tmp_path / "runs", "dist", 1000, [100, 200], [4.8, 4.4],
             teacher={"n_params": 500, "val_loss": 4.6, "train_flops": 1e12})
    final = runs.collect([tmp_path / "runs"])
    assert final.supervised == {"N": [1000.0], "D": [300.0], "L": [4.2]}
    assert final.distillation == {"N_S": [1000.0], "D_S": [200.0], "L_T": [4.6], "L_S": [4.4]}
    every = runs.collect([tmp_path / "runs" / "sup", tmp_path / "runs" / "dist"], every_eval=True, params="non_embedding")
    assert every.supervised["D"] == [100.0, 200.0, 300.0] and every.supervised["N"] == [500.0] * 3  # step 0 skipped
    assert every.count("distillation") == 2


def test_bootstrapped_runs_keep_only_their_distillation_phase(tmp_path):
    run = _run_dir(tmp_path, "boot", 1000, [100, 200, 300], [4.8, 4.4, 4.1],
                   teacher={"n_params": 500, "val_loss": 4.6, "train_flops": 1e12})
    summary = json.loads((run / "summary.json").read_text())
    summary["policy"] = {"policy": "bootstrapped", "kd_stopped_tokens": 200}
    (run / "summary.json").write_text(json.dumps(summary))
    every = runs.collect([run], every_eval=True)
    assert every.distillation["D_S"] == [100.0, 200.0] and len(every.skipped) == 1
    final = runs.collect([run])
    assert final.count("distillation") == 0 and "after the switch" in final.skipped[0][1]


def test_evaluations_are_put_on_the_final_losss_scale(tmp_path):
    # in-training evaluations read a subset (4.0 at the last step), the final loss the whole split (4.4): every
    # evaluation is scaled by the run's own ratio at its last step, so the law and the targets share one scale
    run = _run_dir(tmp_path, "sub", 1000, [100, 200], [5.0, 4.0])
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "final_val_loss": 4.4}))
    assert runs.collect([run], every_eval=True).supervised["L"] == pytest.approx([5.5, 4.4])
    assert runs.collect([run]).supervised["L"] == [4.4]
    # no evaluation at the last step: nothing to take the ratio from, the evaluations stay as they are
    (run / "summary.json").write_text(json.dumps({**summary, "final_val_loss": 4.4, "tokens": 300}))
    assert runs.collect([run], every_eval=True).supervised["L"] == pytest.approx([5.0, 4.0])


def test_run_directory_problems(tmp_path):
    run = _run_dir(tmp_path, "bad", 1000, [100], [float("nan")])
    with pytest.raises(DataError, match="val_loss must be a positive finite number"):
        runs.collect([run])
    (run / "summary.json").write_text(json.dumps({"n_params": 5}))
    with pytest.raises(DataError, match="has no 'tokens'"):
        runs.collect([run])
    with pytest.raises(DataError, match="no such file"):
        runs.collect([tmp_path / "missing"])


def _main(argv, capsys):
    from bootdistill.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fit_and_plan_end_to_end(tmp_path, capsys):
    runs.write_csv(tmp_path / "sup.csv", "supervised", runs.synthetic_supervised(40, noise=0.002, seed=1))
    runs.write_csv(tmp_path / "dist.csv", "distillation", runs.synthetic_distillation(60, noise=0.002, seed=2))
    out = tmp_path / "fit"
    code, text, err = _main(["fit", tmp_path / "sup.csv", tmp_path / "dist.csv", "--out", out, "--bootstrap", "8",
                             "--top-k", "4", "--workers", "2", "--holdout", "0.2"], capsys)
    assert code == 0, err
    data = json.loads((out / "scaling_fit.json").read_text())
    for law in ("supervised", "distillation"):
        assert data[law]["converged"] and data[law]["ci90"] and data[law]["heldout"]["mean"] < 0.01
        assert (out / f"fit_{law}.png").stat().st_size > 1000
    assert data["distillation"]["supervised"] == data["supervised"]["coefficients"]
    assert "relative error" in text and not [p for p in os.listdir(out) if p.startswith(".")]

    plan_dir = tmp_path / "plan"
    code, text, err = _main(["plan", "--student", "1B", "--budget", "1e21", "--coefficients", out / "scaling_fit.json",
                             "--scenario", "both", "--out", plan_dir], capsys)
    assert code == 0, err
    assert "answer:" in text
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert plan["scenarios"]["both"]["flops"]["total"] == pytest.approx(1e21, rel=1e-9)
    for png in ("isoflop_contours.png", "student_vs_teacher.png", "compute_curves.png"):
        assert (plan_dir / png).stat().st_size > 1000


def test_plan_bootstrapped_and_errors(tmp_path, capsys):
    code, text, _ = _main(["plan", "--student", "1B", "--tokens", "20B", "--teacher", "3B", "--teacher-flops", "6e21",
                           "--free-teacher"], capsys)
    assert code == 0 and "Answer: use the teacher" in text
    code, _, err = _main(["plan", "--student", "1B", "--budget", "1e10"], capsys)
    assert code == 2 and err.startswith("error: budget") and err.count("\n") == 1
    code, _, err = _main(["fit", tmp_path / "nothing.csv", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "no such file" in err
    few = _csv(tmp_path, "N,D,L\n1e8,2e9,3\n2e8,2e9,2.9\n")
    code, _, err = _main(["fit", few, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "at least 7 points" in err and not (tmp_path / "o" / "scaling_fit.json").exists()
    distilled_only = _csv(tmp_path, "N_S,D_S,L_T,L_S\n" + "1e8,2e9,3,3.1\n" * 12, "d.csv")
    code, _, err = _main(["fit", distilled_only, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "needs the supervised law" in err


def test_unconverged_fit_exits_1_and_says_so(tmp_path, capsys, monkeypatch):
    from bootdistill.scaling import fit

    monkeypatch.setitem(fit.LBFGS, "maxiter", 2)
    monkeypatch.setitem(fit.LBFGS, "maxfun", 4)
    runs.write_csv(tmp_path / "sup.csv", "supervised", runs.synthetic_supervised(20, seed=1))
    code, _, err = _main(["fit", tmp_path / "sup.csv", "--out", tmp_path / "o", "--bootstrap", "0", "--top-k", "2",
                          "--workers", "1", "--no-plots"], capsys)
    assert code == 1 and "did not converge" in err
    assert json.loads((tmp_path / "o" / "scaling_fit.json").read_text())["supervised"]["converged"] is False


def test_package_cli_registers_fit_and_plan(tmp_path):
    """The one entry point (`python -m bootdistill.cli`), once, on a small CSV."""
    runs.write_csv(tmp_path / "sup.csv", "supervised", runs.synthetic_supervised(20, seed=3))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    r = subprocess.run([sys.executable, "-m", "bootdistill.cli", "fit", str(tmp_path / "sup.csv"), "--out",
                        str(tmp_path / "o"), "--bootstrap", "4", "--top-k", "4", "--workers", "1", "--no-plots"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "scaling_fit.json").exists()
