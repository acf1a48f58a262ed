import math

import numpy as np
import pytest

from bootdistill.data.loader import BlockSampler, eval_batches, num_blocks
from bootdistill.errors import DataError
from bootdistill.train.schedule import lr_at


def test_warmup_cosine_endpoints():
    kw = dict(lr_max=1e-3, lr_min=1e-4, warmup_steps=10, total_steps=110)
    assert lr_at(0, **kw) == pytest.approx(1e-4)
    assert lr_at(9, **kw) == pytest.approx(1e-3)
    assert lr_at(10, **kw) == pytest.approx(1e-3)
    assert lr_at(60, **kw) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(110, **kw) == pytest.approx(1e-4)
    assert lr_at(500, **kw) == pytest.approx(1e-4)


def test_wsd_schedule():
    kw = dict(lr_max=1.0, lr_min=0.0, warmup_steps=0, total_steps=100, schedule="wsd", decay_fraction=0.2)
    assert lr_at(79, **kw) == 1.0
    assert lr_at(90, **kw) == pytest.approx(0.5)
    assert lr_at(100, **kw) == 0.0


def test_blocks_labels_shift_and_determinism():
    tokens = np.arange(1000, dtype=np.uint16)
    assert num_blocks(1000, 32) == 31
    a = BlockSampler(tokens, 32, 4, seed=7)
    x, y = a.next_batch()
    assert x.shape == (4, 32) and (y == x + 1).all() and (x[:, 0] % 32 == 0).all()
    b = BlockSampler(tokens, 32, 4, seed=7)
    assert (b.next_batch()[0] == x).all()
    assert not (BlockSampler(tokens, 32, 4, seed=8).next_batch()[0] == x).all()


def test_sampler_resume_and_epochs():
    tokens = np.arange(330, dtype=np.uint16)  # 10 blocks of 32
    a = BlockSampler(tokens, 32, 3, seed=1)
    seen = [a.next_batch()[0] for _ in range(5)]  # crosses an epoch boundary
    starts = np.concatenate([s[:, 0].numpy() for s in seen[:4]])[:10]
    assert sorted(starts.tolist()) == list(range(0, 320, 32))  # epoch 0 visits every block once
    state = a.state_dict()
    expected = a.next_batch()[0]
    b = BlockSampler(tokens, 32, 3, seed=1)
    b.load_state_dict(state)
    assert (b.next_batch()[0] == expected).all()


def test_eval_batches_and_too_short_split():
    tokens = np.arange(200, dtype=np.uint16)
    batches = list(eval_batches(tokens, 32, 2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 2]
    assert len(list(eval_batches(tokens, 32, 2, max_batches=1))) == 1
    with pytest.raises(DataError, match="fewer than one block"):
        BlockSampler(np.arange(10, dtype=np.uint16), 32, 2, seed=0)
