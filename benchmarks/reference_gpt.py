"""A plain eager GPT of the same shape as ours, trained the textbook way: the yardstick for bench_train.

The model is transformers' GPT2LMHeadModel (learned positions, Pre-LN, 4x GELU MLP, tied LM head, SDPA
attention): the reference implementation most people know. A step is what a plain training script does:
forward under the same autocast, `F.cross_entropy`, backward, clip at 1.0, `torch.optim.AdamW` (defaults,
so PyTorch picks its foreach path), zero_grad. No fused loss, no custom attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bootdistill.shape import ModelShape


class PlainGPTStepper:
    """`train_step()` like `Trainer.train_step()`, on random token ids (speed does not depend on the text)."""

    def __init__(self, shape: ModelShape, micro: int, amp_dtype: torch.dtype | None, device: str = "cpu"):
        try:
            from transformers import GPT2Config, GPT2LMHeadModel
        except ImportError as e:  # the [hf] extra; scripts/setup_env.sh installs it
            raise SystemExit(f"the plain-GPT reference needs transformers ({e}): pip install -e '.[hf]'")
        cfg = GPT2Config(vocab_size=shape.vocab_size, n_positions=shape.context, n_embd=shape.d_model,
                         n_layer=shape.n_layers, n_head=shape.n_heads, n_inner=4 * shape.d_model,
                         resid_pdrop=shape.dropout, embd_pdrop=shape.dropout, attn_pdrop=shape.attn_dropout,
                         activation_function="gelu", tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
                         attn_implementation="sdpa")
        self.model = GPT2LMHeadModel(cfg).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        self.shape, self.micro, self.amp_dtype, self.device = shape, micro, amp_dtype, device
        self.generator = torch.Generator().manual_seed(0)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def train_step(self) -> float:
        ids = torch.randint(0, self.shape.vocab_size, (self.micro, self.shape.context + 1), generator=self.generator)
        x, y = ids[:, :-1].to(self.device), ids[:, 1:].to(self.device)
        with torch.autocast(torch.device(self.device).type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            logits = self.model(input_ids=x).logits
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()
