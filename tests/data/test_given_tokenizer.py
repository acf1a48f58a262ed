"""data.tokenizer: a tokenizer.json or a Hugging Face tokenizer directory instead of the trained BPE; uint32 token
files for vocabularies above 65,535; the prepared-data key holds the tokenizer's identity; plain .txt corpora."""

import json
import shutil

import numpy as np
import pytest

from conftest import run_main, tiny_overrides, word_level
from bootdistill.config import load_config
from bootdistill.data.prepare import dataset_key, load_meta, prepare, token_file
from bootdistill.data.sources import resolve_corpus



def test_vocabulary_above_65535_gives_uint32_token_files_that_train(tiny_corpus, tmp_path):
    tok = word_level(tmp_path / "big.json", 70_000)  # ids above 65,535: uint16 cannot hold them
    prepared = tmp_path / "prep"
    args = tiny_overrides(tiny_corpus, tmp_path / "run", prepared, **{
        "data.tokenizer": tmp_path / "big.json", "train.total_steps": 2, "train.eval_every": 2, "model.d_model": 16})
    r = run_main("train", *args)
    assert r.returncode == 0, r.stderr
    meta = load_meta(prepared)
    assert meta["dtype"] == "uint32" and meta["vocab_size"] == tok.get_vocab_size() > 65_535
    assert meta["sep_id"] == 1 and meta["special_tokens"] == {"<|endoftext|>": 1}
    train = token_file(prepared, "train")
    assert train.dtype == np.uint32 and (prepared / "train.bin").stat().st_size == 4 * meta["splits"]["train"]["tokens"]
    text = (tiny_corpus / "wiki.valid.raw").read_text()
    article = text.split(" = Article 2-1 = ")[0].removeprefix(" \n")
    want = tok.encode(article, add_special_tokens=False).ids + [1]
    assert list(token_file(prepared, "val")[:len(want)]) == want and max(want) > 65_535
    for split in ("val", "test"):  # bits per byte of the final losses: loss / ln 2 / the split's bytes per token
        info = meta["splits"][split]
        assert info["bytes_per_token"] == pytest.approx(info["bytes"] / info["tokens"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"]["vocab_size"] == meta["vocab_size"]
    assert summary["test_bpb"] == pytest.approx(summary["test_loss"] / np.log(2) / meta["splits"]["test"]["bytes_per_token"])
    assert summary["final_val_bpb"] == pytest.approx(
        summary["final_val_loss"] / np.log(2) / meta["splits"]["val"]["bytes_per_token"])


def test_the_key_holds_the_tokenizers_identity(tiny_corpus, tmp_path):
    word_level(tmp_path / "a.json", 10)
    word_level(tmp_path / "b.json", 11)
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "a.json", tmp_path / "copy" / "a.json")

    def key(tokenizer):
        cfg = load_config(None, tiny_overrides(tiny_corpus, tmp_path / "r", tmp_path / "p",
                                               **{"data.tokenizer": tokenizer})).data
        from bootdistill.data.pretrained_tokenizer import is_bpe, load_pretrained_tokenizer

        return dataset_key(resolve_corpus(cfg), cfg, None if is_bpe(tokenizer) else load_pretrained_tokenizer(str(tokenizer)))

    keys = {name: key(t) for name, t in (("bpe", "bpe"), ("a", tmp_path / "a.json"), ("b", tmp_path / "b.json"),
                                          ("copy", tmp_path / "copy" / "a.json"))}
    assert len({keys["bpe"], keys["a"], keys["b"]}) == 3 and keys["copy"] == keys["a"]  # the file's content, not its path


def test_hf_tokenizer_directory_and_its_eos_as_separator(tiny_corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = word_level(tmp_path / "t.json", 5, eos="</s>")
    tok.add_special_tokens(["<s>"])
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="[UNK]")
    hf.save_pretrained(tmp_path / "hf")
    out = prepare(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "r", tmp_path / "p", **{
        "data.tokenizer": tmp_path / "hf"})).data, progress=False)
    meta = load_meta(out)
    assert meta["sep_id"] == hf.eos_token_id and meta["dtype"] == "uint16" and meta["vocab_size"] == len(hf)
    val = np.asarray(token_file(out, "val"))
    assert (val == hf.eos_token_id).sum() == meta["splits"]["val"]["articles"] and val[-1] == hf.eos_token_id
    # a tokenizer.json that truncates (as some shipped ones do, at 512) still gives whole documents
    tok.enable_truncation(8)
    tok.save(str(tmp_path / "truncating.json"))
    out = prepare(load_config(None, tiny_overrides(tiny_corpus, tmp_path / "r", tmp_path / "p2", **{
        "data.tokenizer": tmp_path / "truncating.json"})).data, progress=False)
    assert np.array_equal(np.asarray(token_file(out, "val")), val)


def test_bad_tokenizers_are_refused_with_one_line(tiny_corpus, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.json").write_text("{not json")
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(tmp_path / "noeos.json"))
    for spec, says in ((tmp_path / "missing.json", "does not exist"), (tmp_path / "empty", "holds no tokenizer files"),
                       (tmp_path / "broken.json", "not a valid tokenizers JSON"), (tmp_path / "noeos.json", "end-of-text"),
                       ("no-such-org-bd/no-such-tokenizer", "cannot be loaded as a Hugging Face tokenizer")):
        r = run_main("prepare", *tiny_overrides(tiny_corpus, tmp_path / "r", tmp_path / "p", **{"data.tokenizer": spec}))
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("error:") and says in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "p").exists()


PLAIN = "First document, line one.\nLine two of it.\n\n\nSecond document.\n\nThird one\nwith two lines.\n\nFourth.\n"


def test_plain_text_corpus_documents_by_blank_lines_or_whole_files(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text(PLAIN)
    (tmp_path / "c" / "notes.valid.txt").write_text("Held out.\n\nAnother held out.\n")
    (tmp_path / "c" / "notes.test.txt").write_text("Test text.\n")
    base = {"data.corpus": tmp_path / "c", "data.prepared_dir": tmp_path / "p", "data.vocab_size": 270}
    r = run_main("prepare", *[f"{k}={v}" for k, v in base.items()])
    assert r.returncode == 2 and "data.documents=blank_lines" in r.stderr and "Traceback" not in r.stderr

    def articles(documents, split="train"):
        cfg = load_config(None, [f"{k}={v}" for k, v in {**base, "data.documents": documents}.items()]).data
        return list(resolve_corpus(cfg).articles(split))

    assert articles("blank_lines") == ["First document, line one.\nLine two of it.\n", "Second document.\n",
                                       "Third one\nwith two lines.\n", "Fourth.\n"]
    assert articles("blank_lines", "valid") == ["Held out.\n", "Another held out.\n"]
    assert articles("file") == [PLAIN] and articles("file", "valid") == ["Held out.\n\nAnother held out.\n"]
    r = run_main("prepare", *[f"{k}={v}" for k, v in {**base, "data.documents": "blank_lines"}.items()], "--no-progress")
    assert r.returncode == 0, r.stderr
    meta = load_meta(tmp_path / "p")
    assert meta["splits"]["train"]["articles"] == 4 and meta["splits"]["val"]["articles"] == 2
    assert meta["splits"]["train"]["bytes"] == sum(len(a.encode()) for a in articles("blank_lines"))
    r = run_main("prepare", *[f"{k}={v}" for k, v in {**base, "data.documents": "pages"}.items()])
    assert r.returncode == 2 and "data.documents" in r.stderr
