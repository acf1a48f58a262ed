"""Online teacher logits (train.save_logits): what the teacher saves while it trains, and students reading it."""

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from bootdistill.config import load_config
from bootdistill.data.loader import BlockSampler
from bootdistill.data.prepare import token_file
from bootdistill.distill.cache import LogitCache
from bootdistill.distill.signals import sparsify
from bootdistill.errors import BootdistillError
from bootdistill.runtime.loading import load_model_from_checkpoint
from bootdistill.train.trainer import Trainer

TEACHER = {"model.d_model": 24, "model.dropout": 0.0, "train.save_logits": True, "train.save_logits_top_k": 20,
           "train.save_logits_top_p": 1.0, "train.keep_checkpoints": 5,
           "train.precision": "fp32"}  # the saved distributions are compared with a float32 forward


def teacher_run(corpus, prepared, out, **kw):
    Trainer(load_config(None, tiny_overrides(corpus, out, prepared, **{**TEACHER, **kw}))).fit()
    return out


def blocks_by_step(prepared, steps, seed=1337):
    """Block ids each step of a tiny run reads (4 sequences x 2 accumulation)."""
    s = BlockSampler(token_file(prepared, "train"), 32, 4, seed)
    out = []
    for _ in range(steps):
        ids = []
        for _ in range(2):
            s.next_batch()
            ids += list(s.last_starts // 32)
        out.append(ids)
    return out


def test_saved_logits_are_the_teachers_own_from_the_chosen_step(tiny_corpus, prepared, tmp_path):
    run = teacher_run(tiny_corpus, prepared, tmp_path / "t", **{"train.save_logits_from_step": 6})
    assert (run / "logits" / "cache.json").is_file() and not (run / "logits.partial").exists()
    cache = LogitCache(run / "logits")
    by_step = blocks_by_step(prepared, 12)
    expected = sorted({b for step in by_step[6:] for b in step})
    assert np.flatnonzero(cache.covered).tolist() == expected  # steps 0-5 were not kept
    assert cache.meta["kind"] == "online" and cache.meta["inference_flops"] == 0.0
    assert cache.meta["saved_steps"] == [6, 12]
    # step 8 ran with the weights of checkpoint step 8 (8 updates done): the saved distributions are its own
    model, _, _ = load_model_from_checkpoint(run / "checkpoints" / "step_00000008")
    tokens = token_file(prepared, "train")
    blocks = np.array(by_step[8])
    x = torch.from_numpy(np.stack([np.asarray(tokens[b * 32:(b + 1) * 32], dtype=np.int64) for b in blocks]))
    with torch.no_grad():
        ref = sparsify(model(x), 1.0, 20)
    got = cache.read(blocks * 32, "cpu")
    assert torch.equal(got.indices, ref.indices)
    torch.testing.assert_close(got.logprobs, ref.logprobs, atol=4e-3, rtol=0)  # stored in fp16


def test_student_trains_from_online_logits(tiny_corpus, prepared, tmp_path):
    run = teacher_run(tiny_corpus, prepared, tmp_path / "t0")
    student = {"model.d_model": 48, "distill.policy": "kd", "distill.teacher": run / "logits", "distill.alpha": 0.5}
    s = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s", prepared, **student))).fit()
    import json

    teacher_summary = json.loads((run / "summary.json").read_text())
    assert s["teacher"]["source"] == "cache" and s["teacher"]["kind"] == "online"
    assert s["flops"]["flops_teacher_inference"] == 0.0  # the teacher's forward was part of its training
    assert s["flops"]["flops_teacher_train"] == pytest.approx(teacher_summary["flops"]["flops_total"])
    # a student with another data order reads blocks the teacher never saw: refused before it starts
    with pytest.raises(BootdistillError, match="covers 96 of"):
        Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s2", prepared, **student, **{"train.seed": 7})))
