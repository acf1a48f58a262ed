"""`bootdistill report`: how much compute the teacher saved, teacher included (the paper's Table 3, Figs 2-7)."""

from .runs import Run, load_run, load_runs
from .tables import build_report, first_crossing, savings, stat

__all__ = ["Run", "build_report", "first_crossing", "load_run", "load_runs", "savings", "stat"]
