"""Article iterators, split discovery, default-corpus resolution and bad-input errors (bootdistill.data.sources)."""

from __future__ import annotations

import gzip
import json
import lzma
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bootdistill.config import DataConfig
from bootdistill.data import sources
from bootdistill.data.sources import resolve_corpus
from bootdistill.data.textfiles import is_title_line, split_wikitext, uncompressed_size
from bootdistill.data.synthetic import synthetic_articles
from bootdistill.errors import DataError

WORDS = "the river city was built in 1850 , and its bridge crossed the valley of Alder @-@ wood . lobsters eat".split()


def article(i: int, sections: int = 2, words: int = 40) -> str:
    """One WikiText-layout article: title line, paragraphs, section headings (and a sub-section)."""
    para = lambda k: " " + " ".join(WORDS[(i * 7 + k * 3 + j) % len(WORDS)] for j in range(words)) + " \n"  # noqa: E731
    lines = [" \n", f" = Article {i} = \n", " \n", para(0), " \n"]
    for s in range(sections):
        lines += [f" = = Section {s} = = \n", " \n", para(s + 1), " \n"]
    lines += [" = = = Sub = = = \n", " \n", para(9), " \n"]
    return "".join(lines)


def write_wiki(path: Path, ids, opener=open) -> str:
    text = "".join(article(i) for i in ids)
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return text


def lines_of(text: str):
    return iter(text.splitlines(keepends=True))


# ---------------------------------------------------------------- WikiText layout


def test_title_lines_vs_section_headings():
    assert is_title_line(" = Valkyria Chronicles III = \n")
    assert is_title_line("= Title =")
    assert is_title_line(" = Tropical Storm Arlene ( 1993 ) = \n")
    assert not is_title_line(" = = Gameplay = = \n")
    assert not is_title_line(" = = = Sub section = = = \n")
    assert not is_title_line(" Some text = with an equals sign = here \n")
    assert not is_title_line(" \n")
    assert not is_title_line(" = \n")


def test_split_at_titles_not_sections():
    text = "".join(article(i, sections=3) for i in range(5))
    arts = list(split_wikitext(lines_of(text), "x"))
    assert len(arts) == 5
    for i, a in enumerate(arts):
        assert a.startswith(f" = Article {i} = \n")
        assert a.count(" = = Section") == 3 and " = = = Sub = = = " in a
    # nothing lost but the file's leading blank line
    assert "".join(arts) == text[len(" \n"):]


def test_text_before_first_title_is_its_own_article():
    arts = list(split_wikitext(lines_of(" preface line \n" + article(0)), "x"))
    assert len(arts) == 2 and arts[0] == " preface line \n \n" and arts[1].startswith(" = Article 0 = ")


def test_no_titles_and_empty_text_are_errors():
    with pytest.raises(DataError, match="no articles"):
        list(split_wikitext(lines_of(" just text \n = = Section = = \n more \n"), "f.raw"))
    with pytest.raises(DataError, match="empty"):
        list(split_wikitext(lines_of(" \n \n"), "f.raw"))


def test_compressed_files_read_like_plain(tmp_path):
    plain = write_wiki(tmp_path / "a.raw", range(3))
    write_wiki(tmp_path / "b.raw.xz", range(3), lzma.open)
    write_wiki(tmp_path / "c.txt.gz", range(3), gzip.open)
    got = [list(sources.file_source(tmp_path / n, "text").articles()) for n in ("a.raw", "b.raw.xz", "c.txt.gz")]
    assert got[0] == got[1] == got[2] and len(got[0]) == 3
    assert uncompressed_size(tmp_path / "b.raw.xz") == len(plain.encode())
    assert uncompressed_size(tmp_path / "c.txt.gz") == len(plain.encode())


def test_directory_corpus_finds_valid_and_test_files(tmp_path):
    write_wiki(tmp_path / "wiki.train.10.raw.xz", range(20, 22), lzma.open)
    write_wiki(tmp_path / "wiki.train.2.raw.xz", range(10, 12), lzma.open)
    write_wiki(tmp_path / "wiki.valid.raw", range(100, 103))
    write_wiki(tmp_path / "wiki.test.raw", range(200, 204))
    (tmp_path / "README.md").write_text("not a corpus file")
    c = resolve_corpus(DataConfig(corpus=str(tmp_path)))
    assert c.holdout == [] and not c.synthetic
    train = list(c.articles("train"))
    assert [a.split("\n")[0] for a in train] == [" = Article 10 = ", " = Article 11 = ", " = Article 20 = ", " = Article 21 = "]
    assert len(list(c.articles("valid"))) == 3 and len(list(c.articles("test"))) == 4


def test_explicit_valid_and_test_files(tmp_path):
    write_wiki(tmp_path / "train.raw", range(5))
    write_wiki(tmp_path / "v.raw", range(50, 52))
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(3)))
    c = resolve_corpus(DataConfig(corpus=str(tmp_path / "train.raw"), valid=str(tmp_path / "v.raw"), test=str(tmp_path / "t.jsonl")))
    assert len(list(c.articles("valid"))) == 2 and list(c.articles("test")) == ["doc 0", "doc 1", "doc 2"]


def test_single_file_holds_out_valid_and_test(tmp_path):
    write_wiki(tmp_path / "all.raw", range(120))
    c = resolve_corpus(DataConfig(corpus=str(tmp_path / "all.raw")))
    assert c.holdout == ["valid", "test"]
    train, valid, test = (list(c.articles(s)) for s in ("train", "valid", "test"))
    assert len(valid) == 3 and len(test) == 3 and len(train) == 114  # i % 50 == 1 -> valid, == 2 -> test
    assert valid[0].startswith(" = Article 1 = ") and test[0].startswith(" = Article 2 = ")


def test_max_train_bytes_takes_whole_articles(tmp_path):
    write_wiki(tmp_path / "all.raw", range(30))
    c = resolve_corpus(DataConfig(corpus=str(tmp_path / "all.raw"), valid=str(tmp_path / "all.raw"), test=str(tmp_path / "all.raw")))
    one = len(next(iter(c.articles("train"))).encode())
    got = list(c.articles("train", max_train_bytes=int(3.5 * one)))
    assert len(got) == 3 and all(a.startswith(" = Article") for a in got)
    assert len(list(c.articles("train", max_train_bytes=10))) == 1  # at least one article


def test_articles_are_streamed():
    c = resolve_corpus(DataConfig(corpus="synthetic:0.2"))
    assert isinstance(c.articles("train"), types.GeneratorType)


# ---------------------------------------------------------------- jsonl / parquet


def test_jsonl_rows_are_articles(tmp_path):
    rows = [{"id": i, "content": f"document number {i} ."} for i in range(4)] + [{"id": 9, "content": "  "}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = resolve_corpus(DataConfig(corpus=str(tmp_path / "c.jsonl"), text_field="content"))
    assert list(c.train.articles()) == [f"document number {i} ." for i in range(4)]


def test_jsonl_without_text_field_names_its_fields(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": 1, "body": "x"}) + "\n")
    c = resolve_corpus(DataConfig(corpus=str(tmp_path / "c.jsonl")))
    with pytest.raises(DataError, match=r"no field 'text' \(its fields: id, body\)"):
        list(c.train.articles())


def test_jsonl_invalid_json_is_an_error(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        list(resolve_corpus(DataConfig(corpus=str(tmp_path / "c.jsonl"))).train.articles())


def test_jsonl_of_wikitext_lines_is_split_at_titles(tmp_path):
    text = "".join(article(i) for i in range(3))
    (tmp_path / "lines.jsonl").write_text("".join(json.dumps({"text": ln}) + "\n" for ln in text.splitlines(keepends=True)))
    src = sources.file_source(tmp_path / "lines.jsonl", "text")
    arts = list(src.articles())
    assert src.layout == "lines" and len(arts) == 3 and arts[2].startswith(" = Article 2 = ")


def test_parquet_rows_and_missing_column(tmp_path):
    pq.write_table(pa.table({"text": ["a b c", None, "d e"], "n": [1, 2, 3]}), tmp_path / "c.parquet")
    assert list(sources.file_source(tmp_path / "c.parquet", "text").articles()) == ["a b c", "d e"]
    with pytest.raises(DataError, match=r"no column 'body' \(its columns: text, n\)"):
        list(sources.file_source(tmp_path / "c.parquet", "body").articles())


# ---------------------------------------------------------------- bad inputs


def test_missing_corpus_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_corpus(DataConfig(corpus=str(tmp_path / "nope")))


def test_empty_corpus_dir_and_file(tmp_path):
    with pytest.raises(DataError, match="empty"):
        resolve_corpus(DataConfig(corpus=str(tmp_path)))
    (tmp_path / "e.raw").write_text("")
    with pytest.raises(DataError, match="empty"):
        resolve_corpus(DataConfig(corpus=str(tmp_path / "e.raw")))


def test_corrupt_and_truncated_xz(tmp_path):
    (tmp_path / "bad.raw.xz").write_bytes(b"this is not xz data at all" * 10)
    with pytest.raises(DataError, match="corrupt or truncated xz"):
        list(sources.file_source(tmp_path / "bad.raw.xz", "text").articles())
    blob = lzma.compress("".join(article(i) for i in range(50)).encode())
    (tmp_path / "cut.raw.xz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated xz"):
        list(sources.file_source(tmp_path / "cut.raw.xz", "text").articles())


def test_non_utf8_text_is_an_error(tmp_path):
    (tmp_path / "latin1.raw").write_bytes(" = Caf\xe9 = \n text \n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        list(sources.file_source(tmp_path / "latin1.raw", "text").articles())


# ---------------------------------------------------------------- default resolution


def test_default_uses_env_var(tmp_path, monkeypatch):
    write_wiki(tmp_path / "x.raw", range(3))
    monkeypatch.setenv("BOOTDISTILL_CORPUS", str(tmp_path / "x.raw"))
    c = resolve_corpus(DataConfig())
    assert c.kind == "files" and c.description == str((tmp_path / "x.raw").resolve())


def test_default_uses_shared_corpus_candidate(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "corpus"
    shared.mkdir(parents=True)
    write_wiki(shared / "wiki2015.train.00.raw.xz", range(3), lzma.open)
    write_wiki(shared / "wiki.valid.raw", range(5, 7))
    monkeypatch.delenv("BOOTDISTILL_CORPUS", raising=False)
    work = tmp_path / "main"
    work.mkdir()
    monkeypatch.chdir(work)  # ../shared/corpus relative to the working directory
    monkeypatch.setattr(sources, "repo_root", lambda: None)
    c = resolve_corpus(DataConfig())
    assert Path(c.description) == shared.resolve() and c.holdout == ["test"]


def test_repo_root_candidate_points_at_shared_corpus():
    root = sources.repo_root()
    assert root is not None and (root / "pyproject.toml").is_file()
    assert root.parent / "shared" / "corpus" in sources.default_corpus_candidates()


def test_default_falls_back_to_synthetic(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOTDISTILL_CORPUS", raising=False)
    monkeypatch.setattr(sources, "default_corpus_candidates", lambda: [tmp_path / "none"])
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=2.0: False)
    c = resolve_corpus(DataConfig())
    assert c.synthetic and c.kind == "synthetic"


def test_default_prefers_hub_when_reachable(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOTDISTILL_CORPUS", raising=False)
    monkeypatch.setattr(sources, "default_corpus_candidates", lambda: [])
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=2.0: True)
    assert sources.default_corpus_spec()[0] == "hf:wikitext:wikitext-103-raw-v1"


def test_hub_check_honours_offline_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert sources.hub_reachable() is False


def test_synthetic_is_deterministic_wikitext_layout():
    a = list(synthetic_articles("train", seed=3, mb=0.05))
    b = list(synthetic_articles("train", seed=3, mb=0.05))
    assert a == b and a != list(synthetic_articles("valid", seed=3, mb=0.05))
    arts = list(split_wikitext(lines_of("".join(a)), "synthetic"))
    assert len(arts) == len(a) and all(" = = " in x for x in arts)


# ---------------------------------------------------------------- Hugging Face datasets code path


def _hf_files(tmp_path: Path, splits=("train", "validation", "test")) -> dict:
    files = {}
    for k, split in enumerate(splits):
        text = "".join(article(100 * k + i) for i in range(4))
        p = tmp_path / f"{split}.jsonl"
        # HF wikitext layout: one row per line
        p.write_text("".join(json.dumps({"text": ln}) + "\n" for ln in text.splitlines(keepends=True)))
        files[split] = str(p)
    return files


def test_hf_loading_through_datasets_on_local_files(tmp_path):
    files = _hf_files(tmp_path)
    c = sources._hf_corpus("hf:json", DataConfig(corpus="hf:json"), data_files=files)
    assert c.kind == "hf" and c.holdout == []
    for split, first in (("train", 0), ("valid", 100), ("test", 200)):
        arts = list(c.articles(split))
        assert len(arts) == 4 and arts[0].startswith(f" = Article {first} = ")


def test_hf_missing_split_is_held_out(tmp_path):
    files = _hf_files(tmp_path, splits=("train", "test"))
    c = sources._hf_corpus("hf:json", DataConfig(corpus="hf:json"), data_files=files)
    assert c.holdout == ["valid"]


def test_hf_unreachable_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(DataError, match="unreachable.*data.corpus=DIR") as e:
        resolve_corpus(DataConfig(corpus="hf:wikitext:wikitext-103-raw-v1"))
    assert "\n" not in str(e.value)


def test_hf_load_failure_is_wrapped(monkeypatch):
    import datasets

    def boom(*a, **k):
        raise ConnectionError("Couldn't reach 'wikitext' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=2.0: True)
    with pytest.raises(DataError, match="Couldn't reach.*use a local corpus"):
        resolve_corpus(DataConfig(corpus="hf:wikitext:wikitext-103-raw-v1"))
