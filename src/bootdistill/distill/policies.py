"""Distillation policies: each step they give the trainer its knobs; after each validation they may change.

The trainer knows nothing of "bootstrapped" or "SALT": it asks `policy.knobs(step)` and skips the teacher
when alpha is 0. A policy is an alpha schedule (how strong KD is at each step), a stop rule (when KD ends for
good) and a KD-aware LR factor. Registered here, in one place:

- classical:    alpha = 0 always; the teacher is never loaded.
- kd:           KD throughout (RKD), alpha from the schedule.
- fixed:        KD for the first `kd_steps` steps (SALT Alg. 1; "KD for the first N steps").
- bootstrapped: KD while the teacher is better; at the first validation where
                student <= (1 + margin) * teacher, KD stops for good (bootstrapped paper §2.3).
                switch_on=val compares validation losses; switch_on=train compares, at the same evaluation
                steps, the student's mean training CE over the last eval_every steps with the teacher's CE on
                the same batches (computed from the logits KD already has: no evaluation decides the switch).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, closest


@dataclass(frozen=True)
class StepKnobs:
    alpha: float = 0.0  # KD weight; 0 -> the teacher does not run
    temperature: float = 1.0
    teacher_temperature: float | None = None  # the teacher side's own temperature (SALT's 1/rho); None = temperature
    loss: str = "kl"
    lr_factor: float = 1.0  # multiplies the LR schedule (KD-aware schedules)
    # post-KD cosine: from this step the LR restarts at lr_factor x lr_restart_factor x the schedule's LR of the
    # step before, and decays by cosine to lr_min (train/schedule.step_lr computes it)
    lr_restart_step: int | None = None
    lr_restart_factor: float = 1.0

    @property
    def kd_on(self) -> bool:
        return self.alpha > 0


# ------------------------------------------------------------------ alpha schedules


def alpha_at(step: int, cfg, train_cfg) -> float:
    """Alpha of `step` under cfg.alpha_schedule, before any stop rule (SALT App. K; design-space §3.3)."""
    a, name, end = cfg.alpha, cfg.alpha_schedule, cfg.kd_steps
    if name == "constant":
        return a
    if name == "wsd":  # aligned with a WSD LR: warm up with the LR, decay over its last decay_fraction
        warm = train_cfg.warmup_steps
        decay_start = train_cfg.total_steps - max(1, round(train_cfg.decay_fraction * train_cfg.total_steps))
        if warm and step < warm:
            return a * (step + 1) / warm
        if step < decay_start:
            return a
        return max(0.0, a * (1 - (step - decay_start) / max(1, train_cfg.total_steps - decay_start)))
    if step >= end:
        return 0.0 if name != "linear_increase" else a
    if name == "step":
        return a
    if name == "linear_increase":
        return a * (step + 1) / end
    if name == "linear_decrease":
        return a * (1 - step / end)
    start = end - cfg.alpha_window
    if step < start:
        return a
    progress = (step - start) / max(1, cfg.alpha_window)
    if name == "linear_decay":
        return a * (1 - progress)
    if name == "ratio_decay":  # alpha/(1-alpha) falls linearly to 0
        ratio = a / (1 - a) * (1 - progress)
        return ratio / (1 + ratio)
    raise ConfigError(f"distill.alpha_schedule '{name}' is unknown")


ALPHA_SCHEDULES = ("constant", "step", "linear_decay", "ratio_decay", "linear_increase", "linear_decrease", "wsd")
NEEDS_KD_STEPS = {"step", "linear_decay", "ratio_decay", "linear_increase", "linear_decrease"}


# ------------------------------------------------------------------ policies


class Policy:
    name = "base"
    needs_teacher = True
    wants_teacher_ce = False  # the trainer then passes the teacher's CE on each KD batch to on_step

    @classmethod
    def check(cls, cfg) -> None:
        """ConfigError for distill settings this policy cannot run with (check_policy calls it)."""

    def check_teacher(self, sparse: bool) -> None:
        """ConfigError when the policy cannot work with the loaded teacher (`sparse`: it gives top-k signals)."""

    def on_step(self, step: int, student_ce: float, teacher_ce: float | None) -> None:
        """See a finished training step's CE (and the teacher's on the same batch, when asked for)."""

    def knobs(self, step: int) -> StepKnobs:
        raise NotImplementedError

    def on_eval(self, step: int, tokens: int, student_val: float, teacher_val: float | None) -> list[str]:
        """See a validation result; return events worth logging (e.g. 'kd_stopped ...')."""
        return []

    def teacher_done(self, step: int) -> bool:
        """True once the teacher will never be asked again (it can be freed)."""
        return False

    def kd_steps_bound(self, steps: int) -> tuple[int, bool]:
        """For the planner: the most steps of a `steps`-step run that run the teacher, and whether that is only an
        upper bound (the stop is decided during training)."""
        return steps, False

    def summary(self) -> dict:
        return {"policy": self.name}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Classical(Policy):
    name = "classical"
    needs_teacher = False

    def __init__(self, cfg=None, train_cfg=None):
        pass

    def knobs(self, step: int) -> StepKnobs:
        return StepKnobs(alpha=0.0)

    def teacher_done(self, step: int) -> bool:
        return True

    def kd_steps_bound(self, steps: int) -> tuple[int, bool]:
        return 0, False


class Distill(Policy):
    """KD throughout (the `kd` policy); subclasses add a stop rule."""

    name = "kd"

    def __init__(self, cfg, train_cfg):
        self.cfg, self.train_cfg = cfg, train_cfg
        self.stopped_step: int | None = None  # KD ended for good here
        self.stopped_tokens: int | None = None

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.teacher is None:
            raise ConfigError(f"distill.policy={cls.name} needs a teacher: set distill.teacher=RUN_DIR (a trained bootdistill run)")
        if cfg.alpha_schedule not in ALPHA_SCHEDULES:
            raise ConfigError(f"distill.alpha_schedule '{cfg.alpha_schedule}' is unknown (valid: {', '.join(ALPHA_SCHEDULES)})")
        if cfg.alpha_schedule in NEEDS_KD_STEPS and cfg.kd_steps is None:
            raise ConfigError(f"distill.alpha_schedule={cfg.alpha_schedule} needs distill.kd_steps (where KD ends)")
        if cfg.alpha_schedule == "ratio_decay" and cfg.alpha >= 1:
            raise ConfigError("distill.alpha_schedule=ratio_decay needs distill.alpha < 1 (alpha/(1-alpha) must be finite)")
        if cfg.post_kd_lr not in ("scale", "cosine"):
            raise ConfigError(f"distill.post_kd_lr must be scale or cosine, got '{cfg.post_kd_lr}'")
        if cfg.kd_steps is not None and cfg.alpha_window > cfg.kd_steps:
            raise ConfigError(f"distill.alpha_window ({cfg.alpha_window}) must not exceed distill.kd_steps ({cfg.kd_steps})")

    def stop_step(self) -> int | None:
        """The step from which KD is off for good, if known."""
        if self.stopped_step is not None:
            return self.stopped_step
        if self.cfg.alpha_schedule in NEEDS_KD_STEPS - {"linear_increase"}:
            return self.cfg.kd_steps
        return None

    def lr_factor(self, step: int) -> float:
        c = self.cfg
        stop = self.stop_step()
        if stop is None or step < stop:
            return c.kd_lr_factor
        if c.lr_drop_steps and step < stop + c.lr_drop_steps:
            frac = (step - stop + 1) / c.lr_drop_steps
            return c.kd_lr_factor + (c.post_kd_lr_factor - c.kd_lr_factor) * frac
        return c.post_kd_lr_factor

    def knobs(self, step: int) -> StepKnobs:
        stop = self.stop_step()
        after = stop is not None and step >= stop
        alpha = 0.0 if after else alpha_at(step, self.cfg, self.train_cfg)
        c = self.cfg
        kd = {"alpha": alpha, "temperature": c.temperature, "teacher_temperature": c.teacher_temperature, "loss": c.loss}
        if after and c.post_kd_lr == "cosine" and stop > 0:  # drop to post_kd_lr_factor x the LR KD ended at
            return StepKnobs(**kd, lr_factor=c.post_kd_lr_factor, lr_restart_step=stop, lr_restart_factor=c.kd_lr_factor)
        return StepKnobs(**kd, lr_factor=self.lr_factor(step))

    def teacher_done(self, step: int) -> bool:
        stop = self.stop_step()
        return stop is not None and step >= stop

    def summary(self) -> dict:
        return {"policy": self.name, "kd_stopped_step": self.stopped_step, "kd_stopped_tokens": self.stopped_tokens,
                "kd_steps": self.stop_step()}

    def state_dict(self) -> dict:
        return {"stopped_step": self.stopped_step, "stopped_tokens": self.stopped_tokens}

    def load_state_dict(self, state: dict) -> None:
        self.stopped_step, self.stopped_tokens = state.get("stopped_step"), state.get("stopped_tokens")


class FixedSteps(Distill):
    name = "fixed"

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.kd_steps is None:
            raise ConfigError("distill.policy=fixed needs distill.kd_steps (KD for the first N steps)")
        super().check(cfg)

    def stop_step(self) -> int | None:
        return self.cfg.kd_steps

    def kd_steps_bound(self, steps: int) -> tuple[int, bool]:
        return min(steps, self.cfg.kd_steps), False


class Bootstrapped(Distill):
    name = "bootstrapped"

    def __init__(self, cfg, train_cfg):
        super().__init__(cfg, train_cfg)
        self.window = [0.0, 0.0, 0]  # switch_on=train: student CE sum, teacher CE sum, steps since the last check

    @property
    def wants_teacher_ce(self) -> bool:
        return self.cfg.switch_on == "train" and self.stopped_step is None

    def kd_steps_bound(self, steps: int) -> tuple[int, bool]:
        return steps, True  # KD stops at a step decided by the validations

    def check_teacher(self, sparse: bool) -> None:
        if self.wants_teacher_ce and sparse:
            raise ConfigError("distill.switch_on=train compares the teacher's CE on each training batch, which needs "
                              "its full logits; a cached (top-k) teacher does not have them: use distill.switch_on=val "
                              "or a live teacher")

    def on_step(self, step, student_ce, teacher_ce):
        if self.wants_teacher_ce and teacher_ce is not None:
            self.window = [self.window[0] + student_ce, self.window[1] + teacher_ce, self.window[2] + 1]

    def on_eval(self, step, tokens, student_val, teacher_val):
        if self.stopped_step is not None:
            return []
        if self.cfg.switch_on == "train":
            (student_sum, teacher_sum, n), self.window = self.window, [0.0, 0.0, 0]
            if n == 0:
                return []
            student, teacher, what, over = student_sum / n, teacher_sum / n, "train CE", f" (means of {n} steps)"
        elif teacher_val is None:
            return []
        else:
            student, teacher, what, over = student_val, teacher_val, "val", ""
        if student <= (1 + self.cfg.margin) * teacher:
            self.stopped_step, self.stopped_tokens = step, tokens
            return [f"kd_stopped: student {what} {student:.4f} <= (1 + {self.cfg.margin}) x teacher {what} "
                    f"{teacher:.4f}{over}"]
        return []

    def summary(self) -> dict:
        return {**super().summary(), "switch_on": self.cfg.switch_on}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "window": list(self.window)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.window = list(state.get("window", [0.0, 0.0, 0]))


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (Classical, Distill, FixedSteps, Bootstrapped)}


def check_policy(distill_cfg) -> None:
    """The distill settings the chosen policy reads, checked in one place: when a config loads and by build_policy."""
    name = distill_cfg.policy
    if name not in POLICIES:
        raise ConfigError(f"distill.policy '{name}' is unknown{closest(name, list(POLICIES))}")
    POLICIES[name].check(distill_cfg)


def build_policy(distill_cfg, train_cfg=None) -> Policy:
    check_policy(distill_cfg)
    return POLICIES[distill_cfg.policy](distill_cfg, train_cfg)
