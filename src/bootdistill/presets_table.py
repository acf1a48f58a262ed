"""`bootdistill presets`: Table 1 with exact parameter and per-token training FLOP counts."""

from __future__ import annotations

from .compute import flops_per_token
from .shape import PRESETS, ModelShape, count_params


def presets_rows(vocab_size: int = 5000) -> list[dict]:
    rows = []
    for p in PRESETS.values():
        shape = ModelShape(vocab_size, p.d_model, p.n_layers, p.n_heads, p.context)
        n = count_params(shape)
        rows.append({
            "name": p.name, "d_model": p.d_model, "n_layers": p.n_layers, "n_heads": p.n_heads,
            "context": p.context, "batch_tokens": p.batch_tokens, "lr_max": p.lr_max, "lr_min": p.lr_min,
            "params": n["total"], "params_non_embedding": n["non_embedding"], "paper_params": p.paper_params,
            "train_flops_per_token_6N": flops_per_token(shape, training=True),
            "train_flops_per_token_exact": flops_per_token(shape, training=True, exact=True),
            "note": p.note,
        })
    return rows


def print_presets(rows: list[dict]) -> None:
    head = f"{'name':>5} {'d':>4} {'L':>3} {'H':>3} {'ctx':>5} {'batch':>6} {'lr_max':>7} {'lr_min':>7} " \
           f"{'params':>9} {'non-emb':>9} {'paper':>7} {'6N/tok':>9} {'exact/tok':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['name']:>5} {r['d_model']:>4} {r['n_layers']:>3} {r['n_heads']:>3} {r['context']:>5} "
              f"{r['batch_tokens']:>6} {r['lr_max']:>7.1e} {r['lr_min']:>7.1e} {r['params'] / 1e6:>8.2f}M "
              f"{r['params_non_embedding'] / 1e6:>8.2f}M {r['paper_params'] / 1e6:>6.2f}M "
              f"{r['train_flops_per_token_6N'] / 1e6:>8.1f}M {r['train_flops_per_token_exact'] / 1e6:>9.1f}M")
    for r in rows:
        if r["note"]:
            print(f"note {r['name']}: {r['note']}")
    print("FLOPs are per training token (forward + backward); 'exact' counts matmuls and attention at full context.")
