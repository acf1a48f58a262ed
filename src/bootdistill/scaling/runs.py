"""Points for the fits: read from run directories or CSV files, or generated from known coefficients.

CSV: a header row, then one row per run. Supervised columns `N,D,L`; distillation columns `N_S,D_S,L_T,L_S`
(other columns are ignored; lines starting with # are comments).
Run directory: `summary.json` (n_params, n_params_non_embedding, tokens, final_val_loss, and `teacher` with
n_params / val_loss / train_flops for distilled runs) and `metrics.jsonl` (evaluation rows carry val_loss).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fsutil import atomic_write_text
from . import laws

COLUMNS = {"supervised": ("N", "D", "L"), "distillation": ("N_S", "D_S", "L_T", "L_S")}


@dataclass
class PointSet:
    """Columns per law, plus where each point came from (for error messages and plots)."""

    supervised: dict = field(default_factory=lambda: {k: [] for k in COLUMNS["supervised"]})
    distillation: dict = field(default_factory=lambda: {k: [] for k in COLUMNS["distillation"]})
    sources: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (run, why) of points left out on purpose
    left_out: list = field(default_factory=list)  # (run, why) of whole runs left out (grid points not chosen)

    def add(self, law: str, values: dict) -> None:
        for k in COLUMNS[law]:
            getattr(self, law)[k].append(values[k])

    def count(self, law: str) -> int:
        return len(getattr(self, law)[COLUMNS[law][0]])

    def arrays(self, law: str) -> list:
        return [np.asarray(getattr(self, law)[k], float) for k in COLUMNS[law]]


def _positive(value, name: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise DataError(f"{where}: {name} must be a positive finite number, got {value!r}; fix or drop that row")
    return v


def read_csv(path, points: PointSet) -> str:
    """Add the rows of one CSV to `points`; returns the law its header names."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not lines:
        raise DataError(f"{path}: empty; expected a header N,D,L or N_S,D_S,L_T,L_S and one row per run")
    rows = list(csv.reader(lines))
    header = [h.strip() for h in rows[0]]
    laws_found = [law for law, cols in COLUMNS.items() if set(cols) <= set(header)]
    if len(laws_found) != 1:
        what = "both" if laws_found else "neither"
        raise DataError(f"{path}: columns {','.join(header)} match {what} of supervised (N,D,L) and distillation "
                        "(N_S,D_S,L_T,L_S); fix the header")
    law = laws_found[0]
    pos = {k: header.index(k) for k in COLUMNS[law]}
    for i, row in enumerate(rows[1:], start=2):
        where = f"{path}: data row {i - 1}"
        if len(row) != len(header):
            raise DataError(f"{where} has {len(row)} fields but the header has {len(header)}")
        points.add(law, {k: _positive(row[j].strip(), k, where) for k, j in pos.items()})
        points.sources.append((law, str(path)))
    return law


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read JSON ({e})") from None


def _final_scale(summary: dict, last: tuple | None, run: Path) -> float:
    """Final loss / the last in-training evaluation's, when that evaluation is at the run's last step: in-training
    evaluations may read a subset of the split (train.eval_sequences) while the final loss, the teacher's loss and
    the report's targets read all of it, and a law fitted across both scales mispredicts by their gap (about 0.2
    nats at 1-5M parameters on WikiText). 1 when there is no evaluation at the last step."""
    if last is None or float(last[0]) != float(summary["tokens"]):
        return 1.0
    return _positive(summary["final_val_loss"], "final_val_loss", f"{run}/summary.json") / \
        _positive(last[1], "val_loss", f"{run}/metrics.jsonl")


def read_run_dir(run: Path, points: PointSet, every_eval: bool = False, params: str = "total") -> str:
    """Add one run's points: its final loss, or every evaluation row with every_eval, put on the final loss's scale."""
    summary = _load_json(run / "summary.json")
    key = "n_params" if params == "total" else "n_params_non_embedding"
    for k in (key, "tokens", "final_val_loss"):
        if k not in summary:
            raise DataError(f"{run}/summary.json has no '{k}'; is this a finished bootdistill run?")
    n = _positive(summary[key], key, f"{run}/summary.json")
    teacher = summary.get("teacher")
    law = "distillation" if teacher else "supervised"
    l_t = None
    if teacher:
        if "val_loss" not in teacher:
            raise DataError(f"{run}/summary.json: teacher has no 'val_loss'; re-evaluate the teacher")
        l_t = _positive(teacher["val_loss"], "teacher.val_loss", f"{run}/summary.json")
    pairs = []  # (tokens, loss, where)
    # a bootstrapped run trains classically after its switch: those points are not distillation points
    stopped = (summary.get("policy") or {}).get("kd_stopped_tokens") if teacher else None
    if every_eval:
        path = run / "metrics.jsonl"
        try:
            text = path.read_text()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e}); use final losses only (drop --every-eval)") from None
        last = None  # (tokens, loss) of the last evaluation, after the switch too
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(f"{path}: line {i} is not JSON") from None
            if row.get("val_loss") is None or float(row.get("tokens", 0)) <= 0:  # step 0 has no tokens to fit
                continue
            last = (row["tokens"], row["val_loss"])
            if teacher and (row.get("kd_on") is False or (stopped is not None and row["tokens"] > stopped)):
                points.skipped.append((str(run), "evaluation after the switch to classical training"))
                continue
            pairs.append((row["tokens"], row["val_loss"], f"{path}: line {i}"))
        scale = _final_scale(summary, last, run)
        pairs = [(t, v * scale, where) for t, v, where in pairs]
    elif stopped is not None and summary["tokens"] > stopped:
        points.skipped.append((str(run), "final loss is after the switch to classical training"))
    else:
        pairs.append((summary["tokens"], summary["final_val_loss"], f"{run}/summary.json"))
    for tokens, loss, where in pairs:
        d, l_obs = _positive(tokens, "tokens", where), _positive(loss, "val_loss", where)
        if law == "supervised":
            points.add(law, {"N": n, "D": d, "L": l_obs})
        else:
            points.add(law, {"N_S": n, "D_S": d, "L_T": l_t, "L_S": l_obs})
        points.sources.append((law, str(run)))
    return law


def collect(inputs, every_eval: bool = False, params: str = "total", leave_out=None) -> PointSet:
    """Points from CSV files, run directories, or directories holding run directories (searched recursively).

    leave_out: a function from the run directories found to {directory: why} for those whose points must not be
    used (`bootdistill fit` passes report/tuning's: of a tuning grid only the chosen point); they go to
    `points.left_out`."""
    points, found = PointSet(), []  # (is a CSV, path) in the order given
    for item in inputs:
        path = Path(item)
        if path.is_file() or (path / "summary.json").is_file():
            found.append((path.is_file(), path))
        elif path.is_dir():
            runs = sorted(p.parent for p in path.rglob("summary.json"))
            if not runs:
                raise DataError(f"{path}: no run directories (summary.json) below it")
            found += [(False, run) for run in runs]
        else:
            raise DataError(f"{path}: no such file or directory")
    run_dirs = [path for is_csv, path in found if not is_csv]
    left = {Path(k).resolve(): v for k, v in (leave_out(run_dirs) if leave_out and run_dirs else {}).items()}
    for is_csv, path in found:
        if is_csv:
            read_csv(path, points)
        elif path.resolve() in left:
            points.left_out.append((str(path), left[path.resolve()]))
        else:
            read_run_dir(path, points, every_eval, params)
    return points


def write_csv(path, law: str, columns: dict) -> None:
    names = COLUMNS[law]
    rows = zip(*(columns[k] for k in names))
    atomic_write_text(path, ",".join(names) + "\n" + "".join(",".join(f"{v:.10g}" for v in r) + "\n" for r in rows))


# ---- synthetic points from known coefficients (tests, benchmarks, examples) ------------------------------


def synthetic_supervised(n: int, noise: float = 0.0, seed: int = 0, coefficients: dict | None = None) -> dict:
    """N log-uniform over 100M-13B, D/N over 5-500 (the paper's range); L times exp(noise * standard normal)."""
    p = coefficients or laws.TABLE6_SUPERVISED
    rng = np.random.default_rng(seed)
    big_n = np.exp(rng.uniform(np.log(1e8), np.log(1.3e10), n))
    d = big_n * np.exp(rng.uniform(np.log(5), np.log(500), n))
    loss = laws.supervised_loss(big_n, d, p) * np.exp(noise * rng.standard_normal(n))
    return {"N": big_n, "D": d, "L": loss}


def synthetic_distillation(n: int, noise: float = 0.0, seed: int = 0, coefficients: dict | None = None,
                           supervised: dict | None = None) -> dict:
    """Students 100M-10B on 2-500 tokens per parameter, teachers 100M-13B on 1-500: teacher losses span
    weak to strong teachers, both sides of the capacity-gap transition, as in §4.2's three protocols."""
    p, s = coefficients or laws.TABLE6_DISTILLATION, supervised or laws.TABLE6_SUPERVISED
    rng = np.random.default_rng(seed)
    n_s = np.exp(rng.uniform(np.log(1e8), np.log(1e10), n))
    d_s = n_s * np.exp(rng.uniform(np.log(2), np.log(500), n))
    n_t = np.exp(rng.uniform(np.log(1e8), np.log(1.3e10), n))
    l_t = laws.supervised_loss(n_t, n_t * np.exp(rng.uniform(0.0, np.log(500), n)), s)
    l_s = laws.distillation_loss(n_s, d_s, l_t, p, s) * np.exp(noise * rng.standard_normal(n))
    return {"N_S": n_s, "D_S": d_s, "L_T": l_t, "L_S": l_s}
