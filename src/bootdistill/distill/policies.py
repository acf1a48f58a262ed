"""Distillation policies: each step they give the trainer its knobs; after each validation they may change.

The trainer knows nothing of "bootstrapped" or "SALT": it asks `policy.knobs(step)` and skips the teacher
when alpha is 0. Classical training is the policy "alpha = 0 always".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepKnobs:
    alpha: float = 0.0  # KD weight; 0 -> the teacher does not run
    temperature: float = 1.0
    loss: str = "kl"
    lr_factor: float = 1.0  # multiplies the LR schedule (KD-aware schedules)

    @property
    def kd_on(self) -> bool:
        return self.alpha > 0


class Policy:
    name = "base"
    needs_teacher = True

    def knobs(self, step: int) -> StepKnobs:
        raise NotImplementedError

    def on_eval(self, step: int, tokens: int, student_val: float, teacher_val: float | None) -> list[str]:
        """See a validation result; return events worth logging (e.g. 'kd_stopped')."""
        return []

    def teacher_done(self, step: int) -> bool:
        """True once the teacher will never be asked again (it can be freed)."""
        return False

    def summary(self) -> dict:
        return {"policy": self.name}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Classical(Policy):
    name = "classical"
    needs_teacher = False

    def knobs(self, step: int) -> StepKnobs:
        return StepKnobs(alpha=0.0)

    def teacher_done(self, step: int) -> bool:
        return True


POLICIES: dict[str, type[Policy]] = {"classical": Classical}


def build_policy(distill_cfg) -> Policy:
    from ..config import _closest
    from ..errors import ConfigError

    name = distill_cfg.policy
    if name not in POLICIES:
        raise ConfigError(f"distill.policy '{name}' is unknown{_closest(name, list(POLICIES))}")
    cls = POLICIES[name]
    return cls() if cls is Classical else cls(distill_cfg)
