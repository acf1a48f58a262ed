"""prepare(): tokenizer + token streams + meta.json, reuse, atomicity, errors, CLI (bootdistill.data.prepare)."""

from __future__ import annotations

import argparse
import errno
import importlib
import itertools
import json
import lzma
import os
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bootdistill.config import DataConfig
from bootdistill.data import check_tokenizer_matches, load_meta, load_tokenizer, prepare, sources, token_file
from bootdistill.data.cli_data import add_subcommands
from bootdistill.data.tokenizer import SEP_ID, SPECIAL_TOKENS, encode_articles, train_tokenizer
from bootdistill.errors import DataError

prepare_mod = importlib.import_module("bootdistill.data.prepare")  # the module (bootdistill.data.prepare is the function)

WORDS = "the river city was built in 1850 , and its bridge crossed the valley of Alder @-@ wood . Ærø café ﬁ".split()


def article(i: int, words: int = 60) -> str:
    para = lambda k: " " + " ".join(WORDS[(i * 5 + k * 3 + j) % len(WORDS)] for j in range(words)) + " \n"  # noqa: E731
    return "".join([" \n", f" = Article {i} = \n", " \n", para(0), " \n", " = = History = = \n", " \n", para(1), " \n"])


def wiki_dir(root: Path, n_train=(6, 5), n_valid=3, n_test=2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for part, n in enumerate(n_train):
        with lzma.open(root / f"wiki.train.{part:02d}.raw.xz", "wt", encoding="utf-8") as f:
            f.write("".join(article(k + i) for i in range(n)))
        k += n
    (root / "wiki.valid.raw").write_text("".join(article(1000 + i) for i in range(n_valid)), encoding="utf-8")
    (root / "wiki.test.raw").write_text("".join(article(2000 + i) for i in range(n_test)), encoding="utf-8")
    return root


def cfg(corpus, out, **kw) -> DataConfig:
    return DataConfig(corpus=str(corpus), prepared_dir=str(out), vocab_size=kw.pop("vocab_size", 300), **kw)


@pytest.fixture
def prepared(tmp_path):
    corpus = wiki_dir(tmp_path / "corpus")
    return corpus, prepare(cfg(corpus, tmp_path / "prep"), progress=False)


# ---------------------------------------------------------------- outputs


def test_outputs_and_meta_counts(prepared):
    corpus, out = prepared
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.bin", "tokenizer.json", "train.bin", "val.bin"]
    meta = load_meta(out)
    assert meta["complete"] is True and list(meta)[-1] == "complete"
    assert meta["synthetic"] is False and meta["vocab_size"] <= 300 and meta["vocab_size_requested"] == 300
    assert meta["special_tokens"] == {"[UNK]": 0, "[PAD]": 1, "[CLS]": 2, "[SEP]": 3}
    assert {k: v["articles"] for k, v in meta["splits"].items()} == {"train": 11, "val": 3, "test": 2}
    for split, info in meta["splits"].items():
        toks = token_file(out, split)
        assert isinstance(toks, np.memmap) and toks.dtype == np.uint16 and len(toks) == info["tokens"]
        assert int((toks == SEP_ID).sum()) == info["articles"] and toks[-1] == SEP_ID
        assert int(toks.max()) < meta["vocab_size"]
    assert meta["splits"]["val"]["bytes"] == (corpus / "wiki.valid.raw").stat().st_size - len(" \n".encode())
    assert meta["tokenizer_sha256"] == prepare_mod.file_sha256(out / "tokenizer.json")
    assert meta["source"]["kind"] == "files" and "wiki.valid.raw" in meta["source"]["splits"]["valid"]


def test_each_article_then_sep(prepared):
    _, out = prepared
    tok = load_tokenizer(out)
    stream = np.asarray(token_file(out, "val"))
    pieces = np.split(stream, np.flatnonzero(stream == SEP_ID) + 1)[:-1]
    assert len(pieces) == 3
    for i, piece in enumerate(pieces):
        assert piece[-1] == SEP_ID and SEP_ID not in piece[:-1]
        text = tok.decode(piece[:-1].tolist())
        assert text == unicodedata.normalize("NFKC", article(1000 + i)[len(" \n"):] + (" \n" if i < 2 else ""))


def test_tokenizer_components_and_training_split_only(prepared):
    _, out = prepared
    spec = json.loads((out / "tokenizer.json").read_text())
    assert spec["normalizer"]["type"] == "NFKC" and spec["pre_tokenizer"]["type"] == "ByteLevel"
    assert spec["decoder"]["type"] == "ByteLevel" and spec["model"]["type"] == "BPE" and spec["post_processor"] is None
    tok = load_tokenizer(out)
    assert [tok.id_to_token(i) for i in range(4)] == SPECIAL_TOKENS
    # "Article 1000" etc. only occur in valid/test: the tokenizer never saw them
    assert "Ġ1000" not in tok.get_vocab()


def test_encode_in_batches_matches_one_batch_and_streams():
    tok = train_tokenizer((article(i) for i in range(20)), 300)
    arts = [article(i) for i in range(20)]
    whole = np.concatenate([b for b, _, _ in encode_articles(tok, arts, batch_bytes=1 << 30)])
    batches = list(encode_articles(tok, arts, batch_bytes=2000))
    assert len(batches) >= 5 and sum(n for _, n, _ in batches) == 20
    assert np.array_equal(np.concatenate([b for b, _, _ in batches]), whole)
    # an endless article stream still yields batches: nothing collects the whole corpus
    endless = encode_articles(tok, (article(i % 7) for i in itertools.count()), batch_bytes=5000)
    first = list(itertools.islice(endless, 3))
    assert all(b.dtype == np.uint16 for b, _, _ in first)


# ---------------------------------------------------------------- reuse and keys


def test_rerun_reuses(prepared, capsys):
    corpus, out = prepared
    mtime = (out / "train.bin").stat().st_mtime_ns
    assert prepare(cfg(corpus, out), progress=False) == out
    assert "reused" in capsys.readouterr().err
    assert (out / "train.bin").stat().st_mtime_ns == mtime


def test_changed_settings_rebuild_explicit_dir(prepared, capsys):
    corpus, out = prepared
    key = load_meta(out)["key"]
    prepare(cfg(corpus, out, vocab_size=280), progress=False)
    assert "rebuilding" in capsys.readouterr().err
    meta = load_meta(out)
    assert meta["key"] != key and meta["vocab_size_requested"] == 280
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # temp / old dirs cleaned up


def test_default_dir_is_keyed_by_source_and_settings(tmp_path, monkeypatch):
    corpus = wiki_dir(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    a = prepare(DataConfig(corpus=str(corpus), vocab_size=300), progress=False)
    b = prepare(DataConfig(corpus=str(corpus), vocab_size=300, max_train_mb=0.002), progress=False)
    assert a.parent == b.parent == Path("data/prepared") and a != b
    assert load_meta(b)["splits"]["train"]["articles"] < load_meta(a)["splits"]["train"]["articles"]
    os.utime(corpus / "wiki.valid.raw", ns=(1, 1))  # the source changed: new key
    assert prepare(DataConfig(corpus=str(corpus), vocab_size=300), progress=False) != a


def test_refuses_to_overwrite_foreign_dir(tmp_path):
    corpus = wiki_dir(tmp_path / "corpus")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a bootdistill prepared dataset"):
        prepare(cfg(corpus, tmp_path / "mine"), progress=False)
    assert (tmp_path / "mine" / "notes.txt").exists()


# ---------------------------------------------------------------- atomicity and failures


def test_disk_full_is_clear_and_leaves_nothing(tmp_path, monkeypatch):
    corpus = wiki_dir(tmp_path / "corpus")

    def full(f, arr):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_mod, "_write_array", full)
    with pytest.raises(DataError, match="disk full"):
        prepare(cfg(corpus, tmp_path / "out" / "prep"), progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_disk_full_in_tokenizer_save(tmp_path, monkeypatch):
    corpus = wiki_dir(tmp_path / "corpus")

    def full(tok, path):
        raise Exception("No space left on device (os error 28)")  # how the Rust side reports it

    monkeypatch.setattr(prepare_mod, "save_tokenizer", full)
    with pytest.raises(DataError, match="disk full"):
        prepare(cfg(corpus, tmp_path / "out" / "prep"), progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_crash_midway_leaves_no_half_prepared_dir(tmp_path, monkeypatch):
    corpus = wiki_dir(tmp_path / "corpus")
    calls = []

    def crash(f, arr):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(prepare_mod, "_write_array", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg(corpus, tmp_path / "out" / "prep"), progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_split_fails_before_tokenizer_training(tmp_path):
    corpus = wiki_dir(tmp_path / "corpus")
    (corpus / "wiki.test.raw").write_text(" text without any title line \n")
    with pytest.raises(DataError, match="no articles"):
        prepare(cfg(corpus, tmp_path / "prep"), progress=False)
    assert not (tmp_path / "prep").exists()


def test_truncated_token_file_is_detected(prepared):
    _, out = prepared
    with open(out / "val.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(DataError, match="changed or truncated"):
        token_file(out, "val")


def test_load_meta_errors(tmp_path):
    with pytest.raises(DataError, match="run `bootdistill prepare`"):
        load_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"complete": False}))
    with pytest.raises(DataError, match="unfinished"):
        load_meta(tmp_path)


def test_check_tokenizer_matches(prepared, tmp_path):
    _, out = prepared
    check_tokenizer_matches(out, out / "tokenizer.json")
    check_tokenizer_matches(out, out)
    check_tokenizer_matches(out, load_meta(out)["tokenizer_sha256"])
    other = train_tokenizer([article(i) for i in range(3)], 290)
    other.save(str(tmp_path / "other.json"))
    with pytest.raises(DataError, match="does not match the prepared data"):
        check_tokenizer_matches(out, tmp_path / "other.json")
    with pytest.raises(DataError, match="does not match"):
        check_tokenizer_matches(out, "0" * 64)
    with pytest.raises(DataError, match="does not exist"):
        check_tokenizer_matches(out, tmp_path / "missing.json")


# ---------------------------------------------------------------- other sources


def test_jsonl_and_parquet_corpora(tmp_path):
    docs = [f"Document {i} : " + " ".join(WORDS[: 10 + i]) for i in range(12)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    out = prepare(cfg(tmp_path / "docs.jsonl", tmp_path / "p1", text_field="body"), progress=False)
    assert load_meta(out)["splits"]["train"]["articles"] == 10 and load_meta(out)["source"]["holdout"] == ["valid", "test"]
    pq.write_table(pa.table({"text": docs}), tmp_path / "docs.parquet")
    out = prepare(cfg(tmp_path / "docs.parquet", tmp_path / "p2"), progress=False)
    meta = load_meta(out)
    assert {k: v["articles"] for k, v in meta["splits"].items()} == {"train": 10, "val": 1, "test": 1}


def test_synthetic_fallback_is_flagged(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BOOTDISTILL_CORPUS", raising=False)
    monkeypatch.setattr(sources, "default_corpus_candidates", lambda: [])
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=2.0: False)
    monkeypatch.chdir(tmp_path)
    out = prepare(DataConfig(vocab_size=400, max_train_mb=0.2), progress=False)
    meta = load_meta(out)
    assert meta["synthetic"] is True and meta["source"]["kind"] == "synthetic"
    assert meta["splits"]["train"]["bytes"] <= 200_000 and meta["splits"]["val"]["articles"] > 10
    assert "SYNTHETIC" in capsys.readouterr().err


def test_small_corpus_cannot_hold_out(tmp_path):
    (tmp_path / "one.raw").write_text(article(0) + article(1))
    with pytest.raises(DataError, match="too few articles to hold out"):
        prepare(cfg(tmp_path / "one.raw", tmp_path / "p"), progress=False)


# ---------------------------------------------------------------- CLI


def _parser():
    p = argparse.ArgumentParser(prog="bootdistill")
    add_subcommands(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_prepare_flags_and_overrides(tmp_path, capsys):
    corpus = wiki_dir(tmp_path / "corpus")
    out = tmp_path / "cli out"
    args = _parser().parse_args(["prepare", "--corpus", str(corpus), "--vocab-size", "320", "--out", str(out), "--no-progress", "data.max_train_mb=1"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    meta = load_meta(out)
    assert meta["settings"]["vocab_size"] == 320 and meta["settings"]["max_train_mb"] == 1.0


def test_cli_prepare_config_file(tmp_path, capsys):
    corpus = wiki_dir(tmp_path / "corpus")
    (tmp_path / "c.yaml").write_text(f"data:\n  corpus: {corpus}\n  vocab_size: 310\n  prepared_dir: {tmp_path / 'p'}\n")
    args = _parser().parse_args(["prepare", "--config", str(tmp_path / "c.yaml"), "--no-progress"])
    assert args.func(args) == 0 and load_meta(tmp_path / "p")["settings"]["vocab_size"] == 310


def test_cli_help_for_every_option():
    p = _parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("prepare", "vocab-sweep"):
        for action in sub.choices[name]._actions:
            assert action.help, f"{name} {action.dest} has no help"


# ---------------------------------------------------------------- the real shared corpus


def _shared_corpus():
    for cand in sources.default_corpus_candidates():
        if (cand / "wiki.valid.raw").is_file():
            return cand
    return None


@pytest.mark.skipif(_shared_corpus() is None, reason="the shared WikiText corpus (../shared/corpus) is not present")
def test_real_shared_corpus(tmp_path):
    out = prepare(DataConfig(corpus=str(_shared_corpus()), vocab_size=1000, max_train_mb=1.0, prepared_dir=str(tmp_path / "p")), progress=False)
    meta = load_meta(out)
    s = meta["splits"]
    assert s["val"]["articles"] == 60 and s["test"]["articles"] == 62  # WikiText-103 valid/test (paper Table 2: 60)
    assert 0 < s["train"]["bytes"] <= 1_000_000 and s["train"]["articles"] >= 10
    assert s["val"]["bytes"] == 1_146_846 - 2  # the file's leading " \n" precedes the first title
    assert meta["vocab_size"] == 1000 and meta["synthetic"] is False
    val = token_file(out, "val")
    words = 213_886
    assert 1.2 < s["val"]["tokens"] / words < 2.5  # tokens per word with a 1k vocabulary
    assert load_tokenizer(out).decode(val[:40].tolist()).startswith(" = Homarus gammarus = \n")
