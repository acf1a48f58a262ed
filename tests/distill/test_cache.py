"""Offline teacher caches: round trip, equivalence with the live teacher, compute and storage accounting, bad caches."""

import json

import numpy as np
import pytest
import torch

from conftest import run_cli, run_main, tiny_overrides
from bootdistill.compute import flops_per_token
from bootdistill.config import load_config
from bootdistill.data.prepare import token_file
from bootdistill.errors import BootdistillError
from bootdistill.distill.cache import LogitCache
from bootdistill.distill.cache_write import write_teacher_cache
from bootdistill.runtime.loading import load_model_from_checkpoint
from bootdistill.runtime.metrics import read_metrics
from bootdistill.train.trainer import Trainer

STUDENT = {"model.d_model": 48, "model.n_layers": 2, "model.n_heads": 2}
# fp32 runs and caches: these tests compare numbers to float32 references and to each other
KD = {"distill.policy": "kd", "distill.alpha": 0.5, "distill.combine": "mix", "distill.temperature": 2.0,
      "train.precision": "fp32"}
TINY_TEACHER = {"train.total_steps": 30, "train.precision": "fp32"}  # conftest's `teacher`


@pytest.fixture(scope="module")
def full_cache(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("caches") / "full"
    write_teacher_cache(str(teacher), str(out), top_p=1.0, top_k=300, values="fp32", precision="fp32")
    return out


@pytest.fixture(scope="module")
def k50_cache(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("caches") / "k50"
    write_teacher_cache(str(teacher), str(out), top_p=1.0, top_k=50, precision="fp32")
    return out


def train(corpus, prepared, out, **kw):
    trainer = Trainer(load_config(None, tiny_overrides(corpus, out, prepared, **{**STUDENT, **kw})))
    return trainer, trainer.fit()


def test_cache_round_trip_and_storage(full_cache, teacher, prepared):
    cache = LogitCache(full_cache)
    m = cache.meta
    model, ckpt_meta, _ = load_model_from_checkpoint(teacher)
    tokens = token_file(prepared, "train")
    n_blocks = (len(tokens) - 1) // 32
    assert cache.covered.all() and m["n_blocks"] == n_blocks and m["tokens_covered"] == n_blocks * 32
    for b in (0, 7, n_blocks - 1):  # stored = log_softmax of the teacher's logits on that block
        x = torch.from_numpy(np.asarray(tokens[b * 32:(b + 1) * 32], dtype=np.int64))[None]
        with torch.no_grad():
            ref = torch.log_softmax(model(x).float(), -1)[0]
        sig = cache.read(np.array([b * 32]), "cpu")
        dense = torch.full((32, 300), float("-inf")).scatter_(-1, sig.indices[0], sig.logprobs[0])
        torch.testing.assert_close(dense, ref, atol=1e-5, rtol=0)
    s = m["storage"]
    assert s["bytes_per_token"] == 300 * (2 + 4) and s["full_logits_bytes_per_token"] == 300 * 4
    assert s["bytes_total"] == s["bytes_per_token"] * n_blocks * 32
    assert m["teacher"]["sha256"] == ckpt_meta["files"]["model.safetensors"]
    assert m["inference_flops"] == pytest.approx(n_blocks * 32 * flops_per_token(model.shape, training=False))


def test_kept_mass_is_measured_over_the_whole_stream(k50_cache, full_cache, teacher, prepared):
    meta, full = (json.loads((c / "cache.json").read_text()) for c in (k50_cache, full_cache))
    assert full["kept_mass_mean"] == pytest.approx(1.0, abs=1e-6) and abs(full["kl_truncated_to_full_mean"]) < 1e-6
    model, _, _ = load_model_from_checkpoint(teacher)
    tokens = token_file(prepared, "train")
    n = (len(tokens) - 1) // 32
    x = torch.from_numpy(np.asarray(tokens[: n * 32], dtype=np.int64)).view(n, 32)
    with torch.no_grad():
        p = torch.cat([torch.softmax(model(b).double(), -1) for b in x.split(512)])
    kept = p.topk(50, -1).values.sum(-1)
    assert meta["kept_mass_mean"] == pytest.approx(float(kept.mean()), rel=1e-5)
    assert meta["kl_truncated_to_full_mean"] == pytest.approx(float(-kept.log().mean()), rel=1e-5)


def test_cached_full_vocabulary_matches_the_live_teacher(tiny_corpus, prepared, teacher, full_cache, tmp_path):
    _, live = train(tiny_corpus, prepared, tmp_path / "live", **KD, **{"distill.teacher": teacher})
    _, cached = train(tiny_corpus, prepared, tmp_path / "cached", **KD, **{"distill.teacher": full_cache})
    rl, rc = read_metrics(tmp_path / "live" / "metrics.jsonl"), read_metrics(tmp_path / "cached" / "metrics.jsonl")
    assert [r["step"] for r in rl] == [r["step"] for r in rc]
    for a, b in zip(rl, rc):  # same data order, same signal: equal up to float rounding
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["kd_loss"] == pytest.approx(a["kd_loss"], rel=1e-4, abs=1e-6)
    assert cached["final_val_loss"] == pytest.approx(live["final_val_loss"], rel=1e-4)
    assert cached["teacher"]["val_loss"] == pytest.approx(live["teacher"]["val_loss"], rel=1e-6)
    # compute: the live run pays inference per KD token; the cached run is charged the whole cache once and
    # shows its own share, which equals the live run's inference
    meta = json.loads((full_cache / "cache.json").read_text())
    assert cached["flops"]["flops_teacher_inference"] == pytest.approx(meta["inference_flops"])
    assert cached["teacher"]["inference_flops_share"] == pytest.approx(live["flops"]["flops_teacher_inference"])
    assert cached["flops"]["flops_teacher_train"] == live["flops"]["flops_teacher_train"]


def test_cached_run_resumes_exactly(tiny_corpus, prepared, k50_cache, tmp_path):
    kd = {**KD, "distill.teacher": k50_cache, "train.checkpoint_every": 2}
    _, ref = train(tiny_corpus, prepared, tmp_path / "ref", **kd)
    train(tiny_corpus, prepared, tmp_path / "split", **kd, **{"train.max_steps": 5})
    trainer = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "split", prepared, **{**STUDENT, **kd})),
                      resume=True)
    res = trainer.fit()
    assert res["final_val_loss"] == ref["final_val_loss"] and res["flops"] == ref["flops"]
    assert res["teacher"]["inference_flops_share"] == ref["teacher"]["inference_flops_share"] > 0


def test_top50_cache_is_close_to_the_live_teacher(tiny_corpus, prepared, teacher, k50_cache, tmp_path):
    """k = 50 of V = 300, fp16: the same as a live teacher truncated to top-50, up to fp16 rounding of log q.
    Against the untruncated live teacher the difference is the dropped tail: this tiny teacher is nearly flat
    (it keeps only part of its mass in its top 50), so the student's val loss moves by a few hundredths."""
    _, trunc = train(tiny_corpus, prepared, tmp_path / "live50", **KD, **{"distill.teacher": teacher, "distill.top_k": 50})
    _, full = train(tiny_corpus, prepared, tmp_path / "livefull", **KD, **{"distill.teacher": teacher})
    _, cached = train(tiny_corpus, prepared, tmp_path / "cached50", **KD, **{"distill.teacher": k50_cache})
    rt, rc = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("live50", "cached50"))
    kd_rel = max(abs(c["kd_loss"] - t["kd_loss"]) / t["kd_loss"] for c, t in zip(rc, rt))
    assert kd_rel < 2e-3  # measured 3e-5 .. 1e-3 (fp16 log q)
    assert abs(cached["final_val_loss"] - trunc["final_val_loss"]) < 1e-3
    assert abs(cached["final_val_loss"] - full["final_val_loss"]) < 0.1  # measured 0.047 (1.0%)


def test_bad_caches_are_refused_with_one_line(tiny_corpus, prepared, teacher, k50_cache, tmp_path):
    # a token range that does not cover the student's KD steps: refused before training (CLI: one line, exit 2)
    short = tmp_path / "short"
    r = run_cli("teacher-cache", str(teacher), "--out", str(short), "--max-tokens", "2000")
    assert r.returncode == 0 and "bytes/token" in r.stdout and "full fp32 logits" in r.stdout
    assert "1.98k/1.98k" in r.stderr and "tok/s" in r.stderr  # the progress bar: tokens done, tokens/s
    r = run_cli("train", *tiny_overrides(tiny_corpus, tmp_path / "s", prepared, **STUDENT), "distill.policy=kd",
                f"distill.teacher={short}")
    assert r.returncode == 2 and "covers tokens 0 to 1,984" in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()  # not even the lock of a run that never started

    def refused(cache, message, prep=prepared, **kw):
        with pytest.raises(BootdistillError, match=message) as e:
            train(tiny_corpus, prep, tmp_path / "s", **{"distill.policy": "kd", "distill.teacher": cache, **kw})
        assert "\n" not in str(e.value) and not (tmp_path / "s" / "config.yaml").exists()

    with pytest.raises(BootdistillError, match="is not a teacher cache: choose another --out"):
        write_teacher_cache(str(teacher), str(teacher), max_tokens=2000)  # never replaces a run directory
    assert (teacher / "summary.json").is_file()
    broken = tmp_path / "broken"  # a truncated file
    write_teacher_cache(str(teacher), str(broken), max_tokens=2000)
    f = broken / "logprobs.fp16"
    f.write_bytes(f.read_bytes()[:1000])
    refused(broken, "truncated or damaged")
    refused(k50_cache, "another tokenizer", prep=tmp_path / "other-prep", **{"data.vocab_size": 280})
    refused(k50_cache, "model.context=32", **{"model.context": 16})
    refused(k50_cache, "raw logits", **{"distill.loss": "mse_logits"})
    refused(tmp_path / "nothing-here", "does not exist")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "covered.u8").write_bytes(b"")
    refused(tmp_path / "unfinished", "unfinished")


def test_cache_of_a_vocabulary_above_65535_stores_uint32_ids(tiny_corpus, tmp_path):
    from conftest import word_level

    word_level(tmp_path / "big.json", 70_000)  # the corpus's words sit above id 70,000
    teacher = tmp_path / "teacher"
    Trainer(load_config(None, tiny_overrides(tiny_corpus, teacher, tmp_path / "prep", **{
        "data.tokenizer": tmp_path / "big.json", "model.d_model": 8, "train.total_steps": 4,
        "train.lr_max": 3e-2, "train.precision": "fp32"}))).fit()
    out = tmp_path / "cache"
    write_teacher_cache(str(teacher), str(out), top_p=1.0, top_k=4, precision="fp32", max_tokens=64)
    cache = LogitCache(out)
    assert cache.indices.dtype == np.uint32 and (out / "indices.u32").is_file()
    assert cache.meta["storage"]["bytes_per_token"] == 4 * (4 + 2)  # top 4: a uint32 id and an fp16 log q each
    model, _, _ = load_model_from_checkpoint(teacher)
    x = torch.from_numpy(np.asarray(token_file(tmp_path / "prep", "train")[:64], dtype=np.int64)).view(2, 32)
    with torch.no_grad():
        top = model(x).topk(4, dim=-1).indices
    got = torch.from_numpy(np.asarray(cache.indices[:2], dtype=np.int64))
    assert got.max() > 65_535 and torch.equal(got.sort(-1).values, top.sort(-1).values)


def test_unwritable_out_is_refused_before_the_teacher_runs(teacher, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = run_main("teacher-cache", str(teacher), "--out", str(blocker / "cache"))
    assert line.returncode == 2 and "is a file, not a directory" in line.stderr and "Traceback" not in line.stderr
    assert "tok/s" not in line.stderr  # no inference ran


def test_a_killed_writers_temp_dir_is_removed_next_time(teacher, tmp_path):
    import fcntl
    import os
    import stat

    out = tmp_path / "cache"
    killed = tmp_path / ".cache.k1ll3d.tmp"  # what a SIGKILL during a write leaves
    killed.mkdir()
    (killed / "indices.u16").write_bytes(b"\0" * 1000)
    running = tmp_path / ".cache.runn1n.tmp"  # another writer, alive: it holds its temp dir's lock
    running.mkdir()
    fd = os.open(running, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run_main("teacher-cache", str(teacher), "--out", str(out), "--max-tokens", "2000", "--no-progress")
        assert r.returncode == 0, r.stderr
        assert not killed.exists() and running.is_dir()
    finally:
        os.close(fd)
    assert LogitCache(out).covered.sum() == 2000 // 32
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask  # an ordinary directory, not mkdtemp's 0700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask for f in out.iterdir())
