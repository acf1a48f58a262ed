"""Teacher logit caches: truncated teacher distributions stored once, read by any number of students.

Layout of a cache directory (design space §3.1, §3.5):
    cache.json       meta: teacher hash, tokenizer hash, data identity, context, truncation, coverage, sizes, FLOPs
    indices.u16      (n_blocks, context, K) uint16 token ids of the kept set (indices.u32, uint32, for
                     vocabularies above 65,536 ids, as the token files)
    logprobs.<dt>    (n_blocks, context, K) log q over the kept set, fp16 (or fp32); -inf in padding slots
    covered.u8       (n_blocks,) 1 where the block's distributions were written
    val_losses.f32   the teacher's mean loss on each of the first validation blocks (its val_loss, as a live
                     teacher would measure it, without running it)

Entries are per block of the prepared training stream (block b = tokens[b*context : (b+1)*context]), the same
blocks the trainer's BlockSampler cuts, so a student reads exactly what a live teacher would have computed.
A cache is written in a temp directory and renamed into place when complete (cache.json is written last).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.loader import eval_batches
from ..data.tokenizer import token_dtype
from ..errors import DataError
from ..fsutil import replace_dir
from ..runtime.device import autocast_context
from .signals import SparseSignal
from .source import CACHE_COVERED, CACHE_META as META

FORMAT = 1
VALUE_DTYPES = {"fp16": np.float16, "fp32": np.float32}
VAL_BLOCKS = 4096  # validation blocks whose teacher loss is kept (a live teacher's val_loss uses the first ones)


def index_dtype(vocab: int) -> np.dtype:
    """The dtype of the kept ids: that of the token files (uint16, uint32 above 65,535 entries)."""
    return token_dtype(vocab)


def _files(values: str, vocab: int) -> dict[str, str]:
    return {"indices": f"indices.u{8 * index_dtype(vocab).itemsize}", "logprobs": f"logprobs.{values}",
            "covered": CACHE_COVERED, "val": "val_losses.f32"}


def expected_bytes(n_blocks: int, context: int, k: int, values: str, n_val: int, vocab: int) -> dict[str, int]:
    per = n_blocks * context * k
    f = _files(values, vocab)
    return {f["indices"]: per * index_dtype(vocab).itemsize, f["logprobs"]: per * np.dtype(VALUE_DTYPES[values]).itemsize,
            f["covered"]: n_blocks, f["val"]: n_val * 4}


def storage(n_tokens: int, k: int, values: str, vocab: int) -> dict:
    """Bytes per token and in total, and the full fp32 logits the cache replaces (design space §3.1)."""
    per_token = k * (index_dtype(vocab).itemsize + np.dtype(VALUE_DTYPES[values]).itemsize)
    return {"bytes_per_token": per_token, "bytes_total": per_token * n_tokens,
            "full_logits_bytes_per_token": vocab * 4, "full_logits_bytes": vocab * 4 * n_tokens}


class CacheArrays:
    """The cache's arrays, memory-mapped for writing (created, or reopened to continue)."""

    def __init__(self, root: Path, n_blocks: int, context: int, k: int, values: str, create: bool, vocab: int):
        f = _files(values, vocab)
        mode = "w+" if create else "r+"
        self.root, self.context, self.k = Path(root), context, k
        self.indices = np.memmap(self.root / f["indices"], index_dtype(vocab), mode, shape=(n_blocks, context, k))
        self.logprobs = np.memmap(self.root / f["logprobs"], VALUE_DTYPES[values], mode, shape=(n_blocks, context, k))
        self.covered = np.memmap(self.root / f["covered"], np.uint8, mode, shape=(n_blocks,))

    def write(self, blocks: np.ndarray, signal: SparseSignal) -> None:
        self.indices[blocks] = signal.indices.cpu().numpy().astype(self.indices.dtype)
        self.logprobs[blocks] = signal.logprobs.float().cpu().numpy().astype(self.logprobs.dtype)
        self.covered[blocks] = 1

    def flush(self) -> None:
        for a in (self.indices, self.logprobs, self.covered):
            a.flush()


def write_val_losses(root: Path, per_block: np.ndarray) -> None:
    np.asarray(per_block, dtype=np.float32).tofile(Path(root) / "val_losses.f32")


@torch.no_grad()
def val_block_losses(model, tokens: np.ndarray, context: int, batch: int, device, amp_dtype) -> np.ndarray:
    """Mean CE of each of the first VAL_BLOCKS validation blocks (the blocks `evaluate` reads, in order)."""
    was_training = model.training
    model.eval()
    out = []
    for x, y in eval_batches(tokens, context, batch, -(-VAL_BLOCKS // batch)):
        with autocast_context(device, amp_dtype):
            logits = model(x.to(device))
        ce = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(), reduction="none")
        out.append(ce.view(y.shape).double().mean(-1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)[:VAL_BLOCKS]


def write_meta(root: Path, meta: dict) -> None:
    (Path(root) / META).write_text(json.dumps({"format": FORMAT, **meta}, indent=2))


class LogitCache:
    """A finished cache, opened read-only and checked (one clear DataError for anything wrong)."""

    def __init__(self, path):
        self.path = Path(path)
        hint = f"write it again with `bootdistill teacher-cache TEACHER_RUN --out {self.path}`"
        meta_file = self.path / META
        if not meta_file.is_file():
            partial = " (an unfinished cache: its writer was interrupted)" if self.path.is_dir() else ""
            raise DataError(f"'{self.path}' is not a teacher cache, no {META}{partial}: {hint}")
        try:
            self.meta = m = json.loads(meta_file.read_text())
            self.n_blocks, self.context, self.k, self.values = m["n_blocks"], m["context"], m["k"], m["values"]
            n_val, vocab = m["n_val_blocks"], m["vocab_size"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise DataError(f"teacher cache '{self.path}' has a damaged {META}: {hint}") from None
        if m.get("format") != FORMAT or self.values not in VALUE_DTYPES:
            raise DataError(f"teacher cache '{self.path}' has format {m.get('format')}, this bootdistill reads {FORMAT}: {hint}")
        for name, size in expected_bytes(self.n_blocks, self.context, self.k, self.values, n_val, vocab).items():
            p = self.path / name
            got = p.stat().st_size if p.is_file() else None
            if got != size:
                what = "is missing" if got is None else f"has {got} bytes, expected {size}"
                raise DataError(f"teacher cache file '{p}' {what} (truncated or damaged): {hint}")
        f = _files(self.values, vocab)
        shape = (self.n_blocks, self.context, self.k)
        self.indices = np.memmap(self.path / f["indices"], index_dtype(vocab), "r", shape=shape)
        self.logprobs = np.memmap(self.path / f["logprobs"], VALUE_DTYPES[self.values], "r", shape=shape)
        self.covered = np.fromfile(self.path / f["covered"], np.uint8).astype(bool)
        self.val_losses = np.fromfile(self.path / f["val"], np.float32)

    def blocks_of(self, starts: np.ndarray) -> np.ndarray:
        starts = np.asarray(starts, dtype=np.int64)
        if (starts % self.context).any():
            raise DataError(f"teacher cache '{self.path}' holds blocks of {self.context} tokens; the batch is cut "
                            f"at other offsets: set model.context={self.context}")
        return starts // self.context

    def missing(self, starts: np.ndarray) -> np.ndarray:
        """Token offsets among `starts` whose block the cache does not cover."""
        blocks = self.blocks_of(starts)
        bad = (blocks >= self.n_blocks) | ~self.covered[np.minimum(blocks, self.n_blocks - 1)]
        return np.asarray(starts)[bad]

    def covered_range(self) -> str:
        idx = np.flatnonzero(self.covered)
        if idx.size == 0:
            return "no tokens"
        if idx.size == idx[-1] - idx[0] + 1:
            return f"tokens {idx[0] * self.context:,} to {(idx[-1] + 1) * self.context:,}"
        return f"{idx.size} of {self.n_blocks} blocks"

    def read(self, starts: np.ndarray, device) -> SparseSignal:
        miss = self.missing(starts)
        if miss.size:
            raise DataError(f"teacher cache '{self.path}' does not cover the block at token {int(miss[0]):,} "
                            f"(it covers {self.covered_range()}): write a cache over the whole training stream")
        blocks = self.blocks_of(starts)
        order = np.argsort(blocks)  # memmap reads in file order
        idx = np.empty((len(blocks), self.context, self.k), np.int64)
        lp = np.empty((len(blocks), self.context, self.k), np.float32)
        idx[order] = self.indices[blocks[order]]
        lp[order] = self.logprobs[blocks[order]]
        return SparseSignal(torch.from_numpy(idx).to(device), torch.from_numpy(lp).to(device))


def finish_dir(tmp: Path, final: Path) -> None:
    """Publish a completed cache directory in one rename (replacing an older one)."""
    replace_dir(Path(tmp), Path(final))
