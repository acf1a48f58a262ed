"""Vocabulary sweep (paper Figure 1) and the BPE-prefix property it relies on."""

from __future__ import annotations

import argparse
import csv
import json

import pytest

from bootdistill.config import DataConfig
from bootdistill.data.cli_data import add_subcommands
from bootdistill.data.synthetic import synthetic_articles
from bootdistill.data.tokenizer import train_tokenizer, truncate_tokenizer
from bootdistill.data.vocab_sweep import vocab_sweep
from bootdistill.errors import DataError


@pytest.fixture(scope="module")
def texts():
    return list(synthetic_articles("train", seed=1, mb=0.4))


@pytest.mark.parametrize("small", [300, 600])
def test_truncated_tokenizer_equals_training_smaller(texts, small):
    big = train_tokenizer(texts, 1200)
    direct = json.loads(train_tokenizer(texts, small).to_str())["model"]
    cut = json.loads(truncate_tokenizer(big, small).to_str())["model"]
    assert cut["vocab"] == direct["vocab"] and cut["merges"] == direct["merges"]
    sample = texts[0][:2000]
    assert truncate_tokenizer(big, small).encode(sample).ids == train_tokenizer(texts, small).encode(sample).ids


def test_vocab_sweep_writes_csv_and_png(tmp_path):
    rows = vocab_sweep(DataConfig(corpus="synthetic:0.3"), sizes=[300, 500, 1000, 2000], sample_mb=0.3, out_dir=tmp_path)
    ratios = [r["tokens_per_word"] for r in rows]
    assert ratios == sorted(ratios, reverse=True) and ratios[0] > ratios[-1] > 0.9
    assert (tmp_path / "vocab_sweep.png").stat().st_size > 1000
    with open(tmp_path / "vocab_sweep.csv") as f:
        got = list(csv.DictReader(f))
    assert [int(r["vocab_size"]) for r in got] == [300, 500, 1000, 2000]
    assert int(got[1]["embedding_params_d128"]) == 500 * 128


def test_vocab_sweep_cli_and_bad_sizes(tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_subcommands(p.add_subparsers())
    args = p.parse_args(["vocab-sweep", "--corpus", "synthetic:0.2", "--sizes", "300,400", "--sample-mb", "0.2", "--out", str(tmp_path), "--no-plot"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines()[0] == "vocab_size,tokens_per_word"
    assert not (tmp_path / "vocab_sweep.png").exists() and (tmp_path / "vocab_sweep.csv").exists()
    with pytest.raises(DataError, match="260"):
        vocab_sweep(DataConfig(corpus="synthetic:0.1"), sizes=[100], out_dir=tmp_path)
    args = p.parse_args(["vocab-sweep", "--corpus", "synthetic:0.1", "--sizes", "3x", "--out", str(tmp_path)])
    with pytest.raises(DataError, match="comma-separated"):
        args.func(args)
