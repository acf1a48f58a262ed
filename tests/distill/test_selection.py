"""SALT_DS: eq. 10 scores against a brute-force computation, the selection, and a KD phase trained on it."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from bootdistill.config import load_config
from bootdistill.data.loader import BlockSampler
from bootdistill.data.prepare import token_file
from bootdistill.distill.selection import salt_scores, select
from bootdistill.errors import BootdistillError
from bootdistill.runtime.loading import load_model_from_checkpoint
from bootdistill.train.trainer import Trainer

TINY_TEACHER = {"train.total_steps": 8}  # conftest's `teacher`


def brute_score(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Eq. 10 token by token: median of 1{y_t in top-k} * (-log p(y_t))."""
    vals = []
    for t in range(len(y)):
        p = torch.softmax(logits[t].double(), -1)
        topk = set(torch.argsort(p, descending=True)[:k].tolist())
        vals.append(-float(torch.log(p[y[t]])) if int(y[t]) in topk else 0.0)
    return float(np.median(vals))


def test_scores_match_brute_force(teacher, prepared):
    model, _, _ = load_model_from_checkpoint(teacher / "checkpoints" / "step_00000004")
    tokens = token_file(prepared, "train")
    starts = np.array([0, 32, 640, 3200])
    got = salt_scores(model, tokens, starts, 32, 10, 3, torch.device("cpu"), None)
    for s, g in zip(starts, got):
        row = torch.from_numpy(np.asarray(tokens[s:s + 33], dtype=np.int64))
        with torch.no_grad():
            logits = model(row[None, :-1])[0]
        assert g == pytest.approx(brute_score(logits, row[1:], 10), abs=1e-5)
    assert select(np.array([0.5, 2.0, 1.0, 2.0]), 2).tolist() == [1, 3]


def test_kd_phase_trains_on_the_selection(tiny_corpus, prepared, teacher, tmp_path):
    kd = {"model.d_model": 48, "distill.policy": "fixed", "distill.kd_steps": 4, "distill.teacher": teacher,
          "distill.select_with": teacher / "checkpoints" / "step_00000004", "distill.select_k": 10}
    trainer = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s", prepared, **kd)))
    tokens = token_file(prepared, "train")
    n_blocks = (len(tokens) - 1) // 32
    # the scorer trained 4 steps x 2 x 4 blocks: those are not candidates
    seen = set(BlockSampler(tokens, 32, 4, 1337).preview_starts(8).tolist())
    record = json.loads((tmp_path / "s" / "selection.json").read_text())
    with np.load(tmp_path / "s" / "selection.npz") as f:
        cand, scores, chosen = f["candidate_starts"], f["scores"], f["selected_starts"]
    assert record["candidates"] == n_blocks - len(seen) == len(cand) and not seen & set(cand.tolist())
    assert record["selected"] == 4 * 2 * 4 == len(chosen)
    assert scores[np.isin(cand, chosen)].min() >= scores[~np.isin(cand, chosen)].max()  # the top m
    # the KD phase reads exactly the selection, then the ordinary stream
    read = []
    for _ in range(8):
        trainer.sampler.next_batch()
        read += trainer.sampler.last_starts.tolist()
    assert sorted(read) == sorted(chosen.tolist())
    trainer.sampler.next_batch()
    assert trainer.sampler.last_starts.tolist() == BlockSampler(tokens, 32, 4, 1337).preview_starts(1).tolist()


def test_selection_run_charges_scoring_and_resumes(tiny_corpus, prepared, teacher, tmp_path):
    kd = {"model.d_model": 48, "distill.policy": "fixed", "distill.kd_steps": 4, "distill.teacher": teacher,
          "distill.select_with": teacher / "checkpoints" / "step_00000004", "train.checkpoint_every": 2}
    ref = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "ref", prepared, **kd))).fit()
    rec = json.loads((tmp_path / "ref" / "selection.json").read_text())
    assert ref["selection"]["scoring_flops"] == rec["scoring_flops"] > 0
    assert ref["flops"]["flops_teacher_inference"] > rec["scoring_flops"]  # scoring + KD inference
    Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "split", prepared, **kd, **{"train.max_steps": 3}))).fit()
    res = Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "split", prepared, **kd)), resume=True).fit()
    assert res["final_val_loss"] == ref["final_val_loss"] and res["flops"] == ref["flops"]
    with pytest.raises(BootdistillError, match="policy=fixed"):
        load_config(None, tiny_overrides(tiny_corpus, tmp_path / "x", prepared, **{**kd, "distill.policy": "kd"}))
    with pytest.raises(BootdistillError, match="needs 32768 sequences"):
        Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "y", prepared, **{**kd, "distill.kd_steps": 4096,
                                                                                              "train.total_steps": 5000})))


def test_salt_ds_recipe_resolves_the_scoring_checkpoint(tmp_path):
    from conftest import REPO
    from bootdistill.experiment import load_recipe

    _, order = load_recipe(REPO / "configs" / "ablations" / "salt-ds.yaml", [f"data.corpus={tmp_path}"])
    by = {p.name: p for p in order}
    names = [p.name for p in order]
    assert names.index("teacher-17M") < names.index("salt-ds")
    assert by["salt-ds"].cfg.distill.select_with == str(by["teacher-17M"].run_dir / "checkpoints" / "step_00001500")
    assert by["salt"].cfg.distill.select_with is None and by["salt-ds"].cfg.distill.kd_steps == 2000
    assert by["teacher-17M"].cfg.train.keep_checkpoints >= 10800 // 500 + 1  # the step-1500 checkpoint survives


def test_a_scorer_that_scores_nothing_is_warned_about(tiny_corpus, prepared, teacher, tmp_path, capsys):
    # top-1 of a 4-step model rarely holds the true token: every median is 0, the "selection" is block order
    kd = {"model.d_model": 48, "distill.policy": "fixed", "distill.kd_steps": 2, "distill.teacher": teacher,
          "distill.select_with": teacher / "checkpoints" / "step_00000004", "distill.select_k": 1}
    Trainer(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "s", prepared, **kd)))
    with np.load(tmp_path / "s" / "selection.npz") as f:
        zero_picks = int((f["scores"][np.isin(f["candidate_starts"], f["selected_starts"])] <= 0).sum())
    assert zero_picks > 0
    err = capsys.readouterr().err
    assert "warning: SALT_DS: scorer" in err and f"scores {zero_picks} of the 16 selected sequences 0" in err
    assert "later checkpoint" in json.loads((tmp_path / "s" / "selection.json").read_text())["warning"]
