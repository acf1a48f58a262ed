"""Reading a run's metrics.jsonl (train/metrics.py writes it)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: Path | str) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: everything after it is untrusted
    return rows
