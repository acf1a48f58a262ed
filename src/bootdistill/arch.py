"""The architectures `model.arch` names: a new block is one module plus one entry in ARCHS."""

from __future__ import annotations

import torch.nn as nn

from .llama import Llama
from .model import GPT
from .shape import ModelShape

ARCHS = {"gpt2": GPT, "llama": Llama}


def build_model(shape: ModelShape) -> nn.Module:
    """The model of `shape.arch`: the paper's GPT or the Llama-style block."""
    return ARCHS[shape.arch](shape)
