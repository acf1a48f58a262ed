"""Recipes -> runs: a recipe (`recipe.py`) names runs, each trained in its own directory (`run.py`); the planner's
numbers (`plan.py`) and predicted saving (`prediction.py`) are written before a run trains; `cluster.py` gives
one command per run for a scheduler."""

from .plan import predicted, print_plan
from .recipe import TUNE_FILE, PlannedRun, load_recipe
from .run import batch_threads, run_recipe

__all__ = ["TUNE_FILE", "PlannedRun", "batch_threads", "load_recipe", "predicted", "print_plan", "run_recipe"]
