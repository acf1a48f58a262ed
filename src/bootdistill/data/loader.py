"""Batches of context-length blocks cut from a uint16 token stream (memmap): seeded, resumable.

The stream is cut into non-overlapping blocks of `context` tokens (the last short block is dropped); the
labels of a block are the same tokens shifted by one, read from the stream. Training visits the blocks in a
fresh seeded permutation each epoch; its position is two integers, so resume is exact.

Data-parallel: every rank walks the same global sequence of batches and keeps only its contiguous slice of
each one, so which blocks make up a global batch does not depend on the number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..errors import DataError


def num_blocks(n_tokens: int, context: int) -> int:
    return max(0, (n_tokens - 1) // context)  # the +1 label token must exist


def _gather(tokens: np.ndarray, starts: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[s : s + context + 1], dtype=np.int64) for s in starts])
    data = torch.from_numpy(rows)
    return data[:, :-1], data[:, 1:]


class BlockSampler:
    """Random blocks for training, in a per-epoch permutation seeded by (seed, epoch).

    `batch_size` is global; with `world` > 1, next_batch returns rank `rank`'s batch_size / world rows of it.
    """

    def __init__(self, tokens: np.ndarray, context: int, batch_size: int, seed: int, split: str = "train",
                 rank: int = 0, world: int = 1):
        self.tokens, self.context, self.batch_size, self.seed = tokens, context, batch_size, seed
        assert batch_size % world == 0, "the global batch must split evenly over the ranks"
        self.rank, self.world = rank, world
        self.n_blocks = num_blocks(len(tokens), context)
        if self.n_blocks < 1:
            raise DataError(
                f"the {split} split has {len(tokens)} tokens, fewer than one block of context {context} + 1: "
                "use a larger corpus or a shorter model.context"
            )
        self.epoch, self.pos = 0, 0
        self._order = self._permutation(0)
        self.last_starts: np.ndarray | None = None  # token offsets of the last batch's blocks (teacher caches)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_blocks)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        picked, count = [], 0
        while count < self.batch_size:
            if self.pos >= self.n_blocks:
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = min(self.batch_size - count, self.n_blocks - self.pos)
            picked.append(self._order[self.pos : self.pos + take])
            self.pos += take
            count += take
        per_rank = self.batch_size // self.world
        self.last_starts = np.concatenate(picked)[self.rank * per_rank : (self.rank + 1) * per_rank] * self.context
        return _gather(self.tokens, self.last_starts, self.context)

    def preview_starts(self, n_batches: int) -> np.ndarray:
        """Token offsets of the blocks of the next `n_batches` batches, without moving the sampler."""
        epoch, pos, out, left = self.epoch, self.pos, [], n_batches * self.batch_size
        order = self._order
        while left > 0:
            if pos >= self.n_blocks:
                epoch, pos = epoch + 1, 0
                order = self._permutation(epoch)
                if left >= self.n_blocks:  # a whole epoch still to come: every block
                    return np.arange(self.n_blocks) * self.context
            take = min(left, self.n_blocks - pos)
            out.append(order[pos:pos + take])
            pos, left = pos + take, left - take
        return np.concatenate(out) * self.context if out else np.zeros(0, np.int64)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._permutation(self.epoch)


def eval_batches(
    tokens: np.ndarray, context: int, batch_size: int, max_batches: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split's blocks in order (the same every call), at most `max_batches` batches."""
    n = num_blocks(len(tokens), context)
    if n < 1:
        raise DataError(f"the evaluation split has {len(tokens)} tokens, fewer than one block of context {context} + 1")
    starts = np.arange(n) * context
    for i, lo in enumerate(range(0, n, batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        yield _gather(tokens, starts[lo : lo + batch_size], context)


def eval_shard(tokens: np.ndarray, context: int, batch_size: int, max_sequences: int | None, rank: int, world: int
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Rank `rank`'s share of the split's first `max_sequences` blocks (None: all), as (x, y, real rows) batches
    of batch_size. The blocks depend on neither batch_size nor world: summed over the ranks, they are the blocks
    one process reads, so the evaluation set is the same on any layout.

    Every rank yields the same number of equally sized batches (sharded models need every rank in every
    forward), so a rank short of blocks pads with a repeat of the first block; only the first `real` rows count.
    """
    n = num_blocks(len(tokens), context)
    if n < 1:
        raise DataError(f"the evaluation split has {len(tokens)} tokens, fewer than one block of context {context} + 1")
    if max_sequences is not None:
        n = min(n, max_sequences)
    mine = np.arange(rank, n, world)
    per_rank = -(-n // world)
    padded = np.concatenate([mine, np.zeros(per_rank - len(mine), dtype=mine.dtype)]) * context
    for lo in range(0, per_rank, batch_size):
        x, y = _gather(tokens, padded[lo : lo + batch_size], context)
        yield x, y, max(0, min(len(mine) - lo, batch_size))


class SelectionSampler:
    """SALT_DS: the first `first_batches` batches read the selected blocks (in a seeded order), then `rest` takes
    over from its own start. Resumable: its position is one counter plus the rest's state. `batch_size` is
    global, as in BlockSampler: rank `rank` gets its batch_size / world rows."""

    def __init__(self, tokens: np.ndarray, context: int, batch_size: int, seed: int, starts: np.ndarray,
                 first_batches: int, rest: BlockSampler, rank: int = 0, world: int = 1):
        self.tokens, self.context, self.batch_size = tokens, context, batch_size
        self.rank, self.world = rank, world
        self.order = np.asarray(starts)[np.random.default_rng([seed, 1 << 20]).permutation(len(starts))]
        self.first_batches, self.rest, self.done = first_batches, rest, 0
        self.last_starts: np.ndarray | None = None

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.done >= self.first_batches:
            self.done += 1
            out = self.rest.next_batch()
            self.last_starts = self.rest.last_starts
            return out
        per_rank = self.batch_size // self.world
        i = self.done * self.batch_size + self.rank * per_rank
        self.last_starts = np.take(self.order, np.arange(i, i + per_rank), mode="wrap")
        self.done += 1
        return _gather(self.tokens, self.last_starts, self.context)

    def preview_starts(self, n_batches: int) -> np.ndarray:
        first = min(n_batches, max(0, self.first_batches - self.done))
        i = self.done * self.batch_size
        head = np.take(self.order, np.arange(i, i + first * self.batch_size), mode="wrap")
        return np.concatenate([head, self.rest.preview_starts(n_batches - first)])

    def state_dict(self) -> dict:
        return {"done": self.done, "rest": self.rest.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.done = int(state["done"])
        self.rest.load_state_dict(state["rest"])
