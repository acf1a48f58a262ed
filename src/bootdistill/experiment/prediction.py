"""The planner's prediction of a distilled run's saving, written before the run trains (RUN/prediction.json),
so the report can put predicted and measured savings side by side.

Coefficients: the recipe's `planner: {laws: scaling_fit.json}` (from `bootdistill fit`, e.g. on the recipe's
own runs), else the distillation paper's Table 6. Table 6 was fitted on 100M-13B models and another corpus and
tokenizer: at a few million parameters it is an extrapolation, and the report's error column says how far off
it is. With Table 6 the teacher's loss is the law's own prediction (measured losses on our corpus are on
another scale); with fitted laws it is the teacher's measured final validation loss.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..shape import count_params, shape_of
from .plan import predicted


def predict_saving(student_params: float, student_tokens: float, teacher_params: float, teacher_flops: float,
                   margin: float, laws_path: str | None = None, teacher_loss: float | None = None,
                   flops: str = "paper") -> dict:
    """flops: the planner's FLOPs model (scaling.plan.load_laws); '6n' matches the ledger's 6N proxy, the right one
    for laws fitted on this project's runs with N = their total parameters (`calibrate` uses it)."""
    # scipy loads here, not at import: `experiment --list` and reports that read no prediction stay fast
    from ..scaling.plan import RANGE, load_laws, predict_bootstrapped

    lw = load_laws(laws_path, flops)
    own = laws_path is not None
    b = predict_bootstrapped(lw, student_params, student_tokens, teacher_params, teacher_flops,
                             teacher_loss=teacher_loss if own else None, margin=margin,
                             rng=(min(RANGE[0], student_tokens / 100), RANGE[1]))  # searches must cover this run
    at_margin = b["margin_switch"]
    return {
        "laws": lw.source, "extrapolated": not (lw.n_range[0] <= student_params <= lw.n_range[1]),
        "student_params": student_params, "student_tokens": student_tokens, "teacher_params": teacher_params,
        "teacher_flops": teacher_flops, "teacher_loss": b["teacher_loss"], "margin": margin,
        "target_loss": b["target_loss"], "classical_flops": b["classical_flops"],
        # the paper's rule (switch within `margin` of the teacher); None when the law says it is never reached
        "saving_pct": None if at_margin is None else 100 * (1 - at_margin["flops"] / b["classical_flops"]),
        "best_saving_pct": 100 * b["saving"], "decision": b["decision"],
    }


def predict_planned_run(p, runs: dict, vocab: int, laws_path: str | None = None, flops: str = "paper",
                        tokens: float | None = None) -> dict | None:
    """The prediction for a recipe's distilled run (None for classical runs and teachers); `tokens`: those of the
    classical run whose final loss is the target (default: the distilled run's own)."""
    if not p.teacher:
        return None
    t = runs[p.teacher]

    def params(cfg) -> int:
        return count_params(shape_of(cfg.model, vocab))["total"]

    numbers = predicted(p, runs, vocab)
    teacher_loss = None
    summary = t.run_dir / "summary.json"
    if summary.is_file():
        teacher_loss = json.loads(summary.read_text()).get("final_val_loss")
    return predict_saving(params(p.cfg), tokens or numbers["tokens"], params(t.cfg), numbers["teacher_train"],
                          p.cfg.distill.margin, laws_path, teacher_loss, flops)


def read_prediction(run_dir: Path) -> dict | None:
    f = Path(run_dir) / "prediction.json"
    try:
        return json.loads(f.read_text()) if f.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
