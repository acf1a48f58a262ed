"""Corpus -> tokenizer -> token files (paper §2.1), streamed, cached and atomic.

`prepare(data_cfg)` writes into a prepared-data directory:

    tokenizer.json   byte-level BPE trained on the training split only (data.tokenizer=bpe), or the tokenizer
                     data.tokenizer names (a tokenizer.json, a Hugging Face tokenizer directory or hub name)
    train.bin        one flat stream: article tokens, [SEP], article tokens, [SEP], ... (the separator of a given
                     tokenizer is its eos, else bos, token); uint16, or uint32 for vocabularies above 65,535
    val.bin          the same for the validation text
    test.bin         the same for the test text
    meta.json        vocab size, dtype, separator id, token/article/byte counts and bytes per token per split,
                     tokenizer sha256, source, settings,
                     `synthetic` flag, and `complete: true` (written last)

Read the streams back with `token_file(dir, split)` (an `np.memmap` of the dtype meta.json names). Cutting the
stream into context-length blocks happens in the training loader, so one prepared dataset serves every context length.

The directory is keyed by a hash of the source identity (paths, sizes, mtimes / HF name), the vocabulary size,
`max_train_mb`, the text field, the document layout and a given tokenizer's identity (a hash of its files):
re-running with the same inputs reuses it. It is built in a temporary directory beside the target and renamed
into place at the end, so a crash never leaves a half-prepared directory.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import DataError
from ..fsutil import check_writable
from .sources import Corpus, resolve_corpus
from .textfiles import nbytes
from .synthetic import SYNTHETIC_WARNING
from .pretrained_tokenizer import PretrainedTokenizer, is_bpe, load_pretrained_tokenizer
from .tokenizer import SEP_ID, SPECIAL_TOKENS, encode_articles, file_sha256, save_tokenizer, token_dtype, train_tokenizer

PIPELINE_VERSION = 1
SPLIT_NAMES = {"train": "train", "valid": "val", "test": "test"}  # corpus split -> name in meta.json / file name
SPLIT_FILES = {"train": "train.bin", "val": "val.bin", "test": "test.bin"}
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
DEFAULT_ROOT = Path("data") / "prepared"
MB = 1_000_000  # max_train_mb and the progress bars use decimal megabytes


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- key and paths


def dataset_key(corpus: Corpus, data_cfg, tokenizer: PretrainedTokenizer | None = None) -> str:
    ident = {
        "pipeline": PIPELINE_VERSION,
        "source": corpus.identity(),
        "vocab_size": data_cfg.vocab_size,
        "max_train_mb": data_cfg.max_train_mb,
        "text_field": data_cfg.text_field,
    }
    # only settings away from the defaults join the key, so data prepared before they existed keeps its key
    if tokenizer is not None:
        ident["tokenizer"] = tokenizer.identity
    if getattr(data_cfg, "documents", "wikitext") != "wikitext":
        ident["documents"] = data_cfg.documents
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def default_prepared_dir(key: str) -> Path:
    return DEFAULT_ROOT / key


# ---------------------------------------------------------------- reading prepared data


def load_meta(prepared_dir: str | Path) -> dict:
    """meta.json of a prepared-data directory; DataError if it is missing or the preparation did not finish."""
    path = Path(prepared_dir) / "meta.json"
    if not path.is_file():
        raise DataError(f"'{prepared_dir}' is not a prepared dataset (no meta.json); run `bootdistill prepare` first")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"'{path}' is corrupt (not JSON); delete '{prepared_dir}' and run `bootdistill prepare` again") from None
    if not meta.get("complete"):
        raise DataError(f"'{prepared_dir}' is an unfinished preparation; delete it and run `bootdistill prepare` again")
    return meta


def token_file(prepared_dir: str | Path, split: str) -> np.memmap:
    """The token stream of one split ('train', 'val'/'valid'/'validation', 'test') as a read-only memmap (uint16, or
    uint32 when meta.json says so)."""
    if split not in SPLIT_ALIASES:
        raise DataError(f"unknown split '{split}'; use train, val or test")
    split = SPLIT_ALIASES[split]
    meta = load_meta(prepared_dir)
    info = meta["splits"].get(split)
    path = Path(prepared_dir) / SPLIT_FILES[split]
    if info is None or not path.is_file():
        raise DataError(f"'{prepared_dir}' has no {split} split ({path.name} missing); run `bootdistill prepare` again")
    dtype = meta_dtype(meta)
    size = path.stat().st_size
    if size != dtype.itemsize * info["tokens"]:
        raise DataError(
            f"'{path}' holds {size // dtype.itemsize} tokens but meta.json says {info['tokens']}: the file was changed "
            f"or truncated; delete '{prepared_dir}' and run `bootdistill prepare` again"
        )
    if size == 0:
        return np.zeros(0, dtype=dtype)  # np.memmap cannot map an empty file
    return np.memmap(path, dtype=dtype, mode="r")


def meta_dtype(meta: dict) -> np.dtype:
    """The token files' dtype (data prepared before uint32 existed says uint16 or nothing)."""
    return np.dtype(meta.get("dtype", "uint16"))


def sep_id_of(meta: dict) -> int:
    """The document separator's id in this prepared data's token stream."""
    return int(meta.get("sep_id", SEP_ID))


def bits_per_byte(loss: float | None, meta: dict, split: str) -> float | None:
    """A loss in nats per token of a split as bits per byte of its text: loss / ln 2 / the split's bytes per token
    (its UTF-8 article bytes over its tokens, separators included), so runs with other tokenizers compare."""
    info = meta.get("splits", {}).get(SPLIT_ALIASES.get(split, split)) or {}
    bpt = info.get("bytes_per_token")
    if bpt is None and info.get("tokens") and info.get("bytes"):  # data prepared before bytes_per_token was stored
        bpt = info["bytes"] / info["tokens"]
    return None if loss is None or not bpt else loss / math.log(2) / bpt


def check_tokenizer_matches(prepared_dir: str | Path, tokenizer_path_or_sha: str | Path) -> None:
    """Raise DataError unless the tokenizer (a tokenizer.json path, a directory holding one, or a sha256 hex string)
    is the one the prepared data was tokenized with."""
    meta = load_meta(prepared_dir)
    want = meta["tokenizer_sha256"]
    given = str(tokenizer_path_or_sha)
    p = Path(given)
    if p.is_dir():
        p = p / "tokenizer.json"
    if p.is_file():
        got, what = file_sha256(p), f"tokenizer '{p}'"
    elif len(given) == 64 and all(c in "0123456789abcdef" for c in given.lower()):
        got, what = given.lower(), f"tokenizer sha256 {given[:12]}..."
    else:
        raise DataError(f"tokenizer '{given}' does not exist and is not a sha256; give a tokenizer.json path or its sha256")
    if got != want:
        raise DataError(
            f"{what} does not match the prepared data in '{prepared_dir}' (tokenized with sha256 {want[:12]}..., "
            f"given {got[:12]}...); use {Path(prepared_dir) / 'tokenizer.json'} or prepare the data again with your tokenizer's settings"
        )


def _is_complete(out: Path, key: str) -> bool:
    try:
        meta = load_meta(out)
    except DataError:
        return False
    if meta.get("key") != key:
        return False
    try:
        if file_sha256(out / "tokenizer.json") != meta["tokenizer_sha256"]:
            return False
        for split, info in meta["splits"].items():
            if (out / SPLIT_FILES[split]).stat().st_size != meta_dtype(meta).itemsize * info["tokens"]:
                return False
    except (OSError, KeyError):
        return False
    return True


# ---------------------------------------------------------------- progress


@contextmanager
def _progress(enabled: bool, desc: str, total: int | None):
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm  # 0.2 s: only when a corpus is prepared with a progress bar

    bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1000, dynamic_ncols=True, file=sys.stderr, leave=True)
    try:
        yield bar
    finally:
        bar.close()


def _train_total(corpus: Corpus, data_cfg) -> int | None:
    size = corpus.train.size
    if data_cfg.max_train_mb is not None:
        cap = int(data_cfg.max_train_mb * MB)
        return cap if size is None else min(cap, size)
    return size


# ---------------------------------------------------------------- writing


def _write_array(f, arr: np.ndarray) -> None:
    """One write of a token batch (a seam the disk-full test patches)."""
    f.write(arr.tobytes())


def _encode_split(tok, articles, path: Path, bar, batch_bytes: int, sep_id: int, dtype) -> dict:
    tokens = n_articles = n_bytes = 0
    with open(path, "wb") as f:
        for ids, n, size in encode_articles(tok, articles, batch_bytes=batch_bytes, sep_id=sep_id, dtype=dtype):
            _write_array(f, ids)
            tokens += len(ids)
            n_articles += n
            n_bytes += size
            if bar is not None:
                bar.update(size)
        f.flush()
        os.fsync(f.fileno())
    # bytes per token turns a loss in nats per token into bits per byte (summary.json, reports)
    return {"file": path.name, "tokens": tokens, "articles": n_articles, "bytes": n_bytes,
            "bytes_per_token": n_bytes / tokens if tokens else None}


def _counted(articles, bar, counter: dict):
    for text in articles:
        n = nbytes(text)
        counter["bytes"] += n
        counter["articles"] += 1
        if bar is not None:
            bar.update(n)
        yield text


def _check_splits_have_text(corpus: Corpus, max_train_bytes: int | None) -> None:
    """Read the first article of every split, so a bad file fails in a second, not after the tokenizer."""
    for split in ("train", "valid", "test"):
        it = corpus.articles(split, max_train_bytes)
        try:
            next(it)
        except StopIteration:
            if split == "train":
                raise DataError("the training text is empty; give a corpus with WikiText articles") from None
            if split in corpus.holdout:
                raise DataError(
                    f"the corpus has too few articles to hold out a {split} split (need at least 3); "
                    f"give data.{split}=FILE or a bigger corpus"
                ) from None
            raise DataError(f"the {split} text ({getattr(corpus, split).describe()}) holds no articles; give data.{split}=FILE") from None
        finally:
            close = getattr(it, "close", None)
            if close:
                close()


def _cleanup_stale(parent: Path, name: str) -> None:
    """Remove temp dirs of earlier preparations of `name` whose process is gone (killed runs)."""
    for p in parent.glob(f".{name}.tmp-*"):
        try:
            pid = int(p.name.split(".tmp-")[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(p, ignore_errors=True)


def prepare(data_cfg, progress: bool = True) -> Path:
    """Prepare (or reuse) the tokenizer and token files for `data_cfg`; returns the prepared-data directory."""
    t0 = time.time()
    corpus = resolve_corpus(data_cfg, log=_log)
    if corpus.synthetic:
        _log(SYNTHETIC_WARNING)
    given = None if is_bpe(data_cfg.tokenizer) else load_pretrained_tokenizer(str(data_cfg.tokenizer))
    key = dataset_key(corpus, data_cfg, given)
    out = Path(data_cfg.prepared_dir) if data_cfg.prepared_dir else default_prepared_dir(key)
    check_writable(out)
    if _is_complete(out, key):
        _log(f"prepared data reused: {out} (same corpus and settings, key {key})")
        return out
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "meta.json").is_file()):
            raise DataError(
                f"prepared_dir '{out}' exists and is not a bootdistill prepared dataset; "
                "choose another data.prepared_dir or remove it"
            )
        _log(f"prepared data in {out} is stale or unfinished (corpus or settings changed); rebuilding it")

    max_train_bytes = int(data_cfg.max_train_mb * MB) if data_cfg.max_train_mb is not None else None
    _check_splits_have_text(corpus, max_train_bytes)

    out.parent.mkdir(parents=True, exist_ok=True)
    _cleanup_stale(out.parent, out.name)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    done = False
    try:
        tmp.mkdir()
        meta = _build(corpus, data_cfg, key, tmp, max_train_bytes, progress, t0, given)
        _publish(tmp, out, key)
        done = True
    except Exception as e:
        # OSError(ENOSPC) from Python writes; tokenizers' Rust save reports "No space left on device (os error 28)"
        if getattr(e, "errno", None) == errno.ENOSPC or "os error 28" in str(e) or "No space left" in str(e):
            raise DataError(
                f"disk full while writing prepared data to '{tmp.parent}'; free some space or set "
                f"data.prepared_dir to a directory on another disk (the partial files were removed)"
            ) from None
        if getattr(e, "errno", None) == errno.EFBIG or "File too large" in str(e):
            raise DataError(
                f"cannot write prepared data to '{out}': a file reached the file-size limit (ulimit -f); raise the "
                "limit (ulimit -f unlimited) or use less text (data.max_train_mb); the partial files were removed"
            ) from None
        raise
    finally:
        if not done:
            shutil.rmtree(tmp, ignore_errors=True)
    s = meta["splits"]
    _log(
        f"prepared {out}: train {s['train']['tokens']:,} tokens / {s['train']['articles']:,} articles, "
        f"val {s['val']['tokens']:,}, test {s['test']['tokens']:,} tokens, vocab {meta['vocab_size']} "
        f"({meta['seconds']:.1f} s)"
    )
    if corpus.synthetic:
        _log(SYNTHETIC_WARNING)
    return out


def _publish(tmp: Path, out: Path, key: str) -> None:
    """Rename the finished temp dir to `out`, replacing a stale `out`; keep a concurrent run's identical result."""
    if out.exists():
        if _is_complete(out, key):  # another process finished the same preparation first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _build(corpus: Corpus, data_cfg, key: str, tmp: Path, max_train_bytes, progress: bool, t0: float,
           given: PretrainedTokenizer | None) -> dict:
    total = _train_total(corpus, data_cfg)
    counter = {"bytes": 0, "articles": 0}
    if given is None:
        # 1. tokenizer, on the training split only
        with _progress(progress, "tokenizer (BPE on train)", total) as bar:
            tok = train_tokenizer(_counted(corpus.articles("train", max_train_bytes), bar, counter), data_cfg.vocab_size)
        vocab, sep_id, specials = tok.get_vocab_size(), SEP_ID, {t: i for i, t in enumerate(SPECIAL_TOKENS)}
        if vocab < data_cfg.vocab_size:
            _log(f"note: the training text only supports {vocab} tokens, fewer than vocab_size={data_cfg.vocab_size}")
        described = "BPE, NFKC normalizer, ByteLevel pre-tokenizer/decoder, specials [UNK] [PAD] [CLS] [SEP]"
    else:
        tok, vocab, sep_id, specials = given.tok, given.vocab_size, given.sep_id, {given.sep_token: given.sep_id}
        counter["bytes"] = total  # the training text's size, for the progress bar
        described = f"given: {given.spec} (sha256 of its files {given.identity[:12]}...), separator {given.sep_token!r}"
    tok_sha = save_tokenizer(tok, tmp / "tokenizer.json")
    dtype = token_dtype(vocab)

    # 2. token streams
    splits = {}
    for split in ("train", "valid", "test"):
        src_total = counter["bytes"] if split == "train" else getattr(getattr(corpus, split), "size", None)
        name = SPLIT_NAMES[split]
        with _progress(progress, f"tokenize {name}", src_total) as bar:
            splits[name] = _encode_split(tok, corpus.articles(split, max_train_bytes), tmp / SPLIT_FILES[name], bar,
                                         1 << 20, sep_id, dtype)
        if splits[name]["articles"] == 0:
            raise DataError(f"the {split} split came out empty; give data.{split}=FILE")

    meta = {
        "format": PIPELINE_VERSION,
        "key": key,
        "vocab_size": vocab,
        "vocab_size_requested": data_cfg.vocab_size if given is None else None,  # a given tokenizer has its own
        "dtype": dtype.name,
        "special_tokens": specials,
        "sep_id": sep_id,
        "tokenizer": "tokenizer.json",
        "tokenizer_sha256": tok_sha,
        "source": {
            "kind": corpus.kind,
            "description": corpus.description,
            "splits": corpus.sources(),
            "holdout": corpus.holdout,
            "identity": corpus.identity(),
        },
        "settings": {
            "vocab_size": data_cfg.vocab_size,
            "max_train_mb": data_cfg.max_train_mb,
            "text_field": data_cfg.text_field,
            "tokenizer": described,
            "tokenizer_spec": "bpe" if given is None else given.spec,
            "documents": getattr(data_cfg, "documents", "wikitext"),
            "stream": "tokens of each article followed by the separator, articles concatenated in corpus order",
        },
        "splits": splits,
        "synthetic": corpus.synthetic,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - t0, 2),
        "bootdistill_version": __version__,
        "complete": True,
    }
    path = tmp / "meta.json"
    with open(path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return meta
