"""Bad input on the command line: one clear line and exit 2, never a traceback or a silent exit 0."""

import resource
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, ctrl_c_reaches_child, run_cli, run_main, tiny_overrides, write_wikitext
from test_experiment import write_recipe


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
    assert "cannot write checkpoint" in error_line(r) and "--resume" in error_line(r)
    assert not list((out / "checkpoints").iterdir())  # no half-written checkpoint, no temp dir
    if limit_kb == 100:  # and the run continues once there is room
        r = run_cli("train", "--resume", *tiny_overrides(tiny_corpus, out, prepared))
        assert r.returncode == 0, r.stderr
