"""Optional loggers: TensorBoard event files when installed; W&B in offline mode writes a local run."""

import importlib.util

import pytest

from conftest import tiny_overrides
from bootdistill.config import load_config
from bootdistill.train.trainer import Trainer


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_events_written(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{"log.tensorboard": True, "train.max_steps": 4}))
    Trainer(cfg).fit()
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed (pip install -e .[wandb])")
def test_wandb_offline(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{"log.wandb": True, "train.max_steps": 4}))
    Trainer(cfg).fit()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run directory"
