"""Text files as the corpus reader sees them: WikiText's layout (articles start at ` = Title = ` lines), plain
text (documents separated by blank lines, or the whole file as one), and opening plain, xz, gzip or bz2 text, with
decoding problems turned into one-line DataErrors."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import DataError

COMPRESSED = {".xz": "xz", ".gz": "gzip", ".bz2": "bz2"}
MAX_ARTICLE_BYTES = 64_000_000  # one "article" longer than this means the text is not in WikiText layout


def nbytes(text: str) -> int:
    """UTF-8 size of `text` without encoding it when it is ASCII."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# ---------------------------------------------------------------- WikiText layout


def is_title_line(line: str) -> bool:
    """True for ` = Title = ` (one `=` each side), False for ` = = Section = = ` and everything else."""
    s = line.strip()
    return len(s) >= 5 and s[0] == "=" and s[1] == " " and s[-1] == "=" and s[-2] == " " and s[2] != "=" and s[-3] != "="


def split_wikitext(lines: Iterable[str], where: str) -> Iterator[str]:
    """Group WikiText lines (each ending in '\\n') into articles, each starting at its title line.

    Text before the first title (other than blank lines) becomes an article of its own. Raises DataError when the
    text is empty or holds no title line at all.
    """
    buf: list[str] = []
    size = 0
    seen_title = False
    seen_text = False
    for line in lines:
        if line[:3] == " = " or line[:2] == "= ":
            if is_title_line(line):
                if buf and (seen_title or any(b.strip() for b in buf)):
                    yield "".join(buf)
                buf, size, seen_title, seen_text = [], 0, True, True
        if not seen_text and line.strip():
            seen_text = True
        buf.append(line)
        size += len(line)
        if size > MAX_ARTICLE_BYTES:
            raise DataError(
                f"{where}: more than {MAX_ARTICLE_BYTES // 1_000_000} MB without a ' = Title = ' line; WikiText layout "
                f"needs a title line per article ({PLAIN_TEXT_HINT})"
            )
    if not seen_text:
        raise DataError(f"{where} is empty: it holds no text; give a corpus with WikiText articles (' = Title = ' lines)")
    if not seen_title:
        raise DataError(
            f"{where} has text but no articles: no ' = Title = ' line (one '=' each side) was found; WikiText layout "
            f"starts every article with one ({PLAIN_TEXT_HINT})"
        )
    if buf:
        yield "".join(buf)


PLAIN_TEXT_HINT = ("for plain text set data.documents=blank_lines (documents end at blank lines) or data.documents=file "
                   "(one document per file); for one-document-per-row text use .jsonl or .parquet")


def split_documents(lines: Iterable[str], where: str, documents: str) -> Iterator[str]:
    """Articles of a text file by `data.documents`: wikitext (` = Title = ` lines), blank_lines (a run of blank
    lines ends a document; the blank lines themselves belong to none), file (the whole text, one document)."""
    if documents == "wikitext":
        yield from split_wikitext(lines, where)
        return
    buf: list[str] = []
    seen = False
    for line in lines:
        if documents == "blank_lines" and not line.strip():
            if buf:
                yield "".join(buf)
                seen, buf = True, []
            continue
        buf.append(line)
    if documents == "file" and not any(b.strip() for b in buf):
        buf = []
    if buf:
        yield "".join(buf)
    elif not seen:
        raise DataError(f"{where} is empty: it holds no text")


# ---------------------------------------------------------------- opening files


def compression(path: Path) -> str | None:
    return COMPRESSED.get(path.suffix.lower())


def base_suffix(path: Path) -> str:
    """The suffix that says the format, under any compression suffix: a.raw.xz -> .raw."""
    name = path.name.lower()
    for suf in COMPRESSED:
        if name.endswith(suf):
            name = name[: -len(suf)]
            break
    return Path(name).suffix


def _read_error(path: Path, e: BaseException) -> DataError:
    comp = compression(path)
    if isinstance(e, UnicodeDecodeError):
        return DataError(f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start} of a chunk); convert it to UTF-8")
    if comp:
        return DataError(
            f"cannot read {path}: corrupt or truncated {comp} file ({type(e).__name__}: {e}); "
            f"re-download or re-compress it, or remove it from the corpus"
        )
    return DataError(f"cannot read {path}: {type(e).__name__}: {e}")


_DECODE_ERRORS = (lzma.LZMAError, EOFError, gzip.BadGzipFile, zlib.error, OSError, UnicodeDecodeError)


def open_text(path: Path) -> io.TextIOBase:
    comp = compression(path)
    try:
        if comp == "xz":
            return lzma.open(path, "rt", encoding="utf-8")
        if comp == "gzip":
            return gzip.open(path, "rt", encoding="utf-8")
        if comp == "bz2":
            return bz2.open(path, "rt", encoding="utf-8")
        return open(path, encoding="utf-8")
    except _DECODE_ERRORS as e:
        raise _read_error(path, e) from None


def guarded_lines(path: Path) -> Iterator[str]:
    """Lines of a (possibly compressed) text file; decoding problems become one-line DataErrors."""
    f = open_text(path)
    try:
        while True:
            try:
                chunk = f.readlines(1 << 20)
            except _DECODE_ERRORS as e:
                raise _read_error(path, e) from None
            if not chunk:
                return
            yield from chunk
    finally:
        f.close()


def uncompressed_size(path: Path) -> int | None:
    """Uncompressed size of a text file, read from the xz index / gzip trailer without decompressing; None if unknown."""
    comp = compression(path)
    try:
        if comp is None:
            return path.stat().st_size
        if comp == "gzip":
            with open(path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                return int.from_bytes(f.read(4), "little")  # modulo 2**32: fine for progress bars
        if comp == "xz":
            return _xz_uncompressed_size(path)
    except (OSError, ValueError):
        return None
    return None


def _xz_uncompressed_size(path: Path) -> int | None:
    """Sum of the uncompressed sizes recorded in the index of a single-stream .xz file."""

    def varint(buf: bytes, pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            b = buf[pos]
            value |= (b & 0x7F) << shift
            pos += 1
            if not b & 0x80:
                return value, pos
            shift += 7

    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if end < 32:
            return None
        f.seek(end - 12)
        footer = f.read(12)
        if footer[10:12] != b"YZ":
            return None
        index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
        f.seek(end - 12 - index_size)
        index = f.read(index_size)
    if not index or index[0] != 0:
        return None
    count, pos = varint(index, 1)
    total = 0
    for _ in range(count):
        _, pos = varint(index, pos)  # unpadded size
        size, pos = varint(index, pos)
        total += size
    return total
