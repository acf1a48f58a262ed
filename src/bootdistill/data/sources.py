"""Where text comes from: article iterators per source type, the default-corpus resolution, split discovery.

Every source is streamed one article at a time (never the whole corpus in memory):

* WikiText raw layout text (`.raw`, `.txt`, `.tokens`, optionally `.xz` / `.gz` / `.bz2` compressed): articles
  start at a line ` = Title = ` (one `=` each side); ` = = Section = = ` headings stay inside their article.
* `.jsonl` / `.parquet` (optionally compressed jsonl): each row's `text_field` is one article, unless the rows
  are WikiText *lines* (the layout of the Hugging Face `wikitext` dataset), in which case the lines are joined
  and split at title lines like a text file.
* `hf:NAME[:CONFIG]`: a Hugging Face dataset through `datasets.load_dataset(..., streaming=True)`.
* `synthetic` / `synthetic:MB`: the built-in generator (bootdistill.data.synthetic).

`resolve_corpus(data_cfg)` turns a DataConfig into a `Corpus` with train / valid / test `TextSource`s.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from . import synthetic as _synthetic
from .textfiles import (base_suffix, compression, guarded_lines, is_title_line, nbytes, split_documents, split_wikitext,
                        uncompressed_size)

SPLITS = ("train", "valid", "test")
TEXT_SUFFIXES = (".raw", ".txt", ".tokens")
ROW_SUFFIXES = (".jsonl", ".parquet")
ALTERNATIVES = (
    "data.corpus=DIR (WikiText .raw/.txt, also .xz/.gz), data.corpus=FILE.jsonl or FILE.parquet, "
    "BOOTDISTILL_CORPUS=..., or data.corpus=synthetic"
)
HOLDOUT_EVERY = 50  # corpora without validation/test files: article i goes to valid if i % 50 == 1, test if == 2
HF_DEFAULT = ("wikitext", "wikitext-103-raw-v1")


# ---------------------------------------------------------------- sources


class TextSource:
    """A stream of articles. Subclasses set `size` (bytes of text, None if unknown) where they can."""

    size: int | None = None

    def articles(self) -> Iterator[str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def identity(self) -> object:
        """JSON-able description that changes when the text may have changed (paths, sizes, mtimes)."""
        raise NotImplementedError


def _file_identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


class WikiTextFile(TextSource):
    """A text file: WikiText layout, or plain text split as data.documents says (textfiles.split_documents)."""

    def __init__(self, path: Path, documents: str = "wikitext"):
        self.path, self.documents = path, documents
        self.size = uncompressed_size(path)

    def articles(self) -> Iterator[str]:
        return split_documents(guarded_lines(self.path), str(self.path), self.documents)

    def describe(self) -> str:
        return str(self.path)

    def identity(self) -> object:
        return [self.documents, *_file_identity(self.path)]


def _looks_like_wikitext_lines(rows: list[str]) -> bool:
    """Rows that are single WikiText lines (HF `wikitext` layout) rather than whole documents."""
    if not rows:
        return False
    single = all("\n" not in r.rstrip("\n") for r in rows)
    return single and any(is_title_line(r) for r in rows)


class _RowSource(TextSource):
    """Rows of text (jsonl / parquet / HF). Each row is an article, unless the rows are WikiText lines."""

    layout: str | None = None  # "rows" | "lines", decided on the first 256 rows

    def rows(self) -> Iterator[str]:
        raise NotImplementedError

    def articles(self) -> Iterator[str]:
        rows = self.rows()
        head: list[str] = []
        for r in rows:
            head.append(r)
            if len(head) >= 256:
                break
        self.layout = "lines" if _looks_like_wikitext_lines(head) else "rows"

        def chained() -> Iterator[str]:
            yield from head
            yield from rows

        if self.layout == "lines":
            yield from split_wikitext((r if r.endswith("\n") else r + "\n" for r in chained()), self.describe())
            return
        seen = False
        for r in chained():
            if r.strip():
                seen = True
                yield r
        if not seen:
            raise DataError(f"{self.describe()} is empty: no row has any text in field '{self.text_field}'")


class JsonlFile(_RowSource):
    def __init__(self, path: Path, text_field: str):
        self.path, self.text_field = path, text_field
        self.size = uncompressed_size(path)

    def rows(self) -> Iterator[str]:
        for lineno, line in enumerate(guarded_lines(self.path), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{self.path} line {lineno} is not valid JSON ({e.msg}); jsonl needs one JSON object per line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{self.path} line {lineno} is not a JSON object; jsonl needs one object per line with a '{self.text_field}' field")
            if self.text_field not in obj:
                fields = ", ".join(map(str, obj)) or "none"
                raise DataError(
                    f"{self.path} line {lineno} has no field '{self.text_field}' (its fields: {fields}); "
                    f"set data.text_field to the one holding the text"
                )
            text = obj[self.text_field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise DataError(f"{self.path} line {lineno}: field '{self.text_field}' is {type(text).__name__}, not text; set data.text_field to a text field")
            yield text

    def describe(self) -> str:
        return str(self.path)

    def identity(self) -> object:
        return ["jsonl", self.text_field, *_file_identity(self.path)]


class ParquetFile(_RowSource):
    def __init__(self, path: Path, text_field: str):
        self.path, self.text_field = path, text_field
        self.size = None

    def _open(self):
        import pyarrow.parquet as pq  # only for .parquet corpora (0.3 s)

        try:
            pf = pq.ParquetFile(self.path)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for corrupt files
            raise DataError(f"cannot read {self.path}: not a valid parquet file ({str(e).splitlines()[0]})") from None
        names = pf.schema_arrow.names
        if self.text_field not in names:
            raise DataError(
                f"{self.path} has no column '{self.text_field}' (its columns: {', '.join(names) or 'none'}); "
                f"set data.text_field to the one holding the text"
            )
        return pf

    def rows(self) -> Iterator[str]:
        pf = self._open()
        try:
            for batch in pf.iter_batches(batch_size=1024, columns=[self.text_field]):
                col = batch.column(0)
                import pyarrow as pa  # loaded with pyarrow.parquet above

                if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                    raise DataError(f"{self.path}: column '{self.text_field}' is {col.type}, not text; set data.text_field to a text column")
                for text in col.to_pylist():
                    if text is not None:
                        yield text
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"cannot read {self.path}: corrupt parquet data ({str(e).splitlines()[0]})") from None

    def describe(self) -> str:
        return str(self.path)

    def identity(self) -> object:
        return ["parquet", self.text_field, *_file_identity(self.path)]


class HFSplit(_RowSource):
    """One split of a Hugging Face dataset, streamed with `datasets.load_dataset(..., streaming=True)`.

    `data_files` lets the same code path read local files through a packaged builder (name 'json', 'parquet',
    'text'), which is how the tests exercise it without a network.
    """

    def __init__(self, name: str, config: str | None, split: str, text_field: str, data_files=None):
        self.name, self.config, self.split, self.text_field, self.data_files = name, config, split, text_field, data_files
        self.size = None

    def load(self):
        try:
            import datasets  # only for hf: corpora (2.4 s to import)
        except ImportError:
            raise DataError(f"reading {self.describe()} needs the 'datasets' package (pip install datasets); or use {ALTERNATIVES}") from None
        kwargs = {"split": self.split, "streaming": True}
        if self.data_files is not None:
            kwargs["data_files"] = self.data_files
        try:
            return datasets.load_dataset(self.name, self.config, **kwargs)
        except ValueError as e:
            if "split" in str(e).lower():
                raise _MissingSplit(str(e)) from None
            raise DataError(f"cannot load {self.describe()}: {str(e).splitlines()[0]}") from None
        except Exception as e:
            raise _hf_error(self.describe(), e) from None

    def rows(self) -> Iterator[str]:
        ds = self.load()
        it = iter(ds)
        while True:
            try:
                row = next(it)
            except StopIteration:
                return
            except DataError:
                raise
            except Exception as e:
                raise _hf_error(self.describe(), e) from None
            if self.text_field not in row:
                raise DataError(
                    f"{self.describe()} rows have no field '{self.text_field}' (their fields: {', '.join(row)}); "
                    f"set data.text_field to the one holding the text"
                )
            text = row[self.text_field]
            if text is not None:
                yield text

    def describe(self) -> str:
        cfg = f":{self.config}" if self.config else ""
        return f"hf:{self.name}{cfg} [{self.split}]"

    def identity(self) -> object:
        files = None
        if self.data_files is not None:
            df = self.data_files if isinstance(self.data_files, dict) else {"": self.data_files}
            files = {k: [_file_identity(Path(p)) for p in ([v] if isinstance(v, (str, Path)) else v)] for k, v in df.items()}
        return ["hf", self.name, self.config, self.split, self.text_field, files]


class _MissingSplit(Exception):
    pass


def _hf_error(what: str, e: BaseException) -> DataError:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return DataError(
        f"cannot load {what}: the Hugging Face hub is unreachable or the dataset is unavailable ({type(e).__name__}: {msg[:200]}); "
        f"use a local corpus instead: {ALTERNATIVES} (a dataset already in your HF cache loads with HF_HUB_OFFLINE=1)"
    )


class SyntheticSource(TextSource):
    def __init__(self, split: str, mb: float | None = None, seed: int = 0):
        self.split, self.mb, self.seed = split, mb, seed
        self.size = int((_synthetic.DEFAULT_MB[split] if mb is None else mb) * 1e6)

    def articles(self) -> Iterator[str]:
        return _synthetic.synthetic_articles(self.split, seed=self.seed, mb=self.mb)

    def describe(self) -> str:
        return f"synthetic WikiText-layout text [{self.split}, seed {self.seed}, {self.size / 1e6:g} MB]"

    def identity(self) -> object:
        return ["synthetic", _synthetic.GENERATOR_VERSION, self.split, self.seed, self.size]


class Concat(TextSource):
    def __init__(self, parts: list[TextSource]):
        self.parts = parts
        sizes = [p.size for p in parts]
        self.size = None if any(s is None for s in sizes) else sum(sizes)

    def articles(self) -> Iterator[str]:
        for p in self.parts:
            yield from p.articles()

    def describe(self) -> str:
        if len(self.parts) <= 3:
            return " + ".join(p.describe() for p in self.parts)
        return f"{self.parts[0].describe()} + ... + {self.parts[-1].describe()} ({len(self.parts)} files)"

    def identity(self) -> object:
        return [p.identity() for p in self.parts]


# ---------------------------------------------------------------- corpus: three splits


@dataclass
class Corpus:
    """Train / valid / test sources. `holdout` names the splits carved out of `train` (1 article in 50 each)."""

    train: TextSource
    valid: TextSource | None
    test: TextSource | None
    kind: str  # files | hf | synthetic
    description: str
    synthetic: bool = False
    holdout: list[str] = field(default_factory=list)

    def identity(self) -> dict:
        return {
            "kind": self.kind,
            "train": self.train.identity(),
            "valid": self.valid.identity() if self.valid else None,
            "test": self.test.identity() if self.test else None,
            "holdout": self.holdout,
        }

    def sources(self) -> dict:
        out = {"train": self.train.describe()}
        for split in ("valid", "test"):
            src = getattr(self, split)
            out[split] = src.describe() if src else f"held out from train (article i with i % {HOLDOUT_EVERY} == {1 if split == 'valid' else 2})"
        return out

    def articles(self, split: str, max_train_bytes: int | None = None) -> Iterator[str]:
        """Articles of one split. `max_train_bytes` caps the training text (whole articles, at least one);
        held-out splits stop where the capped training text stops."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split in self.holdout or (split == "train" and self.holdout):
            return self._holdout_articles(split, max_train_bytes)
        src = getattr(self, split)
        if split == "train":
            return _cap(src.articles(), max_train_bytes)
        return src.articles()

    def _holdout_articles(self, split: str, max_train_bytes: int | None) -> Iterator[str]:
        roles = {1: "valid", 2: "test"}
        used = 0
        first = True
        for i, text in enumerate(self.train.articles()):
            role = roles.get(i % HOLDOUT_EVERY, "train")
            if role not in self.holdout:
                role = "train"
            if role == "train":
                n = nbytes(text)
                if max_train_bytes is not None and used + n > max_train_bytes and not first:
                    return
                used += n
                first = False
            if role == split:
                yield text


def _cap(articles: Iterator[str], max_bytes: int | None) -> Iterator[str]:
    if max_bytes is None:
        yield from articles
        return
    used = 0
    for text in articles:
        n = nbytes(text)
        if used and used + n > max_bytes:
            return
        used += n
        yield text
        if used >= max_bytes:
            return


# ---------------------------------------------------------------- resolution


def _split_of(rel: Path) -> str:
    tokens = [t for t in re.split(r"[/\\._\-\s]+", str(rel).lower()) if t]
    if any(t in ("valid", "validation", "val", "dev") or t.startswith("valid") for t in tokens):
        return "valid"
    if any(t == "test" or t.startswith("test") for t in tokens):
        return "test"
    return "train"


def _supported(path: Path) -> bool:
    return base_suffix(path) in TEXT_SUFFIXES + ROW_SUFFIXES


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def file_source(path: Path, text_field: str, documents: str = "wikitext") -> TextSource:
    suf = base_suffix(path)
    if suf == ".jsonl":
        return JsonlFile(path, text_field)
    if suf == ".parquet":
        if compression(path):
            raise DataError(f"{path}: compressed parquet files are not supported; parquet is compressed internally, give the .parquet file")
        return ParquetFile(path, text_field)
    return WikiTextFile(path, documents)


def _dir_files(root: Path) -> list[Path]:
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if _supported(p):
            files.append(p)
    return sorted(files, key=lambda p: _natural_key(p.relative_to(root)))


def path_source(spec: str, text_field: str, what: str, documents: str = "wikitext") -> TextSource:
    """A file or a directory (all supported files in it) given for valid/test."""
    if spec.startswith("hf:"):
        name, config, split = _parse_hf(spec, default_split="validation" if what == "valid" else "test")
        return HFSplit(name, config, split, text_field)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"data.{what} '{spec}' does not exist; give an existing file or directory, or leave data.{what} unset")
    if path.is_dir():
        files = _dir_files(path)
        if not files:
            raise DataError(f"data.{what} directory '{spec}' holds no .raw/.txt/.tokens/.jsonl/.parquet files (also .xz/.gz)")
        srcs = [file_source(p, text_field, documents) for p in files]
        return Concat(srcs) if len(srcs) > 1 else srcs[0]
    return file_source(path, text_field, documents)


def _parse_hf(spec: str, default_split: str | None = None) -> tuple[str, str | None, str | None]:
    parts = spec[3:].split(":")
    if not parts[0]:
        raise DataError(f"'{spec}' names no dataset; write hf:NAME[:CONFIG], e.g. hf:wikitext:wikitext-103-raw-v1")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else default_split
    return name, config, split


def hub_reachable(timeout: float = 2.0) -> bool:
    """Quick check that huggingface.co answers (DNS included), honouring HF_HUB_OFFLINE / HF_DATASETS_OFFLINE."""
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = re.sub(r"^\w+://", "", endpoint).split("/")[0]
    hostname, _, port = host.partition(":")
    ok = []

    def probe():
        try:
            with socket.create_connection((hostname, int(port or 443)), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def _hf_corpus(spec: str, data_cfg, check_hub: bool = True, data_files=None) -> Corpus:
    name, config, split = _parse_hf(spec)
    if split is not None:
        raise DataError(f"data.corpus '{spec}': give hf:NAME[:CONFIG] (the splits are found automatically)")
    offline_ok = any(os.environ.get(v, "").lower() in ("1", "true") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if check_hub and data_files is None and not offline_ok and not hub_reachable():
        raise DataError(
            f"cannot load {spec}: the Hugging Face hub is unreachable (offline?); use a local corpus instead: {ALTERNATIVES} "
            "(a dataset already in your HF cache loads with HF_HUB_OFFLINE=1)"
        )
    tf = data_cfg.text_field
    train = HFSplit(name, config, "train", tf, data_files)
    train.load()  # fail now, with one line, rather than after minutes
    found = {}
    for split, candidates in (("valid", ("validation", "valid", "dev")), ("test", ("test",))):
        given = getattr(data_cfg, split)
        if given:
            found[split] = path_source(given, tf, split, data_cfg.documents)
            continue
        for cand in candidates:
            src = HFSplit(name, config, cand, tf, data_files)
            try:
                src.load()
            except _MissingSplit:
                continue
            found[split] = src
            break
    holdout = [s for s in ("valid", "test") if s not in found]
    return Corpus(
        train=train,
        valid=found.get("valid"),
        test=found.get("test"),
        kind="hf",
        description=spec,
        holdout=holdout,
    )


def _synthetic_corpus(spec: str = "synthetic") -> Corpus:
    mb = None
    if ":" in spec:
        try:
            mb = float(spec.split(":", 1)[1])
        except ValueError:
            raise DataError(f"data.corpus '{spec}': write synthetic or synthetic:MB (MB of training text, e.g. synthetic:2)") from None
        if mb <= 0:
            raise DataError(f"data.corpus '{spec}': the size must be > 0 MB")
    return Corpus(
        train=SyntheticSource("train", mb),
        valid=SyntheticSource("valid"),
        test=SyntheticSource("test"),
        kind="synthetic",
        description="synthetic" if mb is None else f"synthetic:{mb:g}",
        synthetic=True,
    )


def _files_corpus(spec: str, data_cfg) -> Corpus:
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"corpus path '{spec}' does not exist; give an existing file or directory ({ALTERNATIVES})")
    tf = data_cfg.text_field
    by_split: dict[str, list[Path]] = {s: [] for s in SPLITS}
    if path.is_dir():
        files = _dir_files(path)
        if not files:
            raise DataError(
                f"corpus directory '{spec}' is empty: it holds no .raw/.txt/.tokens/.jsonl/.parquet files (also .xz/.gz/.bz2)"
            )
        for p in files:
            by_split[_split_of(p.relative_to(path))].append(p)
        if not by_split["train"]:
            raise DataError(
                f"corpus directory '{spec}' has no training files, only validation/test ones "
                f"({', '.join(p.name for p in files[:4])}); training files are those without 'valid'/'test' in their name"
            )
    else:
        if path.stat().st_size == 0:
            raise DataError(f"corpus file '{spec}' is empty (0 bytes); give a file with WikiText articles")
        by_split["train"] = [path]
    sources: dict[str, TextSource | None] = {}
    for split in SPLITS:
        given = getattr(data_cfg, split, None) if split != "train" else None
        if given:
            sources[split] = path_source(given, tf, split, data_cfg.documents)
        elif by_split[split]:
            srcs = [file_source(p, tf, data_cfg.documents) for p in by_split[split]]
            sources[split] = srcs[0] if len(srcs) == 1 else Concat(srcs)
        else:
            sources[split] = None
    holdout = [s for s in ("valid", "test") if sources[s] is None]
    return Corpus(
        train=sources["train"],
        valid=sources["valid"],
        test=sources["test"],
        kind="files",
        description=str(path.resolve()),
        holdout=holdout,
    )


def repo_root() -> Path | None:
    """The checkout this package lives in (the directory with pyproject.toml above src/), if any."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src").is_dir():
            return parent
    return None


def default_corpus_candidates() -> list[Path]:
    """Where the project's test corpus may be: ../shared/corpus from the working directory and from the repo root."""
    out = [Path.cwd() / ".." / "shared" / "corpus"]
    root = repo_root()
    if root is not None:
        out.append(root.parent / "shared" / "corpus")
    return out


def _has_corpus_files(path: Path) -> bool:
    try:
        return path.is_dir() and any(_split_of(p.relative_to(path)) == "train" for p in _dir_files(path))
    except OSError:
        return False


def default_corpus_spec() -> tuple[str, str]:
    """(spec, why) for data.corpus = None: env var, then ../shared/corpus, then HF wikitext-103 if reachable,
    else the synthetic generator."""
    env = os.environ.get("BOOTDISTILL_CORPUS")
    if env:
        return env, "from BOOTDISTILL_CORPUS"
    for cand in default_corpus_candidates():
        if _has_corpus_files(cand):
            return str(cand.resolve()), "the project's shared corpus"
    if hub_reachable():
        return f"hf:{HF_DEFAULT[0]}:{HF_DEFAULT[1]}", "Hugging Face hub (no local corpus found)"
    return "synthetic", "no corpus found and the Hugging Face hub is unreachable"


def resolve_corpus(data_cfg, log=None) -> Corpus:
    """DataConfig -> Corpus. Raises DataError for missing/empty paths or an unreachable hub."""
    spec = data_cfg.corpus
    why = None
    if spec is None or str(spec).strip() == "":
        spec, why = default_corpus_spec()
        if log is not None:
            log(f"data.corpus not set: using {spec} ({why})")
    spec = str(spec)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        corpus = _synthetic_corpus(spec)
        for split in ("valid", "test"):
            given = getattr(data_cfg, split)
            if given:
                setattr(corpus, split, path_source(given, data_cfg.text_field, split, data_cfg.documents))
        return corpus
    if spec.startswith("hf:"):
        return _hf_corpus(spec, data_cfg)
    return _files_corpus(spec, data_cfg)


def warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
