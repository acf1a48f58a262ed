"""The paper's tokenizer (§2.1): byte-level BPE with NFKC normalization, trained from scratch on the training split.

* normalizer NFKC, pre-tokenizer ByteLevel (no prefix space: WikiText lines already start with one), decoder ByteLevel;
* special tokens `[UNK] [PAD] [CLS] [SEP]` with ids 0-3 (SEP_ID marks the end of every article in the token stream);
* trained from an iterator of articles, so the text is streamed (the trainer keeps word counts, not text).

The saved `tokenizer.json` has no post-processor: `encode(text)` never adds special tokens; the pipeline appends
`[SEP]` itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ..errors import DataError

SPECIAL_TOKENS = ["[UNK]", "[PAD]", "[CLS]", "[SEP]"]
UNK_ID, PAD_ID, CLS_ID, SEP_ID = 0, 1, 2, 3


def new_tokenizer():
    """An untrained tokenizer with the paper's components."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int, length: int | None = None):
    """Train byte-level BPE on an iterator of texts (articles); returns a `tokenizers.Tokenizer`.

    The vocabulary holds the 4 special tokens (ids 0-3), the 256 byte symbols and the merges, `vocab_size` in all
    unless the text is too small to learn that many merges (then fewer: check `get_vocab_size()`).
    """
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise DataError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 256} (256 bytes + 4 special tokens), got {vocab_size}")
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(iter(texts), trainer=trainer, length=length)
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i, f"special token {name} got id {tok.token_to_id(name)}"
    return tok


def truncate_tokenizer(tok, vocab_size: int):
    """The tokenizer a BPE training with a smaller `vocab_size` would have produced on the same text.

    BPE training is greedy, so a smaller run's merges are a prefix of a larger run's and its vocabulary the ids
    below `vocab_size` (checked in tests/data/test_vocab_sweep.py). Used by the vocabulary sweep to train once.
    """
    data = json.loads(tok.to_str())
    model = data["model"]
    vocab = {t: i for t, i in model["vocab"].items() if i < vocab_size}
    merges = []
    for m in model["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if (a + b) not in vocab:
            break
        merges.append(m)
    model["vocab"], model["merges"] = vocab, merges
    data["added_tokens"] = [t for t in data.get("added_tokens", []) if t["id"] < vocab_size]
    return Tokenizer.from_str(json.dumps(data))


def save_tokenizer(tok, path: str | Path) -> str:
    """Write tokenizer.json; returns its sha256."""
    path = Path(path)
    tok.save(str(path))
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_tokenizer(path: str | Path):
    """Load tokenizer.json (or the tokenizer.json inside a prepared-data directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise DataError(f"tokenizer file '{path}' does not exist; run `bootdistill prepare` to create one")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise DataError(f"tokenizer file '{path}' is not a valid tokenizers JSON file ({str(e).splitlines()[0]})") from None


def token_dtype(vocab_size: int) -> np.dtype:
    """The dtype of token files: uint16 while every id fits, uint32 for vocabularies above 65,535."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def encode_articles(tok, articles: Iterable[str], batch_bytes: int = 1 << 20, batch_articles: int = 512,
                    sep_id: int = SEP_ID, dtype=np.uint16) -> Iterator[tuple[np.ndarray, int, int]]:
    """Tokenize articles in batches with `encode_batch_fast`, appending the separator `sep_id` after each article.

    Yields (token array of `dtype`, number of articles, UTF-8 bytes of text) per batch: at most about `batch_bytes`
    of text (or `batch_articles` articles) is held at a time, so memory does not grow with the corpus.
    """
    batch: list[str] = []
    size = 0
    for text in articles:
        batch.append(text)
        size += len(text) if text.isascii() else len(text.encode("utf-8"))
        if size >= batch_bytes or len(batch) >= batch_articles:
            yield _encode_batch(tok, batch, sep_id, dtype), len(batch), size
            batch, size = [], 0
    if batch:
        yield _encode_batch(tok, batch, sep_id, dtype), len(batch), size


def _encode_batch(tok, batch: list[str], sep_id: int, dtype) -> np.ndarray:
    encs = tok.encode_batch_fast(batch, add_special_tokens=False)
    ids: list[int] = []
    for e in encs:
        ids.extend(e.ids)
        ids.append(sep_id)
    return np.array(ids, dtype=dtype)
