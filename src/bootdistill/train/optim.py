"""AdamW with decoupled weight decay on matrices only.

Decayed: every parameter with 2+ dimensions (attention/FFN weights, the tied token embedding / LM head and
the positional embedding). Not decayed: biases and LayerNorm gains/shifts, where decay only fights the
normalisation and buys no regularisation.
"""

from __future__ import annotations

import torch


def build_optimizer(model: torch.nn.Module, train_cfg, device: torch.device) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": train_cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=train_cfg.lr_max, betas=(train_cfg.beta1, train_cfg.beta2), fused=device.type == "cuda"
    )
