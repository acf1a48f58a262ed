"""Teacher signals. A live teacher is any bootdistill checkpoint: frozen, eval mode, no grad, same autocast as
the student. It runs only on steps where alpha > 0 and is freed once the policy says KD is over."""

from __future__ import annotations

import gc
from pathlib import Path

import torch
import torch.nn.functional as F

from ..compute import FlopsLedger
from ..data.loader import eval_batches
from ..errors import CheckpointError, DataError
from ..model import count_params
from ..train.evaluate import autocast_context, evaluate


class LiveTeacher:
    def __init__(self, path: str, trainer):
        from ..train.eval_cli import load_model_from_checkpoint

        if not path:
            raise CheckpointError("distill.teacher is not set: give the run directory of a trained teacher")
        if not Path(path).exists():
            raise CheckpointError(f"teacher checkpoint '{path}' does not exist: train the teacher first or fix distill.teacher")
        self.model, meta, self.ckpt = load_model_from_checkpoint(path, trainer.device)
        self.shape = self.model.shape
        student = trainer.shape
        if meta.get("tokenizer_sha256") != trainer.data_meta["tokenizer_sha256"]:
            raise DataError(f"teacher '{self.ckpt}' was trained with another tokenizer than the student's data "
                            f"('{trainer.data_dir}'): train the teacher on data prepared with the same tokenizer")
        if self.shape.vocab_size != student.vocab_size:
            raise DataError(f"teacher vocabulary ({self.shape.vocab_size}) differs from the student's ({student.vocab_size}): "
                            "both must use the same tokenizer")
        if self.shape.context < student.context:
            raise DataError(f"teacher context ({self.shape.context}) is shorter than the student's ({student.context}): "
                            f"use a teacher trained with context >= {student.context} or lower model.context")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device, self.amp_dtype = trainer.device, trainer.amp_dtype
        self.cfg = trainer.cfg.distill
        ledger = FlopsLedger.from_state(meta["ledger"]) if "ledger" in meta else FlopsLedger()
        # a teacher's training cost is everything its own run spent (its own teacher included, if any)
        self.train_flops = (ledger.total, ledger.total_exact)
        self.val_loss = evaluate(self.model, trainer.val_tokens, student.context, trainer.micro, self.device,
                                 self.amp_dtype, trainer.cfg.train.eval_batches)["loss"]
        self.params = count_params(self.shape)["total"]

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.device, self.amp_dtype):
            return self.model(x)

    @torch.no_grad()
    def diagnostics(self, trainer) -> dict:
        """KL(teacher || student), entropies and top-1 agreement on the first validation batches."""
        if self.model is None:
            return {}
        student = trainer.model
        was_training = student.training
        student.eval()
        kl = ent_s = ent_t = agree = n = 0.0
        for x, _ in eval_batches(trainer.val_tokens, trainer.shape.context, trainer.micro, self.cfg.diag_batches):
            x = x.to(self.device)
            with autocast_context(self.device, self.amp_dtype):
                s_logp = F.log_softmax(student(x).float(), -1)
                t_logp = F.log_softmax(self.model(x).float(), -1)
            kl += (t_logp.exp() * (t_logp - s_logp)).sum(-1).sum().item()
            ent_s += -(s_logp.exp() * s_logp).sum(-1).sum().item()
            ent_t += -(t_logp.exp() * t_logp).sum(-1).sum().item()
            agree += (s_logp.argmax(-1) == t_logp.argmax(-1)).sum().item()
            n += x.numel()
        student.train(was_training)
        return {"val_kl_teacher_student": kl / n, "student_entropy": ent_s / n, "teacher_entropy": ent_t / n,
                "top1_agreement": agree / n}

    def release(self) -> None:
        if self.model is not None:
            self.model = None
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def summary(self) -> dict:
        return {"checkpoint": str(self.ckpt), "n_params": self.params, "val_loss": self.val_loss,
                "train_flops": self.train_flops[0], "train_flops_exact": self.train_flops[1],
                "model": {k: getattr(self.shape, k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "context")}}


def load_teacher(path: str, trainer) -> LiveTeacher:
    return LiveTeacher(path, trainer)
