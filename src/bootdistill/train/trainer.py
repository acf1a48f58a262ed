"""The one training loop. Every method (classical, KD, bootstrapped, SALT ...) is a policy it asks each step.

Per step: policy knobs -> LR -> `accum` micro-batches (student forward, CE, and the teacher + KD loss only
when alpha > 0) -> clip -> AdamW. Then logging, validation (the policy sees it), checkpoints. Resume restores
model, optimizer, RNG, data position, policy state and FLOPs ledger, so a killed run ends bitwise the same.

Under torchrun (runtime/distributed.py) each rank runs `accum` of the step's micro-batches: the same global
batches in the same order as one process, so the curve does not depend on the number of processes.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..arch import build_model
from ..compute import FlopsLedger, flops_per_token, peak_flops
from ..config import RunConfig, resolve_model, to_dict
from ..data.loader import BlockSampler
from ..data.prepare import bits_per_byte, load_meta, prepare, token_file
from ..distill.extensions import EXTENSIONS
from ..distill.objective import kd_loss_of, student_loss, teacher_ce
from ..distill.policies import Policy, StepKnobs, build_policy
from ..distill.source import StudentSide, TeacherSource
from ..distill.teachers import load_teacher
from ..errors import CheckpointError, DataError
from ..fsutil import atomic_write_json
from ..runtime import checkpoint as ckpt_io
from ..runtime import distributed as dist
from ..runtime.accel import check_compile, compile_model, cpu_model, keep_freed_memory, set_cpu_threads
from ..runtime.batch import batch_plan
from ..runtime.device import autocast_context, resolve_device, resolve_precision
from ..runtime.evaluate import evaluate
from ..runtime.extension import RunContext, TrainerExtension
from ..shape import count_params, shape_of
from . import preflight
from .guard import DivergenceGuard
from .init_from import check_fits, load_into, read_source
from .lock import RunLock
from .metrics import MetricsLogger, NullLogger, progress_line
from .optim import build_optimizer
from .rundir import LOCK_NAME, append_history, check_run_dir, write_run_config
from .schedule import step_lr


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    def __init__(self, cfg: RunConfig, resume: bool = False, allow_change=(), extensions=EXTENSIONS):
        """`extensions`: factories of TrainerExtension (runtime/extension.py), by default distillation's."""
        self.cfg = cfg = resolve_model(cfg)
        t = cfg.train
        dist.init()
        self.device = dist.local_device(resolve_device(t.device))
        set_cpu_threads(t.threads, self.device)
        keep_freed_memory(self.device)
        self.parallel = dist.resolve_mode(t.parallel)
        self.amp_dtype, use_scaler = resolve_precision(t.precision, self.device)
        if t.compile:
            check_compile(self.device)

        check_run_dir(Path(cfg.out_dir), cfg, resume, allow_change)
        preflight.check_run(cfg)  # policy, loss, teacher, writable output: before any compute
        preflight.check_memory(cfg, self.device, dist.world() if self.parallel == "fsdp" else 1)
        with dist.main_first():  # rank 0 prepares the data files, the others then find them
            self.data_dir = prepare(cfg.data, progress=cfg.log.progress)
        self.data_meta = load_meta(self.data_dir)
        self.synthetic = bool(self.data_meta.get("synthetic"))
        self.shape = shape_of(cfg.model, self.data_meta["vocab_size"])
        self.init_source = self._init_source()
        self.run_dir = Path(cfg.out_dir)
        self.train_tokens = token_file(self.data_dir, "train")
        self.val_tokens = token_file(self.data_dir, "val")
        preflight.check_splits(self.data_dir, self.shape.context)

        world = dist.world()
        plan = batch_plan(t.batch_tokens, self.shape.context, t.micro_batch, world)
        self.micro, self.accum = plan.micro, plan.accum
        self.tokens_per_step = plan.tokens  # global: the ledger counts every rank's tokens
        preflight.check_batch(len(self.train_tokens), self.shape.context, plan.sequences)
        self.max_steps = t.max_steps or t.total_steps

        torch.manual_seed(t.seed)
        self.model = build_model(self.shape).to(self.device)
        if self.init_source is not None and not (resume and ckpt_io.checkpoint_dirs(self.run_dir)):  # a resume restores its own
            with torch.random.fork_rng(devices=[]):  # however the source loads, the run's RNG stream stays put
                load_into(self.model, self.init_source)
        dist.seed_rank(t.seed)  # dropout: rank 0 keeps the single-process stream
        wrapped = dist.wrap(self.model, self.parallel, self.device)  # DDP, or self.model sharded in place
        self.optimizer = build_optimizer(self.model, t, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.forward = compile_model(wrapped) if t.compile else wrapped
        self.sampler = BlockSampler(self.train_tokens, self.shape.context, self.micro * world, t.seed,
                                    rank=dist.rank(), world=world)
        self.policy: Policy = build_policy(cfg.distill, t)
        context = RunContext(cfg, self.run_dir, self.data_dir, self.data_meta, self.train_tokens, self.val_tokens,
                             self.shape.context, self.micro, self.accum, dist.rank(), world, self.device, self.amp_dtype,
                             resume)
        self.extensions: list[TrainerExtension] = []
        for build in extensions:
            with torch.random.fork_rng(devices=[]):  # whatever an extension runs, the student's RNG stream stays put
                ext = build(context)
            if ext is not None:
                self.extensions.append(ext)
                self.sampler = ext.sampler(self.sampler)
        self.kd_loss = kd_loss_of(cfg.distill)
        self.teacher: TeacherSource | None = None
        if self.policy.needs_teacher:
            with torch.random.fork_rng(devices=[]):  # building the teacher must not shift the student's RNG stream
                self.teacher = load_teacher(cfg.distill.teacher, self.student_side())
            self.kd_loss.check_teacher(sparse=self.teacher.sparse)
            self.policy.check_teacher(sparse=self.teacher.sparse)
            if self.parallel == "fsdp":
                self.teacher.shard(dist.shard)
        self.ledger = FlopsLedger()
        if self.teacher is not None:
            self.ledger.teacher_train, self.ledger.teacher_train_exact = self.teacher.train_flops
            # inference spent once for every student (writing a cache): charged in full
            self.ledger.teacher_inference, self.ledger.teacher_inference_exact = self.teacher.upfront_flops
            self.ledger.add_eval_flops(*self.teacher.eval_flops)  # its validation loss (a resume restores the ledger)
        if self.init_source is not None:
            self.ledger.init_train, self.ledger.init_train_exact = self._init_flops()
        for ext in self.extensions:
            ext.charge(self.ledger)
        self.guard = DivergenceGuard(t.divergence_factor, self.shape.vocab_size)
        self.step = 0
        self.elapsed_before, self._t0 = 0.0, None  # wall time of earlier sessions of this run, and of this one
        # from here on, this process (rank 0 for a torchrun job) alone writes the run directory
        fresh = not self.run_dir.exists()
        self.lock = RunLock(self.run_dir) if dist.is_main() else None
        changes = check_run_dir(self.run_dir, cfg, resume, allow_change)  # again, now that nobody else writes
        if dist.is_main():
            ckpt_io.clean_leftovers(self.run_dir)
        dist.barrier()
        self.resume_step = self._restore() if resume else None
        if self.teacher is not None and self.teacher.positional:  # a cache: fail now, not mid-run
            stop = self.policy.stop_step()
            kd_steps = max(0, min(self.max_steps, stop if stop is not None else self.max_steps) - self.step)
            try:
                self.teacher.check_coverage(self.sampler.preview_starts(kd_steps * self.accum))
            except DataError:
                self._unclaim(fresh)
                raise
        if dist.is_main():  # run files come from rank 0 only
            write_run_config(self.run_dir, cfg)
            append_history(self.run_dir, {"event": "resume" if resume else "start", "step": self.step,
                                          "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changed": changes})
        for ext in self.extensions:
            ext.on_start(resumed=self.resume_step is not None)
        self.logger = MetricsLogger(self.run_dir, cfg.log, to_dict(cfg), self.resume_step) if dist.is_main() else NullLogger()

    def _init_source(self):
        """model.init_from, checked against this run's shape and tokenizer (before any weights are read)."""
        if not self.cfg.model.init_from:
            return None
        source = read_source(self.cfg.model.init_from)
        check_fits(source, self.cfg.model, self.shape.vocab_size)
        if source.kind == "checkpoint" and source.tokenizer_sha256 != self.data_meta["tokenizer_sha256"]:
            raise DataError(f"model.init_from '{source.path}' was trained with another tokenizer than the prepared data "
                            f"in '{self.data_dir}': prepare the data with the source run's data settings")
        return source

    def _init_flops(self) -> tuple[float, float]:
        """The training compute behind the initial weights: given, a checkpoint's own ledger, or unknown (0)."""
        given = self.cfg.model.init_flops
        if given is not None:
            return given, given
        if self.init_source.ledger:
            ledger = FlopsLedger.from_state(self.init_source.ledger)
            return ledger.total, ledger.total_exact
        return 0.0, 0.0

    def _init_summary(self) -> dict | None:
        source = self.init_source
        if source is None:
            return None
        known = self.cfg.model.init_flops is not None or bool(source.ledger)
        how = ("given by model.init_flops" if self.cfg.model.init_flops is not None else
               "the source checkpoint's own ledger" if source.ledger else
               "unknown: not counted (set model.init_flops to include it)")
        return {"from": str(source.path), "kind": source.kind, "step": source.step, "arch": source.shape.arch,
                "train_flops": self.ledger.init_train if known else None, "train_flops_note": how,
                "differences": list(source.notes)}

    def _unclaim(self, fresh: bool) -> None:
        """Refused after taking the lock: leave no directory this process made for nothing."""
        if self.lock is not None:
            self.lock.release()
            if fresh:
                (self.run_dir / LOCK_NAME).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.run_dir.rmdir()  # only when empty

    def student_side(self) -> StudentSide:
        c = self.cfg
        return StudentSide(self.device, self.amp_dtype, self.shape.vocab_size, self.shape.context,
                           self.data_meta["tokenizer_sha256"], str(self.data_dir), self.data_meta.get("key"),
                           len(self.train_tokens), self.val_tokens, self.micro, c.train.eval_sequences,
                           c.distill.diag_sequences, c.distill.teacher_train_flops)

    # ------------------------------------------------------------ checkpoints

    def _restore(self) -> int | None:
        found = ckpt_io.checkpoint_dirs(self.run_dir)
        if not found:
            return None  # killed before the first checkpoint: start over
        ckpt = found[-1]
        meta = ckpt_io.verify_checkpoint(ckpt)
        if meta.get("tokenizer_sha256") != self.data_meta["tokenizer_sha256"]:
            raise DataError(f"checkpoint '{ckpt}' was trained with another tokenizer than the prepared data in "
                            f"'{self.data_dir}': resume with the data settings the run was started with")
        sharded = (ckpt / "dcp").is_dir()
        if sharded != (self.parallel == "fsdp"):
            raise CheckpointError(f"checkpoint '{ckpt}' was written {'with' if sharded else 'without'} train.parallel=fsdp: "
                                  f"resume it {'with' if sharded else 'without'} fsdp")
        if sharded:
            dist.load_sharded(ckpt / "dcp", self.model, self.optimizer)
        else:
            ckpt_io.load_weights(ckpt, self.model)
        state = ckpt_io.load_state(ckpt)
        try:
            if not sharded:
                self.optimizer.load_state_dict(state["optimizer"])
            self.sampler.load_state_dict(state["sampler"])
            self.policy.load_state_dict(state["policy"])
            self.ledger = FlopsLedger.from_state(state["ledger"])
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.guard.load_state_dict(state.get("guard", {}))
            ranks = state.get("rng_ranks", [state["rng"]])
            if dist.rank() < len(ranks):  # resumed on more processes: the new ranks keep a fresh (seed, rank) stream
                _set_rng_state(ranks[dist.rank()], self.device)
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint '{ckpt}' does not match this run's state ({e}): it belongs to another run") from None
        self.step = meta["step"]
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        return self.step

    def _divergence_hint(self) -> str:
        found = ckpt_io.checkpoint_dirs(self.run_dir)
        where = f"the last good checkpoint is step {int(found[-1].name[5:])}" if found else "no checkpoint was written"
        return (f"nothing from the diverged steps was saved and {where}: continue with a lower learning rate, e.g. "
                f"--resume --allow-change train.lr_max train.lr_max={self.guard.suggested_lr(self.cfg.train.lr_max):.3g} "
                "(in an experiment: lower it in the recipe)")

    def save(self, val_loss: float | None = None) -> Path | None:
        """Write a checkpoint, after checking that its weights are finite and evaluate to a sane loss. Every rank
        takes part; rank 0 writes (under FSDP every rank writes its shard with DCP)."""
        if val_loss is None:
            val_loss = self.validate()["loss"]
        on_schedule = self.step % self.cfg.train.checkpoint_every == 0  # not the extra one at an early max_steps
        self.guard.check_checkpoint(self.step, self.model, val_loss, self._divergence_hint, record=on_schedule)
        state = {
            "sampler": self.sampler.state_dict(),
            "policy": self.policy.state_dict(),
            "ledger": self.ledger.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": _rng_state(self.device),
            "rng_ranks": dist.gather(_rng_state(self.device)),  # each rank's dropout stream
            "elapsed_s": self._elapsed(),
            "guard": self.guard.state_dict(),
        }
        meta = {
            "tokenizer_sha256": self.data_meta["tokenizer_sha256"],
            "vocab_size": self.shape.vocab_size,
            "model": to_dict(self.shape),
            "tokens": self.step * self.tokens_per_step,
            "ledger": self.ledger.state_dict(),
            "val_loss": val_loss,
        }
        weights, shards = self.model, None
        if self.parallel == "fsdp":
            shards = self.run_dir / "checkpoints" / f".step_{self.step:08d}.dcp"
            dist.save_sharded(shards, self.model, self.optimizer)
            weights = dist.full_model(self.model)  # on rank 0: the whole model, for eval, teachers and reports
        else:
            state["optimizer"] = self.optimizer.state_dict()
        path = None
        if dist.is_main():
            path = ckpt_io.save_checkpoint(self.run_dir, self.step, weights, state, meta, self.cfg.train.keep_checkpoints,
                                           shards=shards)
        dist.barrier()  # a checkpoint on disk means every rank got past its step
        return path

    # ------------------------------------------------------------ one step

    def _micro_step(self, x, y, knobs: StepKnobs, starts=None) -> tuple[float, dict]:
        with autocast_context(self.device, self.amp_dtype):
            logits = self.forward(x)
        for ext in self.extensions:
            ext.on_forward(self.step, starts, logits)
        signal = self.teacher.signal(x, starts) if knobs.kd_on and self.teacher is not None else None
        # before the loss: the fused KD kernel may overwrite the teacher's logits
        t_ce = {"teacher_train_ce": teacher_ce(signal, y)} if signal is not None and self.policy.wants_teacher_ce else {}
        loss, ce, extra = student_loss(logits, y, signal, knobs, self.cfg.distill, self.kd_loss)
        extra.update(t_ce)
        (loss / self.accum).backward() if self.scaler is None else self.scaler.scale(loss / self.accum).backward()
        return ce, extra

    def train_step(self) -> dict:
        knobs = self.policy.knobs(self.step)
        lr = step_lr(self.step, self.cfg.train, knobs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        ce_sum, extras = 0.0, {}
        for i in range(self.accum):
            x, y = self.sampler.next_batch()
            with dist.grad_sync(self.forward, last_micro_step=i == self.accum - 1):
                ce, extra = self._micro_step(x.to(self.device), y.to(self.device), knobs, self.sampler.last_starts)
            ce_sum += ce
            for k, v in extra.items():
                extras[k] = extras.get(k, 0.0) + v / self.accum
        train_loss, *values = dist.mean([ce_sum / self.accum, *extras.values()])  # logged: the global batch's mean
        extras = dict(zip(extras, values))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        # the norm is logged (before clipping): it shows how the gradient's scale moves at a KD switch
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip or math.inf)
        grad_norm = (grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm).item()  # FSDP: a DTensor
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ledger.add_student(self.shape, self.tokens_per_step)
        if knobs.kd_on and self.teacher is not None:
            self.ledger.add_teacher_flops(*self.teacher.inference_flops(self.tokens_per_step), self.tokens_per_step)
        self.policy.on_step(self.step, train_loss, extras.get("teacher_train_ce"))
        self.step += 1
        return {"lr": lr, "train_loss": train_loss, "grad_norm": grad_norm, "alpha": knobs.alpha, "kd_on": knobs.kd_on,
                "temperature": knobs.temperature, **extras}

    # ------------------------------------------------------------ evaluation

    def validate(self, tokens=None, max_sequences="default", bucket=None) -> dict:
        """Loss on the split's first `max_sequences` blocks (default train.eval_sequences), on any layout; the
        micro-batch only sets how many go through one forward."""
        n = self.cfg.train.eval_sequences if max_sequences == "default" else max_sequences
        return evaluate(self.model, self.val_tokens if tokens is None else tokens, self.shape.context, self.micro,
                        self.device, self.amp_dtype, n, bucket)

    def _charge_diagnostics(self, tokens: int) -> None:
        """KD diagnostics run the student and the teacher forward over `tokens` validation tokens."""
        self.ledger.add_eval(self.shape, tokens)
        self.ledger.add_eval_flops(*self.teacher.inference_flops(tokens))

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    # ------------------------------------------------------------ the loop

    def fit(self) -> dict:
        t = self.cfg.train
        if self.synthetic:
            print("WARNING: training on SYNTHETIC text (no real corpus was found): the numbers mean nothing "
                  "about language modelling. Set data.corpus or BOOTDISTILL_CORPUS to real text.")
        if self.teacher is not None and not self.teacher.train_flops_known:
            print("note: the teacher's training compute is unknown (a Hugging Face model): the FLOPs totals count no "
                  "teacher training; set distill.teacher_train_flops to include it")
        init = self._init_summary()
        if init is not None:
            print(f"note: the model starts from the weights of {init['from']}; their training compute: "
                  f"{init['train_flops_note']}" + "".join(f"; {d}" for d in init["differences"]))
        n = count_params(self.shape)
        print(f"run {self.run_dir}: model {n['total'] / 1e6:.2f}M params, {self.tokens_per_step} tokens/step "
              f"({self.micro} x {self.shape.context} x {self.accum} accum), {self.max_steps} steps, "
              f"precision {self.amp_dtype or torch.float32}, device {self.device}, policy {self.policy.name}"
              + (f", {dist.world()} processes ({self.parallel})" if dist.world() > 1 else ""))
        peak = peak_flops(self.device, self.amp_dtype or torch.float32)
        exact_per_token = flops_per_token(self.shape, training=True, exact=True)
        teacher_val = self.teacher.val_loss if self.teacher is not None else None
        self._t0 = time.perf_counter()
        window_t, window_tokens = time.perf_counter(), 0
        bar = tqdm(total=self.max_steps, initial=self.step, disable=not self.cfg.log.progress or not dist.is_main(), unit="step",
                   dynamic_ncols=True)
        last_val = last_tps = None
        lines = not self.cfg.log.progress and dist.is_main()  # no bar (logs, background jobs): a line per evaluation
        first_step, started = self.step, time.perf_counter()
        while self.step < self.max_steps:
            if self.teacher is not None and self.policy.teacher_done(self.step):
                self.teacher.release()
            info = self.train_step()
            window_tokens += self.tokens_per_step
            self.guard.check_step(self.step, info["train_loss"], self._divergence_hint, info["lr"])
            row = {"step": self.step, "tokens": self.step * self.tokens_per_step, **self.ledger.row(), **info}
            is_eval = self.step % t.eval_every == 0 or self.step == self.max_steps
            if self.step % t.log_every == 0 or is_eval:
                now = time.perf_counter()
                tps = window_tokens / max(now - window_t, 1e-9)
                row.update(tokens_per_s=tps, mfu=tps * exact_per_token / peak)
                window_t, window_tokens = now, 0
            if is_eval:
                # only scheduled evaluations steer the policy and are charged: the extra one at the last step is
                # the run's final evaluation, and one at an early max_steps must not change what a resumed run does
                on_schedule = self.step % t.eval_every == 0
                val = self.validate()
                if on_schedule:
                    self.ledger.add_eval(self.shape, val["tokens"])
                self.guard.check_val(self.step, val["loss"], self._divergence_hint, record=on_schedule)
                last_val = row["val_loss"] = val["loss"]
                row["val_entropy"] = val["entropy"]
                if t.eval_snapshots and on_schedule:
                    weights = dist.full_model(self.model) if self.parallel == "fsdp" else self.model
                    if dist.is_main():
                        ckpt_io.save_snapshot(self.run_dir, self.step, weights)
                if teacher_val is not None:
                    row["teacher_val_loss"] = teacher_val
                    diag = self.teacher.diagnostics(self.model)
                    tokens = diag.pop("diag_tokens", 0)
                    if on_schedule:
                        self._charge_diagnostics(tokens)
                    row.update(diag)
                row.update(flops_eval=self.ledger.eval, flops_eval_exact=self.ledger.eval_exact)
                events = self.policy.on_eval(self.step, row["tokens"], last_val, teacher_val) if on_schedule else []
                if events:
                    row["events"] = events
                    bar.write(f"step {self.step}: {', '.join(events)}")
                if lines:
                    print(progress_line(self.step, self.max_steps, self.step - first_step,
                                        time.perf_counter() - started, self.tokens_per_step, last_val), flush=True)
            if "tokens_per_s" in row or is_eval:
                self.logger.log(row)
            bar.update(1)
            last_tps = row.get("tokens_per_s", last_tps)
            bar.set_postfix(loss=f"{info['train_loss']:.3f}", val=f"{last_val:.3f}" if last_val else "-",
                            tok_s=f"{last_tps:.0f}" if last_tps else "-", refresh=False)
            if self.step % t.checkpoint_every == 0 or self.step == self.max_steps:
                self.save(last_val if is_eval else None)
        bar.close()
        return self.finish()

    def finish(self) -> dict:
        for ext in self.extensions:
            ext.on_finish(self.model, self.step)
        n_final = self.cfg.train.final_eval_sequences
        final_val = self.validate(max_sequences=n_final)
        test = self.validate(tokens=token_file(self.data_dir, "test"), max_sequences=n_final, bucket=64)
        n = count_params(self.shape)
        summary = {
            "run_dir": str(self.run_dir),
            "steps": self.step,
            "tokens": self.step * self.tokens_per_step,
            "tokens_per_step": self.tokens_per_step,
            "n_params": n["total"],
            "n_params_non_embedding": n["non_embedding"],
            "model": to_dict(self.shape),
            "final_val_loss": final_val["loss"],
            "test_loss": test["loss"],
            "final_val_bpb": bits_per_byte(final_val["loss"], self.data_meta, "val"),  # bits per byte of the split's text
            "test_bpb": bits_per_byte(test["loss"], self.data_meta, "test"),
            "positional_test_loss": test["positional"],
            "flops": {**self.ledger.row(), "proxy": self.ledger.proxy,
                      "note": "flops_* columns use the 6N proxy (2N for teacher inference); flops_total_exact adds attention"},
            "policy": self.policy.summary(),
            "teacher": self.teacher.summary(self.ledger) if self.teacher is not None else None,
            "init": self._init_summary(),
            **{k: v for ext in self.extensions for k, v in ext.summary().items()},
            "data": {"dir": str(self.data_dir), "source": self.data_meta.get("source"), "synthetic": self.synthetic,
                     "tokenizer_sha256": self.data_meta["tokenizer_sha256"]},
            "precision": str(self.amp_dtype or torch.float32).replace("torch.", ""),
            "device": str(self.device),
            "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads()},
            "processes": dist.world(),
            "parallel": self.parallel,
            "wall_s": self._elapsed(),
        }
        if dist.is_main():
            atomic_write_json(self.run_dir / "summary.json", summary)
        self.logger.close()
        dist.barrier()  # the next run of an experiment may read this one's files
        if self.lock is not None:
            self.lock.release()
        print(f"done: val loss {final_val['loss']:.4f}, test loss {test['loss']:.4f}, "
              f"{summary['flops']['flops_total'] / 1e15:.4f} PFLOPs; results in {self.run_dir}")
        if self.synthetic:
            print("WARNING: these results come from SYNTHETIC text, not a real corpus.")
        return summary
