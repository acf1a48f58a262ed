"""Data-preparation benchmark: pipeline throughput vs raw `tokenizers` encoding, and peak memory vs corpus size.

1. Throughput. The first --throughput-mb MB of training articles are written to an uncompressed .raw file and a
   5k BPE tokenizer is trained on them. Then, interleaved --repeats times:
     pipeline           bootdistill's tokenize pass: read the file, split articles at ' = Title = ' lines, batch,
                        encode_batch_fast, append [SEP], convert to uint16, write train.bin (fsync)
     encode_batch       raw tokenizers on the same articles already in memory, same batches, nothing written
     encode_batch_fast  the same with encode_batch_fast (what the pipeline calls)
   and the ratios of the median MB/s are printed (target: pipeline >= 0.9x encode_batch).
2. Memory. For each --rss-mb size, a fresh subprocess runs the whole `prepare()` (tokenizer training + all three
   splits) on the corpus with data.max_train_mb=SIZE and reports its peak RSS (resource.getrusage ru_maxrss) and
   its RSS right after imports; flat memory means the peak does not grow with the corpus size.

    . .venv/bin/activate && python benchmarks/bench_prepare.py                  # 10 MB throughput, RSS at 5 and 40 MB
    python benchmarks/bench_prepare.py --throughput-mb 20 --rss-mb 5,40,373     # 373 = the whole shared corpus
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_now_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child_encode(size_mb: float, corpus: str, out: str, tokenizer: str) -> None:
    """Only the tokenize-and-write pass over the training text, with a ready tokenizer; print its peak RSS."""
    from bootdistill.config import DataConfig
    from bootdistill.data import resolve_corpus
    from bootdistill.data.prepare import _encode_split
    from bootdistill.data.tokenizer import load_tokenizer

    base = _rss_now_kb()
    tok = load_tokenizer(tokenizer)
    c = resolve_corpus(DataConfig(corpus=corpus))
    t0 = time.perf_counter()
    info = _encode_split(tok, c.articles("train", int(size_mb * 1e6)), Path(out), None, 1 << 20)
    print(json.dumps({
        "size_mb": size_mb,
        "train_mb": info["bytes"] / 1e6,
        "seconds": time.perf_counter() - t0,
        "rss_after_imports_mb": base / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def child(size_mb: float, corpus: str, out: str, vocab: int) -> None:
    """Run one whole prepare() and print its peak RSS as JSON (called in a fresh subprocess per size)."""
    from bootdistill.config import DataConfig
    from bootdistill.data import load_meta, prepare

    base = _rss_now_kb()
    t0 = time.perf_counter()
    path = prepare(DataConfig(corpus=corpus, vocab_size=vocab, max_train_mb=size_mb, prepared_dir=out), progress=False)
    seconds = time.perf_counter() - t0
    meta = load_meta(path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "size_mb": size_mb,
        "train_mb": meta["splits"]["train"]["bytes"] / 1e6,
        "train_tokens": meta["splits"]["train"]["tokens"],
        "seconds": seconds,
        "rss_after_imports_mb": base / 1024,
        "peak_rss_mb": peak / 1024,
    }))


def throughput(corpus: str, mb: float, repeats: int, vocab: int, tmp: Path) -> dict:
    import numpy as np

    from bootdistill.config import DataConfig
    from bootdistill.data import resolve_corpus
    from bootdistill.data.prepare import _encode_split
    from bootdistill.data.sources import WikiTextFile
    from bootdistill.data.tokenizer import train_tokenizer

    c = resolve_corpus(DataConfig(corpus=corpus))
    raw = tmp / "train.raw"
    with open(raw, "w", encoding="utf-8") as f:
        for text in c.articles("train", int(mb * 1e6)):
            f.write(text)
    articles = list(WikiTextFile(raw).articles())
    n_bytes = sum(len(a.encode("utf-8")) for a in articles)
    tok = train_tokenizer(iter(articles), vocab)
    batches, cur, size = [], [], 0  # the pipeline's batching: about 1 MB of text per call
    for a in articles:
        cur.append(a)
        size += len(a.encode("utf-8"))
        if size >= 1 << 20 or len(cur) >= 512:
            batches.append(cur)
            cur, size = [], 0
    if cur:
        batches.append(cur)

    def pipeline():
        return _encode_split(tok, WikiTextFile(raw).articles(), tmp / "train.bin", None, 1 << 20)["tokens"]

    def raw_encode(fast: bool):
        fn = tok.encode_batch_fast if fast else tok.encode_batch
        n = 0
        for b in batches:
            n += sum(len(e.ids) for e in fn(b, add_special_tokens=False))
        return n

    names = ("pipeline", "encode_batch", "encode_batch_fast")
    runs = {k: [] for k in names}  # MB per wall-clock second
    cpu = {k: [] for k in names}  # MB per CPU second (all threads): the work itself, less sensitive to other load
    tokens = {}
    for _ in range(repeats):  # interleaved, so load from other processes hits all three alike
        for name, fn in zip(names, (pipeline, lambda: raw_encode(False), lambda: raw_encode(True))):
            t0, c0 = time.perf_counter(), time.process_time()
            tokens[name] = fn()
            runs[name].append(n_bytes / 1e6 / (time.perf_counter() - t0))
            cpu[name].append(n_bytes / 1e6 / (time.process_time() - c0))
    stream = np.memmap(tmp / "train.bin", dtype=np.uint16, mode="r")
    assert tokens["pipeline"] == len(stream) == tokens["encode_batch"] + len(articles), "token counts differ"
    med = {k: statistics.median(v) for k, v in runs.items()}
    best = {k: max(v) for k, v in runs.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "mb": n_bytes / 1e6,
        "articles": len(articles),
        "tokens": tokens["encode_batch"],
        "runs_mb_s": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "median_mb_s": {k: round(v, 2) for k, v in med.items()},
        "best_mb_s": {k: round(v, 2) for k, v in best.items()},
        "cpu_mb_s": {k: round(v, 2) for k, v in cpu_med.items()},
        "ratio": {
            base: {
                "median": round(med["pipeline"] / med[base], 3),
                "best": round(best["pipeline"] / best[base], 3),
                "cpu": round(cpu_med["pipeline"] / cpu_med[base], 3),
            }
            for base in ("encode_batch", "encode_batch_fast")
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=None, help="corpus (default: the default resolution, i.e. ../shared/corpus here)")
    ap.add_argument("--throughput-mb", type=float, default=10.0, help="MB of training text for the throughput test")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each throughput measurement")
    ap.add_argument("--rss-mb", default="5,40", help="comma-separated max_train_mb sizes for the peak-RSS test")
    ap.add_argument("--vocab", type=int, default=5000, help="vocabulary size")
    ap.add_argument("--skip-throughput", action="store_true", help="only run the memory test")
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tokenizer", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    from bootdistill.data.sources import default_corpus_spec

    corpus = args.corpus or default_corpus_spec()[0]
    if args.child is not None:
        if args.tokenizer:
            child_encode(args.child, corpus, args.out, args.tokenizer)
        else:
            child(args.child, corpus, args.out, args.vocab)
        return 0

    print(f"corpus: {corpus}   cpus: {os.cpu_count()}   load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        if not args.skip_throughput:
            r = throughput(corpus, args.throughput_mb, args.repeats, args.vocab, tmp)
            print(f"\nthroughput on {r['mb']:.1f} MB ({r['articles']} articles, {r['tokens']:,} tokens), vocab {args.vocab}, MB/s per run:")
            for k, v in r["runs_mb_s"].items():
                print(f"  {k:<18} {' '.join(f'{x:6.2f}' for x in v)}   median {r['median_mb_s'][k]:.2f}  best {r['best_mb_s'][k]:.2f}"
                      f"  per CPU-second {r['cpu_mb_s'][k]:.2f}")
            for base, q in r["ratio"].items():
                target = "  (target >= 0.9x)" if base == "encode_batch" else ""
                print(f"  pipeline / {base:<17}: median {q['median']:.3f}x  best {q['best']:.3f}x  per CPU-second {q['cpu']:.3f}x{target}")
        def run_child(*extra):
            proc = subprocess.run([sys.executable, __file__, "--corpus", corpus, "--vocab", str(args.vocab), *extra], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-2000:])
            return json.loads(proc.stdout.strip().splitlines()[-1])

        sizes = [float(s) for s in args.rss_mb.split(",") if s.strip()]
        whole = [run_child("--child", str(size), "--out", str(tmp / f"p{size:g}")) for size in sizes]
        if sizes:
            tok = str(tmp / f"p{sizes[0]:g}" / "tokenizer.json")  # the same tokenizer for every size
            encode = [run_child("--child", str(size), "--out", str(tmp / "enc.bin"), "--tokenizer", tok) for size in sizes]
            print("\npeak RSS, one fresh subprocess per size and phase:")
            print("  whole prepare() = BPE training + train/val/test token files; tokenize pass = train.bin only, ready tokenizer")
            print(f"  {'max_train_mb':>12} {'train MB':>9} {'tokens':>12} {'prepare s':>9} {'after imports':>13} "
                  f"{'peak: prepare':>13} {'tokenize pass s':>15} {'peak: tokenize pass':>19}")
            for w, e in zip(whole, encode):
                print(f"  {w['size_mb']:>12g} {w['train_mb']:>9.1f} {w['train_tokens']:>12,} {w['seconds']:>9.1f} "
                      f"{w['rss_after_imports_mb']:>10.0f} MB {w['peak_rss_mb']:>10.0f} MB {e['seconds']:>15.1f} {e['peak_rss_mb']:>16.0f} MB")
            if len(sizes) > 1:
                a, b = whole[0], whole[-1]
                print(f"  {b['train_mb'] / a['train_mb']:.1f}x the text: peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f} (whole prepare), "
                      f"x{encode[-1]['peak_rss_mb'] / encode[0]['peak_rss_mb']:.2f} (tokenize pass)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
