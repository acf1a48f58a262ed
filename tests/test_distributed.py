"""Data-parallel training under torchrun (gloo, 2 CPU processes): same curve as one process (and as another
micro-batch layout), exact resume after a kill, the same bootstrapped switch; plus the pieces (sampler and
evaluation shards) without processes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import REPO, run_cli, tiny_overrides, wait_for_checkpoint
from bootdistill.data.loader import BlockSampler, eval_shard
from bootdistill.runtime.metrics import read_metrics

# Losses of a 2-process run vs the 1-process run with the same global batch: the same sequences in the same
# micro-batches, only summed in another order. Measured on this CPU: within 1e-7 relative (DDP and FSDP).
# Weights are not compared across process counts: AdamW turns last-bit differences of near-zero gradients into
# lr-sized steps.
RTOL = 1e-5


def torchrun_args(*args: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "bootdistill", *args]


def torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_args(*args, nproc=nproc), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def last_weights(run: Path) -> dict:
    return load_file(sorted((run / "checkpoints").glob("step_*"))[-1] / "model.safetensors")


def assert_same_curve(a: Path, b: Path, processes: int = 2) -> None:
    ra, rb = read_metrics(a / "metrics.jsonl"), read_metrics(b / "metrics.jsonl")
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        assert x["tokens"] == y["tokens"] and x["flops_total"] == y["flops_total"]  # global tokens in the ledger
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=RTOL)
        assert ("val_loss" in x) == ("val_loss" in y)
        assert y.get("val_loss", 0) == pytest.approx(x.get("val_loss", 0), rel=RTOL)
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert sb["final_val_loss"] == pytest.approx(sa["final_val_loss"], rel=RTOL)
    assert sb["test_loss"] == pytest.approx(sa["test_loss"], rel=RTOL)
    assert sb["flops"] == sa["flops"] and sb["processes"] == processes


# dropout draws differ per process by design, so the equivalence runs use none; micro-batches of 2 make each
# rank accumulate 2 micro-steps (the first without gradient sync). fp32: the tolerance is about how the
# processes split and sum the batch; bf16 autocast rounds each partial sum to 8 bits and drifts ~1e-4 in 12 steps.
# 7 validation sequences: 4 + 3 over two ranks, so one rank pads
NO_DROPOUT = {"model.dropout": 0.0, "train.micro_batch": 2, "train.precision": "fp32", "train.eval_sequences": 7}


@pytest.fixture(scope="module")
def one_process(tiny_corpus, prepared, tmp_path_factory):
    """The reference: one process, the step's 8 sequences in one forward (8 x 1); the others split it 2 x 4."""
    out = tmp_path_factory.mktemp("one") / "run"
    r = run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **{**NO_DROPOUT, "train.micro_batch": 8}))
    assert r.returncode == 0, r.stderr
    return out


# ---------------------------------------------------------------- pieces, in one process


def test_sampler_shards_tile_the_global_batch():
    tokens = np.arange(32 * 50 + 1, dtype=np.uint16)
    whole = BlockSampler(tokens, 32, 8, seed=3)
    shards = [BlockSampler(tokens, 32, 8, seed=3, rank=r, world=2) for r in range(2)]
    for _ in range(600):  # several epochs: the wrap-around is split the same way
        x, _ = whole.next_batch()
        parts = [s.next_batch()[0] for s in shards]
        assert torch.equal(torch.cat(parts), x)
    assert shards[1].state_dict() == whole.state_dict()


@pytest.mark.parametrize("n_tokens, max_sequences", [(32 * 9 + 1, None), (32 * 9 + 1, 7), (32 * 9 + 1, 50), (32 * 3 + 1, None)])
def test_eval_shards_cover_the_first_blocks_on_any_layout(n_tokens, max_sequences):
    tokens = np.arange(n_tokens, dtype=np.uint16)
    n = min((n_tokens - 1) // 32, max_sequences or 10**9)
    expected = [32 * i for i in range(n)]  # the split's first blocks, whatever the batch size and process count
    for batch in (1, 3, 4):
        for world in (1, 2, 3):
            seen, counts = [], set()
            for rank in range(world):
                batches = list(eval_shard(tokens, 32, batch, max_sequences, rank, world))
                counts.add(tuple(len(x) for x, _, _ in batches))  # sharded models need every rank in every forward
                seen += [x[i, 0].item() for x, _, real in batches for i in range(real)]
            assert sorted(seen) == expected and len(counts) == 1, (batch, world)


def test_micro_batch_layout_keeps_the_curve(tiny_corpus, prepared, one_process, tmp_path):
    """The micro-batch is a memory knob: 2 x 4 trains and evaluates like 8 x 1 (the same validation set)."""
    out = tmp_path / "two-by-four"
    r = run_cli("train", *tiny_overrides(tiny_corpus, out, prepared, **NO_DROPOUT))
    assert r.returncode == 0, r.stderr
    assert_same_curve(one_process, out, processes=1)


def test_parallel_without_torchrun_is_one_clear_line(tiny_corpus, prepared, tmp_path):
    r = run_cli("train", *tiny_overrides(tiny_corpus, tmp_path / "r", prepared, **{"train.parallel": "ddp"}))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: train.parallel=ddp needs torchrun")
    r = run_cli("train", *tiny_overrides(tiny_corpus, tmp_path / "r", prepared, **{"train.parallel": "zero"}))
    assert r.returncode == 2 and "train.parallel must be" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 2 processes under torchrun


@pytest.mark.slow
def test_ddp_two_processes_match_one(tiny_corpus, prepared, one_process, tmp_path):
    out = tmp_path / "ddp"
    r = torchrun("train", *tiny_overrides(tiny_corpus, out, prepared, **NO_DROPOUT))
    assert r.returncode == 0, r.stderr
    assert_same_curve(one_process, out)
    assert r.stdout.count("done: val loss") == 1  # outputs from rank 0 only
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in one_process.iterdir())


FSDP = {**NO_DROPOUT, "train.parallel": "fsdp"}


@pytest.mark.slow
def test_fsdp_two_processes_match_one(tiny_corpus, prepared, one_process, tmp_path):
    out = tmp_path / "fsdp"
    r = torchrun("train", *tiny_overrides(tiny_corpus, out, prepared, **FSDP))
    assert r.returncode == 0, r.stderr
    assert_same_curve(one_process, out)
    last = sorted((out / "checkpoints").glob("step_*"))[-1]
    assert (last / "dcp" / ".metadata").is_file()  # sharded model and optimizer state, by torch.distributed.checkpoint
    meta = json.loads((last / "meta.json").read_text())
    assert any(name.startswith("dcp/") for name in meta["files"])  # hashed like the rest


@pytest.mark.slow
def test_llama_under_ddp_and_fsdp_matches_one_process(tiny_corpus, prepared, tmp_path):
    """The llama block (RoPE tables as buffers, grouped-query attention) trains the same curve on 2 processes."""
    llama = {**NO_DROPOUT, "model.arch": "llama", "model.n_kv_heads": 1}
    one = tmp_path / "one"
    assert run_cli("train", *tiny_overrides(tiny_corpus, one, prepared, **llama)).returncode == 0
    for mode in ("ddp", "fsdp"):
        out = tmp_path / mode
        r = torchrun("train", *tiny_overrides(tiny_corpus, out, prepared, **llama, **{"train.parallel": mode}))
        assert r.returncode == 0, r.stderr
        assert_same_curve(one, out)


@pytest.mark.slow
def test_fsdp_resume_is_exact(tiny_corpus, prepared, tmp_path):
    fsdp = {"train.parallel": "fsdp"}  # default dropout: each rank's stream must resume where it stopped
    full, split = tmp_path / "full", tmp_path / "split"
    assert torchrun("train", *tiny_overrides(tiny_corpus, full, prepared, **fsdp)).returncode == 0
    # stopped after its step-8 checkpoint, then resumed from it
    assert torchrun("train", *tiny_overrides(tiny_corpus, split, prepared, **fsdp, **{"train.max_steps": 8})).returncode == 0
    r = torchrun("train", "--resume", *tiny_overrides(tiny_corpus, split, prepared, **fsdp))
    assert r.returncode == 0, r.stderr
    wa, wb = last_weights(full), last_weights(split)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ra, rb = read_metrics(full / "metrics.jsonl"), read_metrics(split / "metrics.jsonl")
    assert [(x["step"], x["train_loss"]) for x in ra] == [(x["step"], x["train_loss"]) for x in rb]
    r = run_cli("train", "--resume", *tiny_overrides(tiny_corpus, split, prepared))
    assert r.returncode == 2 and "with train.parallel=fsdp" in r.stderr.splitlines()[-1]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_two_processes_resume_after_sigkill_exactly(tiny_corpus, prepared, tmp_path):
    extra = {"train.total_steps": 40, "train.checkpoint_every": 5, "train.eval_every": 10}  # default dropout 0.1
    ref = tmp_path / "ref"
    r = torchrun("train", *tiny_overrides(tiny_corpus, ref, prepared, **extra))
    assert r.returncode == 0, r.stderr

    out = tmp_path / "killed"
    agent = subprocess.Popen(torchrun_args("train", *tiny_overrides(tiny_corpus, out, prepared, **extra)), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoint(out, 15, agent, timeout=120)
    workers = _children(agent.pid)  # they run in their own sessions: kill them, then torchrun
    assert len(workers) == 2
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    assert not (out / "summary.json").exists(), "the run finished before it could be killed"

    r = torchrun("train", "--resume", *tiny_overrides(tiny_corpus, out, prepared, **extra))
    assert r.returncode == 0, r.stderr
    wa, wb = last_weights(ref), last_weights(out)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = json.loads((ref / "summary.json").read_text()), json.loads((out / "summary.json").read_text())
    assert sa["final_val_loss"] == sb["final_val_loss"] and sa["flops"] == sb["flops"]
    ra, rb = read_metrics(ref / "metrics.jsonl"), read_metrics(out / "metrics.jsonl")
    assert [(x["step"], x["train_loss"]) for x in ra] == [(x["step"], x["train_loss"]) for x in rb]


@pytest.mark.slow
def test_bootstrapped_experiment_switches_at_the_same_step(tiny_corpus, prepared, tmp_path):
    """One process with 8 x 1 and 2 x 4 micro-batches and two processes with 2 x 2 each: the same validation and
    teacher losses and KD diagnostics at every evaluation, so the switch comes at the same step."""
    recipe = {
        "name": "boot2",
        "defaults": {
            "data": {"corpus": str(tiny_corpus), "vocab_size": 300, "prepared_dir": str(prepared)},
            "model": {"d_model": 48, "n_layers": 2, "n_heads": 2, "context": 32, "dropout": 0.0},
            "train": {"batch_tokens": 256, "warmup_steps": 2, "total_steps": 12, "eval_every": 2,
                      "eval_sequences": 7, "log_every": 2, "checkpoint_every": 4, "precision": "fp32", "threads": 1,
                      "lr_max": 3e-3},
            "distill": {"diag_sequences": 5},
            "log": {"progress": False, "tensorboard": False},
        },
        "runs": {
            "teacher": {"model": {"d_model": 24}, "train": {"total_steps": 40}},
            "boot": {"distill": {"policy": "bootstrapped", "teacher": "teacher", "margin": 0.15}},
        },
    }
    runs = {}
    for name, launch, micro in (("8x1", run_cli, 8), ("2x4", run_cli, 2), ("two", torchrun, 2)):
        path = tmp_path / f"{name}.yaml"
        defaults = {**recipe["defaults"], "train": {**recipe["defaults"]["train"], "micro_batch": micro}}
        path.write_text(yaml.safe_dump({**recipe, "defaults": defaults, "out_dir": str(tmp_path / name)}))
        r = launch("experiment", str(path), *(["--report"] if launch is torchrun else []))
        assert r.returncode == 0, r.stderr
        runs[name] = next((tmp_path / name).glob("boot-*"))
    # the ranks part after training; rank 0 alone then writes the report
    assert (tmp_path / "two" / "report" / "report.md").is_file() and r.stdout.count("report: ") == 1
    summaries = {name: json.loads((run / "summary.json").read_text()) for name, run in runs.items()}
    switch = summaries["8x1"]["policy"]["kd_stopped_step"]
    assert switch is not None and 2 < switch < 12  # KD ran for a while, then stopped inside the run
    evals = {name: [row for row in read_metrics(run / "metrics.jsonl") if "val_loss" in row] for name, run in runs.items()}
    # the diagnostics are differences of log-probabilities: the weights' last-bit differences (see RTOL) show more
    keys = {"val_loss": RTOL, "teacher_val_loss": RTOL, "val_kl_teacher_student": 1e-3, "student_entropy": 1e-3}
    for name in ("2x4", "two"):
        assert summaries[name]["policy"]["kd_stopped_step"] == switch
        assert summaries[name]["flops"]["flops_teacher_inference"] == summaries["8x1"]["flops"]["flops_teacher_inference"]
        assert [row["step"] for row in evals[name]] == [row["step"] for row in evals["8x1"]]
        for row, ref in zip(evals[name], evals["8x1"]):
            assert [k in row for k in keys] == [k in ref for k in keys]
            for k in (k for k in keys if k in ref):
                assert row[k] == pytest.approx(ref[k], rel=keys[k]), (name, row["step"], k)
    assert any("val_kl_teacher_student" in row for row in evals["two"])  # the diagnostics were compared
