"""A run directory: one process at a time, and what a kill leaves behind is cleaned on the next start."""

import subprocess
import sys
import time

from conftest import REPO, run_cli, tiny_overrides
from bootdistill.runtime import checkpoint as ckpt_io
from bootdistill.train.lock import RunLock


def error_line(r) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


def test_second_process_is_refused_with_the_pid_of_the_first(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    args = tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{"train.total_steps": 100000})
    first = subprocess.Popen([sys.executable, "-m", "bootdistill.cli", "train", *args], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ckpt_io.checkpoint_dirs(out):
            time.sleep(0.05)
        line = error_line(run_cli("train", "--resume", *args))
        assert f"in use by another bootdistill process (PID {first.pid})" in line
    finally:
        first.kill()
        first.wait()
    RunLock(out).release()  # the kernel dropped the killed process's lock: nothing stale remains


def test_leftovers_of_killed_writes_are_cleaned_on_start(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    args = tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{"train.max_steps": 8})
    assert run_cli("train", *args).returncode == 0
    ckpts = out / "checkpoints"
    (ckpts / ".step_00000012.k2j3.tmp").mkdir()  # a checkpoint write killed midway
    (ckpts / ".step_00000012.k2j3.tmp" / "model.safetensors").write_bytes(b"\0" * 100)
    (ckpts / "step_00000016").mkdir()  # an old-style rotation killed after deleting the files
    (ckpts / ".step_00000004.del").mkdir()  # a rotation killed midway
    r = run_cli("train", "--resume", *tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{"train.max_steps": 12}))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000008", "step_00000012"]
