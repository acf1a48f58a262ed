"""The KD step and training throughput of two git revisions, side by side on one machine.

Each revision is checked out once into a `git worktree` (under --worktrees), and each revision's own two
benchmarks (`bench_kd_step.py`, `bench_train.py`, whose options and output both sides share) run on its own
`src/` in alternating order, round after round, so a drifting or shared CPU moves both sides alike. Printed: per round and as medians, the
classical step, the KD step, KD / classical against the ideal FLOP ratio, and bf16 training tokens/s; then
the new/old ratios. Nothing is trained for real; run it alone on the machine.

    python benchmarks/compare_revisions.py OLD [NEW] [--rounds 3] [--threads 1,2]   # NEW: the working tree
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def checkout(rev: str | None, worktrees: Path) -> Path:
    """The tree of revision `rev` (a worktree made once), or this checkout for None."""
    if rev is None:
        return REPO
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        sys.exit(f"error: '{rev}' is not a commit of this repository: give a commit, tag or branch")
    sha = found.stdout.strip()
    tree = worktrees / sha[:12]
    if not (tree / "src").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), sha], check=True,
                       capture_output=True)
    return tree


def bench(script: str, tree: Path, args: list[str], corpus: str, prepared: Path) -> dict | list:
    """Run one benchmark of `tree` on its own package; its --json result. Both sides read the same corpus
    (a worktree has no ../shared beside it) and keep their own prepared data (the two may key it differently)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        subprocess.run([sys.executable, str(tree / "benchmarks" / script), *args, "--corpus", corpus,
                        "--prepared", str(prepared / script), "--json", out.name], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        return json.loads(Path(out.name).read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", help="the revision to compare against (a commit, tag or branch)")
    ap.add_argument("new", nargs="?", default=None, help="default: this working tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--train-args", default="--quick --dtypes bf16 --presets 5M",
                    help="bench_train.py's options (one preset and one variant)")
    ap.add_argument("--skip-kd", action="store_true", help="training throughput only")
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus"))
    ap.add_argument("--worktrees", default=str(Path(tempfile.gettempdir()) / "bootdistill-revisions"))
    args = ap.parse_args()
    if args.rounds < 1:
        sys.exit("error: --rounds must be at least 1")
    if not Path(args.corpus).is_dir():
        sys.exit(f"error: corpus {args.corpus} is not a directory: give --corpus (WikiText-raw layout)")
    worktrees = Path(args.worktrees)
    worktrees.mkdir(parents=True, exist_ok=True)
    sides = {"old": checkout(args.old, worktrees), "new": checkout(args.new, worktrees)}
    rows: dict[tuple[str, str], list[dict]] = {}
    for threads in args.threads.split(","):
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for side in order:
                common = (args.corpus, worktrees / f"prepared-{side}")
                row = {}
                if not args.skip_kd:
                    kd = bench("bench_kd_step.py", sides[side], ["--threads", threads, "--no-memory"], *common)["wall"]
                    row = {"classical_ms": kd["classical_ms"], "kd_ms": kd["kd_ms"], "x_ideal": kd["ratio_vs_ideal"]}
                tr = bench("bench_train.py", sides[side], [*args.train_args.split(), "--threads", threads], *common)[0]
                row.update(train_tok_s=tr["tokens_per_s"], mfu=tr["mfu"])
                rows.setdefault((threads, side), []).append(row)
                print(f"threads {threads} round {r + 1} {side}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()),
                      flush=True)
    print(f"\nmedians over {args.rounds} rounds (old {args.old}, new {args.new or 'working tree'})")
    for (threads, side), rs in rows.items():
        print(f"threads {threads} {side}: " + ", ".join(f"{k} {statistics.median(r[k] for r in rs):.3f}" for k in rs[0]))
    for threads in args.threads.split(","):
        old, new = rows[(threads, "old")], rows[(threads, "new")]
        ratio = {k: statistics.median(n[k] / o[k] for n, o in zip(new, old)) for k in old[0]}
        print(f"threads {threads}, new / old (median of per-round ratios): "
              + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
