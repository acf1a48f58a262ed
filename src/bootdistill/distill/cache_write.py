"""Writing teacher caches: offline (`bootdistill teacher-cache`: run a trained teacher once over the prepared
training stream) and online (`train.save_logits`: the teacher keeps its own truncated distributions while it
trains, `OnlineLogitSaver`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..compute import FlopsLedger, flops_per_token
from ..data.loader import num_blocks
from ..data.prepare import load_meta, prepare, token_file
from ..errors import ConfigError, DataError
from ..fsutil import atomic_dir, check_writable, clean_stale_temps
from ..runtime import checkpoint as ckpt_io
from ..runtime.device import autocast_context, resolve_device, resolve_precision
from ..runtime.extension import RunContext, TrainerExtension
from ..runtime.loading import load_model_from_checkpoint, run_config_of
from ..shape import count_params
from . import cache as C
from .signals import sparsify
from .source import is_cache
from .truncation import check_truncation


def _check_settings(top_p: float, top_k: int, values: str, vocab: int) -> int:
    check_truncation(top_p, top_k)
    if top_k is None:
        raise ConfigError("a teacher cache needs top_k (its width): e.g. --top-k 50")
    if values not in C.VALUE_DTYPES:
        raise ConfigError(f"cache values must be one of {', '.join(C.VALUE_DTYPES)}, got '{values}'")
    return min(top_k, vocab)


def teacher_info(ckpt: Path, meta: dict, shape) -> dict:
    ledger = FlopsLedger.from_state(meta["ledger"]) if "ledger" in meta else FlopsLedger()
    return {"checkpoint": str(ckpt), "step": meta.get("step"),
            "sha256": meta.get("files", {}).get("model.safetensors"),  # the teacher's weights: its identity
            "model": {k: getattr(shape, k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "context")},
            "n_params": count_params(shape)["total"], "train_flops": ledger.total, "train_flops_exact": ledger.total_exact,
            "inference_flops_per_token": flops_per_token(shape, training=False),
            "inference_flops_per_token_exact": flops_per_token(shape, training=False, exact=True)}


def cache_meta(kind: str, teacher: dict, data_meta: dict, data_dir, context: int, top_p: float, top_k: int, k: int,
               values: str, n_blocks: int, covered: np.ndarray, n_val: int, inference_flops: tuple[float, float],
               **extra) -> dict:
    blocks = int(np.count_nonzero(covered))
    idx = np.flatnonzero(covered)
    return {"kind": kind, "teacher": teacher, "tokenizer_sha256": data_meta["tokenizer_sha256"],
            "vocab_size": data_meta["vocab_size"], "data_dir": str(data_dir), "data_key": data_meta.get("key"),
            "train_tokens": data_meta["splits"]["train"]["tokens"], "context": context, "top_p": top_p,
            "top_k": top_k, "k": k, "values": values, "n_blocks": n_blocks, "n_val_blocks": n_val,
            "covered_blocks": blocks, "tokens_covered": blocks * context,
            "token_range": [int(idx[0]) * context, int(idx[-1] + 1) * context] if blocks else None,
            "storage": C.storage(blocks * context, k, values, data_meta["vocab_size"]),
            "inference_flops": inference_flops[0], "inference_flops_exact": inference_flops[1], **extra}


def format_storage(s: dict) -> str:
    return (f"{s['bytes_per_token']} bytes/token, {s['bytes_total'] / 1e6:.2f} MB in total; full fp32 logits would be "
            f"{s['full_logits_bytes_per_token']:,} bytes/token, {s['full_logits_bytes'] / 1e6:.2f} MB "
            f"({s['full_logits_bytes'] / max(s['bytes_total'], 1):.0f}x more)")


@torch.no_grad()
def write_teacher_cache(teacher: str, out: str, top_p: float = 0.95, top_k: int = 50, data_dir: str | None = None,
                        context: int | None = None, batch: int = 8, max_tokens: int | None = None,
                        values: str = "fp16", device: str = "auto", precision: str = "auto", progress: bool = True) -> dict:
    """Run `teacher` once over the prepared training stream; write its truncated distributions to `out`."""
    if batch < 1:
        raise ConfigError(f"--batch must be a positive number of sequences, got {batch}")
    if context is not None and context < 1:
        raise ConfigError(f"--context must be a positive number of tokens, got {context}")
    out_path = Path(out)
    if out_path.exists() and not is_cache(out_path) and (not out_path.is_dir() or any(out_path.iterdir())):
        raise ConfigError(f"'{out}' exists and is not a teacher cache: choose another --out (an old cache is replaced)")
    check_writable(out_path.absolute().parent)  # before the teacher's inference, which can take hours
    clean_stale_temps(out_path)  # what a killed writer of this cache left
    dev = resolve_device(device, "--device ")
    amp, _ = resolve_precision(precision, dev)
    model, meta, ckpt = load_model_from_checkpoint(teacher, dev)
    if data_dir is None:
        data_dir = prepare(run_config_of(ckpt).data, progress=False)
    data_meta = load_meta(data_dir)
    if data_meta["tokenizer_sha256"] != meta.get("tokenizer_sha256"):
        raise DataError(f"the tokenizer of '{data_dir}' does not match the one teacher '{ckpt}' was trained with: "
                        "write the cache from data prepared with the teacher's tokenizer")
    ctx = context or model.shape.context
    if ctx > model.shape.context:
        raise ConfigError(f"--context {ctx} is longer than the teacher's context {model.shape.context}")
    k = _check_settings(top_p, top_k, values, model.shape.vocab_size)
    tokens = token_file(data_dir, "train")
    n_blocks = num_blocks(len(tokens), ctx)
    todo = n_blocks if max_tokens is None else min(n_blocks, max_tokens // ctx)
    if todo < 1:
        raise ConfigError(f"--max-tokens {max_tokens} is less than one block of {ctx} tokens")
    val = C.val_block_losses(model, token_file(data_dir, "val"), ctx, batch, dev, amp)
    mass = neg_log_mass = 0.0  # how much of the teacher the truncation kept (and KL(truncated || full) per token)
    bar = tqdm(total=todo * ctx, disable=not progress, unit="tok", unit_scale=True, dynamic_ncols=True,
               desc="teacher cache")
    with atomic_dir(Path(out)) as tmp, bar:
        arrays = C.CacheArrays(tmp, n_blocks, ctx, k, values, create=True, vocab=model.shape.vocab_size)
        for lo in range(0, todo, batch):
            blocks = np.arange(lo, min(todo, lo + batch))
            x = torch.from_numpy(np.stack([np.asarray(tokens[b * ctx:(b + 1) * ctx], dtype=np.int64) for b in blocks]))
            with autocast_context(dev, amp):
                logits = model(x.to(dev))
            sig = sparsify(logits.float(), top_p, k)
            arrays.write(blocks, sig)
            mass += sig.log_kept_mass.double().exp().sum().item()
            neg_log_mass -= sig.log_kept_mass.double().sum().item()
            bar.update(len(blocks) * ctx)
        arrays.flush()
        C.write_val_losses(tmp, val)
        info = teacher_info(ckpt, meta, model.shape)
        n_tok = todo * ctx
        flops = (n_tok * info["inference_flops_per_token"], n_tok * info["inference_flops_per_token_exact"])
        result = cache_meta("offline", info, data_meta, data_dir, ctx, top_p, top_k, k, values, n_blocks,
                            np.asarray(arrays.covered), len(val), flops, kept_mass_mean=mass / n_tok,
                            kl_truncated_to_full_mean=neg_log_mass / n_tok)
        del arrays
        C.write_meta(tmp, result)
    return result


class OnlineLogitSaver:
    """train.save_logits: the teacher's own truncated distributions for the blocks it trains on (design space
    §3.5), from the forward pass it already runs (no extra model compute; its dropout is on). A block seen again
    later is overwritten, so the cache keeps each block's latest (best) distribution. Written under
    RUN/logits.partial (kept across resume) and renamed to RUN/logits when the run finishes."""

    def __init__(self, run_dir: Path, data_meta: dict, data_dir, n_train_tokens: int, context: int, top_p: float,
                 top_k: int, from_step: int, resume: bool):
        self.final = Path(run_dir) / "logits"
        self.tmp = Path(run_dir) / "logits.partial"
        self.k = _check_settings(top_p, top_k, "fp16", data_meta["vocab_size"])
        self.top_p, self.top_k, self.from_step, self.context = top_p, top_k, from_step, context
        self.data_meta, self.data_dir = data_meta, data_dir
        self.n_blocks = num_blocks(n_train_tokens, context)
        create = not (resume and (self.tmp / "covered.u8").is_file())
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.arrays = C.CacheArrays(self.tmp, self.n_blocks, context, self.k, "fp16", create=create,
                                    vocab=data_meta["vocab_size"])

    @torch.no_grad()
    def save(self, step: int, starts: np.ndarray, logits: torch.Tensor) -> None:
        if step >= self.from_step:
            self.arrays.write(np.asarray(starts) // self.context, sparsify(logits.detach().float(), self.top_p, self.k))

    def finish(self, model, val_tokens, batch: int, device, amp, ckpt: Path, ckpt_meta: dict, last_step: int) -> dict:
        self.arrays.flush()
        val = C.val_block_losses(model, val_tokens, self.context, batch, device, amp)
        C.write_val_losses(self.tmp, val)
        info = teacher_info(ckpt, ckpt_meta, model.shape)
        meta = cache_meta("online", info, self.data_meta, self.data_dir, self.context, self.top_p, self.top_k, self.k,
                          "fp16", self.n_blocks, np.asarray(self.arrays.covered), len(val), (0.0, 0.0),
                          saved_steps=[self.from_step, last_step],
                          note="saved while the teacher trained: its inference was part of its training (train_flops)")
        C.write_meta(self.tmp, meta)
        C.finish_dir(self.tmp, self.final)
        return meta


class OnlineLogits(TrainerExtension):
    """train.save_logits: an OnlineLogitSaver fed with each micro-batch's logits, published when training ends."""

    def __init__(self, ctx: RunContext):
        if ctx.world > 1:  # every rank would write the same memory-mapped files
            raise ConfigError("train.save_logits works in one process: train the teacher without torchrun, or write "
                              "its logits afterwards with `bootdistill teacher-cache`")
        self.ctx, self.saver = ctx, None

    @classmethod
    def from_run(cls, ctx: RunContext) -> OnlineLogits | None:
        return cls(ctx) if ctx.cfg.train.save_logits else None

    def on_start(self, resumed: bool) -> None:
        c, t = self.ctx, self.ctx.cfg.train
        self.saver = OnlineLogitSaver(c.run_dir, c.data_meta, c.data_dir, len(c.train_tokens), c.context,
                                      t.save_logits_top_p, t.save_logits_top_k, t.save_logits_from_step, resume=resumed)

    def on_forward(self, step: int, starts: np.ndarray, logits: torch.Tensor) -> None:
        self.saver.save(step, starts, logits)

    def on_finish(self, model: torch.nn.Module, step: int) -> None:
        c = self.ctx
        last = ckpt_io.checkpoint_dirs(c.run_dir)[-1]
        saved = self.saver.finish(model, c.val_tokens, c.micro, c.device, c.amp_dtype, last,
                                  ckpt_io.verify_checkpoint(last), step)
        print(f"saved the teacher's top-{saved['k']} logits of {saved['covered_blocks']} blocks to {c.run_dir / 'logits'}")
