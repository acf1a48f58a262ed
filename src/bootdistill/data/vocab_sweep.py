"""The paper's Figure 1: token-to-word ratio of held-out text against the BPE vocabulary size.

One tokenizer is trained at the largest size on a sample of the training text (`sample_mb`, whole articles from
the start); each smaller size is its prefix (`truncate_tokenizer`: BPE is greedy, so a smaller run's merges are a
prefix of a larger run's). Words are the whitespace-separated words of the held-out text (validation split by
default), which is how WikiText counts words; tokens are BPE tokens without [SEP].
"""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

from ..errors import DataError
from .sources import resolve_corpus
from .synthetic import SYNTHETIC_WARNING
from .tokenizer import truncate_tokenizer, train_tokenizer

DEFAULT_SIZES = (500, 1000, 2000, 3000, 4000, 5000, 6000, 8000, 12000, 16000, 24000, 32000)
EMBED_DIMS = (128, 256, 384, 512)  # Table 1's model widths, for the embedding-parameter columns (eq. 3: V * d)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def vocab_sweep(
    data_cfg,
    sizes=DEFAULT_SIZES,
    sample_mb: float = 20.0,
    out_dir: str | Path = "runs/vocab_sweep",
    heldout: str = "valid",
    heldout_mb: float | None = None,
    plot: bool = True,
) -> list[dict]:
    """Run the sweep; writes vocab_sweep.csv (and vocab_sweep.png) into `out_dir` and returns the rows."""
    sizes = sorted({int(s) for s in sizes})
    if not sizes:
        raise DataError("give at least one vocabulary size, e.g. --sizes 500,1000,5000")
    bad = [s for s in sizes if not 260 <= s <= 65535]
    if bad:
        raise DataError(f"vocabulary sizes must be in [260, 65535] (256 bytes + 4 special tokens, uint16), got {bad}")
    if not (math.isfinite(sample_mb) and sample_mb > 0):  # nan and inf pass a plain > 0
        raise DataError(f"--sample-mb must be a finite number of MB > 0, e.g. 20; got {sample_mb}")
    if heldout not in ("valid", "test"):
        raise DataError(f"held-out split must be valid or test, got '{heldout}'")
    corpus = resolve_corpus(data_cfg, log=_log)
    if corpus.synthetic:
        _log(SYNTHETIC_WARNING)
    t0 = time.time()
    sample_bytes = int(sample_mb * 1e6)
    tok = train_tokenizer(corpus.articles("train", sample_bytes), max(sizes))
    _log(f"trained BPE ({tok.get_vocab_size()} tokens) on {sample_mb:g} MB of training text in {time.time() - t0:.1f} s")

    texts = []
    used = 0
    cap = None if heldout_mb is None else int(heldout_mb * 1e6)
    for text in corpus.articles(heldout, sample_bytes):
        texts.append(text)
        used += len(text.encode("utf-8"))
        if cap is not None and used >= cap:
            break
    words = sum(len(t.split()) for t in texts)
    if words == 0:
        raise DataError(f"the held-out ({heldout}) text has no words")

    rows = []
    for size in sizes:
        t = tok if size >= tok.get_vocab_size() else truncate_tokenizer(tok, size)
        n_tokens = sum(len(e.ids) for e in t.encode_batch_fast(texts, add_special_tokens=False))
        row = {
            "vocab_size": size,
            "vocab_size_actual": t.get_vocab_size(),
            "heldout_tokens": n_tokens,
            "heldout_words": words,
            "tokens_per_word": round(n_tokens / words, 5),
        }
        for d in EMBED_DIMS:
            row[f"embedding_params_d{d}"] = size * d
        rows.append(row)
        _log(f"vocab {size:>6}: {n_tokens / words:.4f} tokens/word")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "vocab_sweep.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if plot:
        _plot(rows, out_dir / "vocab_sweep.png", corpus.description, sample_mb, heldout, corpus.synthetic)
    _log(f"wrote {csv_path}" + (f" and {out_dir / 'vocab_sweep.png'}" if plot else ""))
    return rows


def _plot(rows, path: Path, source: str, sample_mb: float, heldout: str, synthetic: bool) -> None:
    import matplotlib  # 1.4 s: only when the sweep's plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["vocab_size"] for r in rows]
    ys = [r["tokens_per_word"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(xs, ys, "o-", color="tab:blue")
    ax.set_xscale("log")
    ax.axvline(5000, color="gray", ls="--", lw=1)
    ax.text(5000, max(ys), " 5k (paper)", color="gray", va="top")
    ax.set_xlabel("vocabulary size")
    ax.set_ylabel(f"tokens per word ({heldout} text)")
    name = "/".join(Path(source).parts[-2:]) if not source.startswith(("hf:", "synthetic")) else source
    title = f"Token-to-word ratio vs vocabulary size\n{name}, BPE trained on {sample_mb:g} MB"
    if synthetic:
        title += " (SYNTHETIC TEXT)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
