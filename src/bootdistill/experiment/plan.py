"""Planning numbers: the steps, tokens and 6N FLOPs each run of a recipe will spend (`--dry-run` prints them)."""

from __future__ import annotations

from ..compute import flops_per_token
from ..distill.policies import build_policy
from ..runtime.batch import batch_plan
from ..shape import count_params, shape_of
from .recipe import PlannedRun


def predicted(p: PlannedRun, runs: dict[str, PlannedRun], data_vocab: int) -> dict:
    """Steps, tokens and 6N FLOPs a run will spend (KD inference as an upper bound when the stop is decided at run time)."""
    c = p.cfg
    shape = shape_of(c.model, data_vocab)
    steps = c.train.max_steps or c.train.total_steps
    tokens_per_step = batch_plan(c.train.batch_tokens, c.model.context, c.train.micro_batch).tokens
    tokens = steps * tokens_per_step
    out = {"steps": steps, "tokens": tokens, "student": tokens * flops_per_token(shape), "teacher_inference": 0.0,
           "teacher_train": 0.0, "inference_bound": False}
    if p.teacher:
        t = runs[p.teacher]
        tshape = shape_of(t.cfg.model, data_vocab)
        kd_steps, out["inference_bound"] = build_policy(c.distill, c.train).kd_steps_bound(steps)
        out["teacher_inference"] = kd_steps * tokens_per_step * flops_per_token(tshape, training=False)
        t_total = predicted(t, runs, data_vocab)
        share = min(1.0, p.teacher_step / t_total["steps"]) if p.teacher_step else 1.0  # an earlier checkpoint costs less
        out["teacher_train"] = t_total["total"] * share
    out["total"] = out["student"] + out["teacher_inference"] + out["teacher_train"]
    return out


def print_plan(recipe: dict, order: list[PlannedRun], data_vocab: int) -> list[dict]:
    runs = {p.name: p for p in order}
    rows = []
    numbers = {p.name: predicted(p, runs, data_vocab) for p in order}
    biggest = max(n["total"] for n in numbers.values())
    scale, unit = (1e15, "PFLOPs") if biggest >= 1e15 else (1e12, "TFLOPs")
    print(f"recipe {recipe.get('name', '')}: {len(order)} runs (vocab {data_vocab}; 6N proxy, compute in {unit})")
    head = f"{'run':<28} {'policy':<12} {'params':>8} {'steps':>7} {'tokens':>11} {'student':>9} {'t.infer':>9} {'t.train':>9} {'total':>9}  paper"
    print(head)
    print("-" * len(head))
    for p in order:
        n = numbers[p.name]
        shape = shape_of(p.cfg.model, data_vocab)
        params = count_params(shape)["total"]
        ref = p.reference.get("pflops")
        bound = "<" if n["inference_bound"] else " "
        print(f"{p.name:<28} {p.cfg.distill.policy:<12} {params / 1e6:>7.2f}M {n['steps']:>7} {n['tokens']:>11,} "
              f"{n['student'] / scale:>9.3f} {bound}{n['teacher_inference'] / scale:>8.3f} {n['teacher_train'] / scale:>9.3f} "
              f"{n['total'] / scale:>9.3f}  {'' if ref is None else f'{ref} PFLOPs'}")
        if p.reference.get("note"):
            print(f"{'':<28} note: {p.reference['note']}")
        rows.append({"name": p.name, "run_dir": str(p.run_dir), "params": params, **n, "reference": p.reference})
    print("'<' marks an upper bound: a bootstrapped run stops running its teacher at a step decided during training.")
    print("t.train is the teacher's whole training run, counted in every student that uses it.")
    return rows
