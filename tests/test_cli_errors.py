"""Bad input on the command line: one clear line and exit 2, never a traceback or a silent exit 0."""

import os
import resource
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, ctrl_c_reaches_child, run_cli, run_main, tiny_overrides, write_wikitext
from test_experiment import write_recipe
from bootdistill.runtime import checkpoint as ckpt_io


def error_line(r) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("clierr")
    out = root / "run"
    r = run_cli("train", *tiny_overrides(tiny_corpus, out, root / "prep", **{"train.max_steps": 4}))
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("args, message", [
    (["--batches", "0"], "--batches must be a positive integer"),
    (["--batches", "-1"], "--batches must be a positive integer"),
    (["--context", "-5"], "--context must be a positive integer"),
    (["--context", "0"], "--context must be a positive integer"),
    (["--bucket", "0"], "--bucket must be a positive integer"),
])
def test_eval_bad_numbers(run, args, message):
    assert message in error_line(run_main("eval", str(run), *args))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a machine with a GPU accepts --device cuda")
def test_report_refuses_a_device_that_is_not_there(run, tmp_path):
    out = tmp_path / "report"
    line = error_line(run_main("report", str(run), "--device", "cuda", "--out", str(out)))
    assert line == "error: --device cuda but no CUDA GPU is visible: use --device cpu or auto"
    assert "--device tpu is not a device" in error_line(run_main("report", str(run), "--device", "tpu", "--out", str(out)))
    assert not out.exists()  # said before anything was evaluated or written


def test_bad_numbers_elsewhere(tiny_corpus, tmp_path):
    assert "--margin" in error_line(run_main("plan", "--student", "150e6", "--budget", "1e20", "--margin", "-1"))
    assert "--vocab-size" in error_line(run_main("presets", "--vocab-size", "0"))
    line = error_line(run_main("train", *tiny_overrides(tiny_corpus, tmp_path / "r", tmp_path / "p"), "train.lr_max=1e39"))
    assert "train.lr_max must fit a float32" in line
    assert "finite" in error_line(run_main("train", *tiny_overrides(tiny_corpus, tmp_path / "r", tmp_path / "p"), "train.lr_max=inf"))
    assert not (tmp_path / "r").exists()


def test_unwritable_outputs(run, tiny_corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    bad = str(blocker / "out")
    for args in (["prepare", f"data.corpus={tiny_corpus}", "data.vocab_size=300", "--out", bad],
                 ["report", str(run), "--out", bad],
                 ["vocab-sweep", "--corpus", str(tiny_corpus), "--sizes", "300,400", "--out", bad],
                 ["plan", "--student", "150e6", "--budget", "1e20", "--out", bad],
                 ["fit", str(run), "--out", bad],
                 ["train", *tiny_overrides(tiny_corpus, blocker / "run", tmp_path / "prep")]):
        assert "is a file, not a directory" in error_line(run_main(*args)), args


def test_overrides_anywhere_on_the_line(tiny_corpus, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_corpus, tmp_path / "out", tmp_path / "prep")
    for args in (["--report", "train.threads=1", "--dry-run"], ["train.threads=1", "--dry-run", "--report"]):
        r = run_main("experiment", str(recipe), *args)
        assert r.returncode == 0 and "boot" in r.stdout, r.stderr


def test_yaml_error_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_model: 32\ntrain: {lr_max: 1e-3\n")
    line = error_line(run_main("train", "-c", str(bad)))
    assert str(bad) in line and "line 4, column 1" in line


def test_ctrl_c_during_prepare_says_nothing_about_checkpoints(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_wikitext(corpus / "wiki.train.raw", 4000, seed=1)
    out = tmp_path / "prep"
    proc = subprocess.Popen([sys.executable, "-m", "bootdistill.cli", "prepare", f"data.corpus={corpus}",
                             "data.vocab_size=300", "--out", str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_reaches_child)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".prep.tmp-*")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" not in err and "checkpoint" not in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".prep.tmp-*"))


@pytest.mark.parametrize("limit_kb", [100, 250])  # below the weights file / below the optimizer state file
def test_file_size_limit_while_checkpointing(run, tiny_corpus, tmp_path, limit_kb):
    prepared = run.parent / "prep"  # prepared already: the limit hits the checkpoint, not the token files
    out = tmp_path / "run"
    args = [sys.executable, "-m", "bootdistill.cli", "train", *tiny_overrides(tiny_corpus, out, prepared)]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kb * 1024, limit_kb * 1024))

    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    line = error_line(r)
    assert "cannot write checkpoint" in line and "--resume" in line
    assert "no checkpoint was written yet" in line and "intact" not in line  # the first write failed: none exists
    assert not list((out / "checkpoints").iterdir())  # no half-written checkpoint, no temp dir
    if limit_kb == 100:  # and the run continues once there is room
        r = run_cli("train", "--resume", *tiny_overrides(tiny_corpus, out, prepared))
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("extra, message", [
    ({"train.threads": -2}, "train.threads must be >= 1 or null"),
    ({"train.threads": 0}, "train.threads must be >= 1 or null"),
    ({"train.seed": -1}, "train.seed must be an integer in [0, 2^63)"),
    ({"train.seed": "1e30"}, "train.seed must be an integer in [0, 2^63)"),
    ({"train.max_steps": 100, "train.total_steps": 10}, "train.max_steps (100) is past train.total_steps (10)"),
    ({"train.warmup_steps": 1000, "train.total_steps": 5}, "train.warmup_steps (1000) is longer than train.total_steps (5)"),
    ({"model.d_model": 1000000000, "model.n_heads": 1}, "GiB for weights, gradients and AdamW state, more than"),
])
def test_train_values_that_cannot_run(tiny_corpus, tmp_path, extra, message):
    out = tmp_path / "r"
    assert message in error_line(run_main("train", *tiny_overrides(tiny_corpus, out, tmp_path / "p", **extra)))
    assert not out.exists() and not (tmp_path / "p").exists()  # said before data or a run directory


def test_a_batch_larger_than_the_training_data_claims_nothing(run, tiny_corpus, tmp_path):
    out = tmp_path / "r"
    line = error_line(run_main("train", *tiny_overrides(tiny_corpus, out, run.parent / "prep", **{"train.batch_tokens": "1e12"})))
    assert "is more than the" in line and "the training data holds" in line and not out.exists()


def test_resume_of_a_run_that_is_not_there(tiny_corpus, tmp_path):
    out = tmp_path / "typo"
    line = error_line(run_main("train", "--resume", *tiny_overrides(tiny_corpus, out, tmp_path / "p")))
    assert f"'{out}' does not exist" in line and not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "--batch must be a positive number"),
    (["--batch", "-1"], "--batch must be a positive number"),
    (["--context", "0"], "--context must be a positive number"),
])
def test_teacher_cache_bad_numbers(run, tmp_path, args, message):
    assert message in error_line(run_main("teacher-cache", str(run), "--out", str(tmp_path / "c"), *args))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_vocab_sweep_sample_size_must_be_finite(tiny_corpus, tmp_path, value):
    line = error_line(run_main("vocab-sweep", "--corpus", str(tiny_corpus), "--sample-mb", value, "--out", str(tmp_path / "v")))
    assert "--sample-mb must be a finite number" in line


def test_experiment_out_dir_override_moves_every_run(tiny_corpus, tmp_path):
    from bootdistill.experiment import load_recipe

    recipe = write_recipe(tmp_path / "r.yaml", tiny_corpus, tmp_path / "out", tmp_path / "prep")
    elsewhere = tmp_path / "elsewhere"
    _, order = load_recipe(recipe, [f"out_dir={elsewhere}"])
    assert order and all(p.run_dir.parent == elsewhere for p in order)
    listed = run_main("experiment", str(recipe), "--list", f"out_dir={elsewhere}")
    assert listed.returncode == 0 and all(f"out_dir={elsewhere}" in line for line in listed.stdout.splitlines())


def test_messages_say_what_is_wrong(run, tiny_corpus, tmp_path):
    line = error_line(run_main("train", "-c", str(tmp_path)))
    assert f"config file '{tmp_path}' is a directory" in line
    teacher_file = run / "summary.json"
    line = error_line(run_main("train", *tiny_overrides(tiny_corpus, tmp_path / "s", tmp_path / "p"), "distill.policy=kd",
                               f"distill.teacher={teacher_file}"))
    assert f"teacher '{teacher_file}' is a file" in line
    line = error_line(run_main("train", *tiny_overrides(tiny_corpus, tmp_path / "s", tmp_path / "p"), "log.wandb_mode=off"))
    assert "log.wandb_mode is the boolean false" in line and "quote the value" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    pytest.importorskip("transformers")
    line = error_line(run_main("export", str(run), str(tmp_path / "hf"), "--tokenizer", str(empty)))
    assert f"tokenizer directory '{empty}' holds no tokenizer.json" in line
    assert not (tmp_path / "s").exists() and not (tmp_path / "hf").exists()


def test_prepare_file_size_limit_names_the_path(tiny_corpus, tmp_path):
    out = tmp_path / "prep"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024, 20 * 1024))

    r = subprocess.run([sys.executable, "-m", "bootdistill.cli", "prepare", f"data.corpus={tiny_corpus}",
                        "data.vocab_size=300", "--out", str(out), "--no-progress"], cwd=REPO, capture_output=True,
                       text=True, timeout=300, preexec_fn=limit)
    line = error_line(r)
    assert f"'{out}'" in line and "file-size limit (ulimit -f)" in line
    assert not out.exists() and not list(tmp_path.glob(".prep.tmp-*"))


def test_run_directories_follow_the_umask(run):
    mask = os.umask(0o022)
    os.umask(mask)  # the suite's umask, inherited by the run
    for d in (run / "checkpoints", *ckpt_io.checkpoint_dirs(run)):
        assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~mask, d
    for f in ckpt_io.checkpoint_dirs(run)[-1].iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f
