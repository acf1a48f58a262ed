"""distill.teacher=hf:PATH: a local Hugging Face causal LM as a live teacher (the `[hf]` extra).

Accepted only when its tokenizer gives the same ids as the student's on a sample of the student's own text (prepare
the student's data with data.tokenizer=PATH, the teacher's own tokenizer), and its vocabulary and context fit. A
teacher's vocabulary may be padded beyond its tokenizer's: the signal is its logits over the tokenizer's ids (the
student's vocabulary). Its training compute is unknown unless distill.teacher_train_flops is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.tokenizer import load_tokenizer
from ..errors import CheckpointError, ConfigError, DataError
from .source import StudentSide
from .teacher import LiveTeacher

SAMPLE_PIECES, PIECE_TOKENS = 16, 128  # the tokenizer check: 16 pieces of ~128 tokens of validation text


class _LogitsOnly(torch.nn.Module):
    """The HF model as bootdistill models look: tokens -> logits over the student's vocabulary."""

    def __init__(self, model, vocab_size: int):
        super().__init__()
        self.inner, self.vocab_size = model, vocab_size

    def forward(self, x):
        # ids >= the student's vocabulary (the tokenizer's length) never occur: padding rows of a padded
        # vocabulary. Their mass is dropped, so every softmax downstream renormalises over the real vocabulary
        return self.inner(input_ids=x).logits[..., : self.vocab_size]


def sample_texts(side: StudentSide) -> list[str]:
    """Pieces of the student's validation text (decoded with the student's tokenizer)."""
    tok = load_tokenizer(side.data_dir)
    n = len(side.val_tokens)
    starts = np.linspace(0, max(0, n - PIECE_TOKENS), SAMPLE_PIECES).astype(int)
    return [tok.decode(np.asarray(side.val_tokens[s:s + PIECE_TOKENS]).tolist()) for s in starts]


def check_same_ids(hf_tokenizer, side: StudentSide, where: str) -> None:
    tok = load_tokenizer(side.data_dir)
    for text in sample_texts(side):
        want = tok.encode(text, add_special_tokens=False).ids
        got = list(hf_tokenizer(text, add_special_tokens=False)["input_ids"])
        if got != want:
            i = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise DataError(f"the tokenizer of HF teacher '{where}' gives other ids than the student's on its own text "
                            f"(first difference at token {i}: {got[i:i + 3]} vs {want[i:i + 3]}): prepare the student's "
                            f"data with the teacher's tokenizer, data.tokenizer={where}")


class HFTeacher(LiveTeacher):
    def __init__(self, path: str, side: StudentSide):  # no super().__init__: it loads bootdistill checkpoints
        try:  # transformers is the optional [hf] extra
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ConfigError("distill.teacher=hf:... needs transformers: pip install 'bootdistill[hf]'") from None
        where = Path(path)
        if not where.is_dir():
            raise CheckpointError(f"HF teacher directory '{path}' does not exist: give a local model directory (hf:PATH)")
        try:
            hf_tok = AutoTokenizer.from_pretrained(str(where), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(where), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"'{path}' is not a loadable HF causal LM with a tokenizer ({str(e).splitlines()[0]})") from None
        check_same_ids(hf_tok, side, path)
        cfg = model.config
        vocab = getattr(cfg, "vocab_size", None)
        if vocab is None or vocab < side.vocab_size:
            raise DataError(f"HF teacher '{path}' has vocabulary {vocab}, smaller than the student's tokenizer "
                            f"({side.vocab_size} ids): prepare the student's data with the teacher's tokenizer, "
                            f"data.tokenizer={path}")
        ctx = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        if ctx is not None and ctx < side.context:
            raise DataError(f"HF teacher context ({ctx}) is shorter than the student's ({side.context}): lower model.context")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.ckpt, self.side, self.shape = where, side, None
        self.model = _LogitsOnly(model, side.vocab_size).to(side.device).eval()
        self.params = sum(p.numel() for p in model.parameters())
        n_layers = getattr(cfg, "n_layer", None) or getattr(cfg, "num_hidden_layers", None)
        d_model = getattr(cfg, "n_embd", None) or getattr(cfg, "hidden_size", None)
        self.attn_flops = 4 * n_layers * side.context * d_model if n_layers and d_model else 0
        given = side.teacher_train_flops
        self.train_flops_known = given is not None
        self.train_flops = (float(given or 0.0), float(given or 0.0))
        self.upfront_flops = (0.0, 0.0)
        self._measure_val_loss()

    def shard(self, shard_fn) -> None:
        pass  # a transformers model, not bootdistill blocks: it stays whole on every rank

    def inference_flops(self, tokens: int) -> tuple[float, float]:
        return tokens * 2.0 * self.params, tokens * (2.0 * self.params + self.attn_flops)

    def summary(self, ledger=None) -> dict:
        known = self.train_flops_known
        return {"source": "hf", "checkpoint": str(self.ckpt), "n_params": self.params, "val_loss": self.val_loss,
                "train_flops": self.train_flops[0] if known else None,
                "train_flops_exact": self.train_flops[1] if known else None,
                "train_flops_note": "given by distill.teacher_train_flops" if known else
                "unknown: a Hugging Face teacher has no bootdistill ledger; the run's totals count no teacher "
                "training (set distill.teacher_train_flops to include it)",
                "model": None}
