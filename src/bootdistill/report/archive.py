"""`bootdistill archive`: keep a finished run's results without its checkpoints and snapshots.

An archive is a run directory that holds what the report reads (config, summary, metrics, the cached
whole-split losses and diagnostics) plus `archive.json`, which lists the evaluation snapshots the run had.
Reports read it like the run itself, as long as every whole-split loss they need was cached before
archiving (run `bootdistill report` on each split first). With --weights the final checkpoint's weights
come along, so a teacher can still teach: a search can then be spread over machines or sessions that do
not share run directories (scripts/where_it_pays.sh does that).
"""

from __future__ import annotations

import datetime
import filecmp
import json
import shutil
from pathlib import Path

from ..errors import BootdistillError
from ..fsutil import atomic_dir
from ..runtime.checkpoint import checkpoint_dirs, read_meta
from .runs import is_run_dir

MARKER = "archive.json"
SNAPSHOT_PREFIX = "step_"
RESULT_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "history.jsonl", "prediction.json", "tune.json",
                "selection.json", "selection.npz", "evals/diagnostics.json")


def read_marker(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def archived_snapshot_steps(run_dir: Path) -> list[int]:
    return [int(s) for s in read_marker(run_dir).get("snapshot_steps", [])]


def snapshot_steps(run_dir: Path) -> list[int]:
    """Steps with an evaluation snapshot (RUN/evals/step_N.safetensors): on disk, or listed by an archive."""
    on_disk = {int(p.stem[len(SNAPSHOT_PREFIX):]) for p in (Path(run_dir) / "evals").glob(f"{SNAPSHOT_PREFIX}*.safetensors")}
    return sorted(on_disk | set(archived_snapshot_steps(run_dir)))


def final_checkpoint_name(run_dir: Path) -> str | None:
    """The name of the run's last checkpoint (step_*), from disk or, for an archive, as it was archived."""
    found = checkpoint_dirs(Path(run_dir))
    return found[-1].name if found else read_marker(run_dir).get("final_checkpoint")


def _merged_losses(old: Path, new: Path) -> dict:
    out: dict = {}
    for f in (old, new):  # the run's own cache last: it wins where both hold a value
        try:
            for key, losses in json.loads(f.read_text()).items():
                out.setdefault(key, {}).update(losses)
        except (OSError, json.JSONDecodeError, AttributeError):
            pass
    return out


def _files(root: Path) -> dict[str, Path]:
    return {str(f.relative_to(root)): f for f in root.rglob("*") if f.is_file() and f.name != MARKER}


def _unchanged(new: Path, old: Path, old_marker: dict, marker: dict) -> bool:
    """Whether the archive just built in `new` holds what `old` already held (its marker's time aside)."""
    if {k: v for k, v in old_marker.items() if k != "archived"} != {k: v for k, v in marker.items() if k != "archived"}:
        return False
    a, b = _files(new), _files(old)
    return a.keys() == b.keys() and all(filecmp.cmp(a[k], b[k], shallow=False) for k in a)


def archive_run(run_dir: Path | str, to: Path | str, weights: bool = False) -> Path:
    """Write the archive of one finished run to `to`/<run name>, replacing an older archive of it in one rename.
    Archiving an unchanged run again leaves every byte of its archive as it was."""
    src = Path(run_dir).resolve()
    if not (src / "summary.json").is_file():
        raise BootdistillError(f"'{run_dir}' is not a finished run (no summary.json): archive it after training ends")
    dest = Path(to) / src.name
    if dest.resolve() == src:
        raise BootdistillError(f"'{run_dir}' is already in '{to}': archive it to another directory")
    if dest.exists() and not (dest / MARKER).is_file():
        raise BootdistillError(f"'{dest}' exists and is not an archive: choose another --to directory (nothing was written)")
    marker = {
        "source": str(src), "archived": datetime.datetime.now().isoformat(timespec="seconds"),
        "snapshot_steps": snapshot_steps(src), "final_checkpoint": final_checkpoint_name(src), "weights": False,
    }
    with atomic_dir(dest) as tmp:
        for name in RESULT_FILES:
            if (src / name).is_file():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / name, tmp / name)
        for cache in sorted({p.name for p in (src / "evals").glob("full_*.json")} |
                            {p.name for p in (dest / "evals").glob("full_*.json")}):
            (tmp / "evals").mkdir(exist_ok=True)
            (tmp / "evals" / cache).write_text(json.dumps(
                _merged_losses(dest / "evals" / cache, src / "evals" / cache), indent=2, sort_keys=True) + "\n")
        if weights:
            found = checkpoint_dirs(src)
            if not found:
                raise BootdistillError(f"'{run_dir}' has no checkpoint left to take the weights from: drop --weights")
            meta = read_meta(found[-1])
            ckpt = tmp / "checkpoints" / found[-1].name
            ckpt.mkdir(parents=True)
            shutil.copy2(found[-1] / "model.safetensors", ckpt / "model.safetensors")
            digest = meta.get("files", {}).get("model.safetensors")
            # weights only: the optimizer state stays behind, so this checkpoint can teach but not resume
            (ckpt / "meta.json").write_text(json.dumps(
                {**meta, "files": {"model.safetensors": digest} if digest else {}, "weights_only": True}, indent=2))
            marker["weights"] = True
        elif read_marker(dest).get("weights") and (dest / "checkpoints").is_dir():  # kept from an earlier --weights
            shutil.copytree(dest / "checkpoints", tmp / "checkpoints")
            marker["weights"] = True
        old_marker = read_marker(dest)
        if _unchanged(tmp, dest, old_marker, marker):  # nothing new: keep the old time, so a committed archive stays clean
            marker["archived"] = old_marker["archived"]
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return dest


def cmd_archive(args) -> int:
    dirs = []
    for item in args.runs:
        p = Path(item)
        if not p.is_dir():
            raise BootdistillError(f"'{item}' is not a directory: give run directories or a directory holding them")
        dirs += [p] if is_run_dir(p) else sorted(q for q in p.iterdir() if q.is_dir() and is_run_dir(q))
    finished = [d for d in dirs if (d / "summary.json").is_file()]
    if not finished:
        raise BootdistillError(f"no finished run in {', '.join(args.runs)}: archive runs after training ends")
    for d in finished:
        dest = archive_run(d, args.to, weights=args.weights)
        print(f"archived {d} -> {dest}{' (with its final weights)' if args.weights else ''}")
    for d in sorted(set(dirs) - set(finished)):
        print(f"skipped {d}: not finished")
    return 0


def add_subcommand(subparsers) -> None:
    p = subparsers.add_parser(
        "archive", help="keep finished runs' results (and optionally final weights) without checkpoints, for later reports",
        description="Copy what `bootdistill report` reads from finished runs (config, summary, metrics, cached "
                    "whole-split losses and diagnostics) into DIR/<run name>. Report every split you will need first: "
                    "a report of an archive cannot evaluate a snapshot it no longer has.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or a directory holding them")
    p.add_argument("--to", required=True, metavar="DIR", help="where the archives go (an older archive of a run is updated)")
    p.add_argument("--weights", action="store_true",
                   help="also keep the final checkpoint's weights (not its optimizer state): enough to serve as a teacher")
    p.set_defaults(func=cmd_archive)
