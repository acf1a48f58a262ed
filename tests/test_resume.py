"""Stopped and resumed runs end bitwise where an uninterrupted run ends, at the default settings (dropout 0.1,
default precision, the MFU probe running): stopped by SIGKILL, Ctrl-C or train.max_steps, classical and
bootstrapped."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import REPO, ctrl_c_reaches_child, run_cli, tiny_overrides, wait_for_checkpoint

EXTRA = {"train.total_steps": 24, "train.checkpoint_every": 3, "train.eval_every": 6}


def final_weights(run: Path) -> dict:
    last = sorted((run / "checkpoints").glob("step_*"))[-1]
    return load_file(last / "model.safetensors")


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa), "final weights differ"
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    assert (sa["final_val_loss"], sa["test_loss"]) == (sb["final_val_loss"], sb["test_loss"])
    assert sa["flops"] == sb["flops"] and sa["flops"]["flops_eval"] > 0  # the ledger, evaluations included


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bootdistill.cli", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=ctrl_c_reaches_child)


def stop_after(proc: subprocess.Popen, run_dir: Path, step: int, sig: int) -> None:
    wait_for_checkpoint(run_dir, step, proc, timeout=120)
    proc.send_signal(sig)
    proc.wait()


@pytest.fixture(scope="module")
def reference(tiny_corpus, prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    r = run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **EXTRA))
    assert r.returncode == 0, r.stderr
    return out


def test_defaults_are_what_a_user_gets(tiny_corpus, prepared, tmp_path):
    from bootdistill.config import load_config

    cfg = load_config(None, tiny_overrides(tiny_corpus, tmp_path, prepared, **EXTRA))
    assert cfg.model.dropout == 0.1 and cfg.train.precision == "auto"


@pytest.mark.parametrize("how", ["ctrl-c", "max_steps"])  # SIGKILL: the fault-injection test below
def test_stopped_classical_run_resumes_bitwise(tiny_corpus, prepared, reference, tmp_path, how):
    out = tmp_path / "run"
    args = tiny_overrides(tiny_corpus, out, prepared, **EXTRA)
    if how == "max_steps":
        r = run_cli("train", *args, "train.max_steps=9")
        assert r.returncode == 0, r.stderr
    else:
        proc = start(["train", *args])
        stop_after(proc, out, 9, signal.SIGINT)
        assert proc.returncode == 130
        assert not (out / "summary.json").exists(), "the run finished before it could be stopped"
    r = run_cli("train", "--resume", *args)
    assert r.returncode == 0, r.stderr
    assert_same_run(reference, out)


def test_killed_bootstrapped_run_resumes_bitwise(tiny_corpus, prepared, reference, tmp_path):
    extra = {**EXTRA, "distill.policy": "bootstrapped", "distill.teacher": str(reference), "distill.margin": 0.5,
             "model.d_model": 48}
    ref = tmp_path / "ref"
    r = run_cli("train", *tiny_overrides(tiny_corpus, ref, prepared, **extra))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "killed"
    args = tiny_overrides(tiny_corpus, out, prepared, **extra)
    proc = start(["train", *args])
    stop_after(proc, out, 9, signal.SIGKILL)
    assert not (out / "summary.json").exists()
    r = run_cli("train", "--resume", *args)
    assert r.returncode == 0, r.stderr
    assert_same_run(ref, out)


def test_llama_student_of_a_gpt2_teacher_resumes_bitwise(tiny_corpus, prepared, reference, tmp_path):
    """The llama block through KD (from the gpt2 reference run), the ledger and a resume, bit for bit."""
    extra = {**EXTRA, "distill.policy": "kd", "distill.teacher": str(reference), "model.arch": "llama",
             "model.n_kv_heads": 1, "train.total_steps": 12}
    ref, out = tmp_path / "ref", tmp_path / "stopped"
    r = run_cli("train", *tiny_overrides(tiny_corpus, ref, prepared, **extra))
    assert r.returncode == 0, r.stderr
    args = tiny_overrides(tiny_corpus, out, prepared, **extra)
    assert run_cli("train", *args, "train.max_steps=6").returncode == 0
    r = run_cli("train", "--resume", *args)
    assert r.returncode == 0, r.stderr
    assert_same_run(ref, out)
    s = json.loads((out / "summary.json").read_text())
    assert s["model"]["arch"] == "llama" and s["teacher"]["model"]["arch"] == "gpt2"
    assert s["flops"]["flops_teacher_inference"] > 0 and s["flops"]["flops_teacher_train"] > 0


def test_fault_injection_kills_at_random_moments(tiny_corpus, prepared, tmp_path):
    """SIGKILL a real run 10 times at random moments, every other time while a checkpoint is being written
    (checkpoint_every=1), resuming each time; the result is the uninterrupted run, bit for bit."""
    import random

    from bootdistill.runtime import checkpoint as ckpt_io

    from bootdistill.config import load_config
    from bootdistill.train.trainer import Trainer

    extra = {**EXTRA, "train.total_steps": 40, "train.eval_every": 10}
    ref = tmp_path / "ref"
    Trainer(load_config(None, tiny_overrides(tiny_corpus, ref, prepared, **extra))).fit()  # in-process: same code
    rng = random.Random(0)
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    args = ["train", "--resume", *tiny_overrides(tiny_corpus, out, prepared, **{**extra, "train.checkpoint_every": 1})]
    def latest() -> int:
        found = ckpt_io.checkpoint_dirs(out)
        return int(found[-1].name[5:]) if found else 0

    in_write = 0
    for kill in range(10):
        before = latest()
        proc = start(args if out.exists() else [a for a in args if a != "--resume"])  # --resume needs the run directory
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if kill % 2 == 0:  # inside a checkpoint write: the moment its temp dir exists
                if any(n.endswith(".tmp") for n in (os.listdir(ckpts) if ckpts.is_dir() else [])):
                    in_write += 1
                    break
                if latest() > before + 2:
                    break  # missed one: kill here instead
            elif latest() > before:  # anywhere, once the run has made progress
                time.sleep(rng.uniform(0, 0.05))
                break
            time.sleep(0.001)  # poll without taking a core from the run
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "summary.json").exists(), f"the run finished before kill {kill + 1}"
        for ckpt in ckpt_io.checkpoint_dirs(out):  # whatever the moment, no visible checkpoint is corrupt
            ckpt_io.verify_checkpoint(ckpt)
    assert in_write >= 2, "too few kills landed inside checkpoint writes"
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert_same_run(ref, out)
    assert not [p.name for p in ckpts.iterdir() if not p.name.startswith("step_")]
    assert not list(out.glob(".*.tmp"))


def test_slow_divergence_is_caught_at_the_same_step_after_a_resume(tiny_corpus, prepared, tmp_path):
    """A loss that climbs slowly (learning rate 10 reached over 300 warmup steps) is caught against the best
    validation loss so far. That memory is in the checkpoints: a run stopped between checkpoints after its best
    evaluation and resumed stops at the same step with the same line and the same guard state, and no kept
    checkpoint evaluates above the allowed level."""
    import math
    import re

    from bootdistill.runtime import checkpoint as ckpt_io

    extra = {"train.lr_max": 10, "train.warmup_steps": 300, "train.total_steps": 300, "train.max_steps": 48,
             "train.checkpoint_every": 2,
             "model.dropout": 0.0}  # the climb then comes from the learning rate alone: a checkpoint follows the best
    whole, split = tmp_path / "whole", tmp_path / "split"
    r = run_cli("train", *tiny_overrides(tiny_corpus, whole, prepared, **extra))
    assert r.returncode == 2 and "gain over guessing" in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    diverged = int(re.search(r"diverged at step (\d+)", line)[1])
    kept = {int(c.name[5:]): ckpt_io.load_state(c)["guard"] for c in ckpt_io.checkpoint_dirs(whole)}
    best_step = min(kept, key=lambda s: json.loads((whole / "checkpoints" / f"step_{s:08d}" / "meta.json").read_text())["val_loss"])
    stop = max(kept) - 1  # odd: between checkpoints, after the best one
    assert best_step < stop < diverged

    assert run_cli("train", *tiny_overrides(tiny_corpus, split, prepared, **{**extra, "train.max_steps": stop})).returncode == 0
    r = run_cli("train", "--resume", *tiny_overrides(tiny_corpus, split, prepared, **extra))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == line
    assert ckpt_io.load_state(ckpt_io.checkpoint_dirs(split)[-1])["guard"] == kept[max(kept)]
    best = kept[max(kept)]["best_val"]
    allowed = max(math.log(300) - (math.log(300) - best) / 2, 1.05 * best)  # half the gain lost, 5% above the best
    for ckpt in ckpt_io.checkpoint_dirs(split):
        assert json.loads((ckpt / "meta.json").read_text())["val_loss"] <= allowed
