import pytest

from bootdistill.config import DistillConfig, TrainConfig
from bootdistill.distill.policies import Bootstrapped, Classical, build_policy
from bootdistill.errors import ConfigError


def cfg(**kw):
    base = {"teacher": "some/run", "policy": "kd"}
    base.update(kw)
    return DistillConfig(**base)


TRAIN = TrainConfig(warmup_steps=10, total_steps=100, decay_fraction=0.2)


def alphas(policy, steps):
    return [policy.knobs(s).alpha for s in steps]


def test_classical_never_uses_teacher():
    p = build_policy(DistillConfig(), TRAIN)
    assert isinstance(p, Classical) and not p.needs_teacher and p.knobs(0).alpha == 0 and not p.knobs(5).kd_on


def test_alpha_schedules():
    p = build_policy(cfg(alpha=0.8), TRAIN)
    assert alphas(p, [0, 50, 99]) == [0.8, 0.8, 0.8]
    p = build_policy(cfg(alpha=0.8, alpha_schedule="step", kd_steps=20), TRAIN)
    assert alphas(p, [0, 19, 20, 50]) == [0.8, 0.8, 0.0, 0.0]
    p = build_policy(cfg(alpha=0.8, alpha_schedule="linear_decay", kd_steps=20, alpha_window=10), TRAIN)
    assert alphas(p, [9, 10, 15, 20]) == pytest.approx([0.8, 0.8, 0.4, 0.0])
    p = build_policy(cfg(alpha=0.5, alpha_schedule="ratio_decay", kd_steps=20, alpha_window=10), TRAIN)
    # ratio alpha/(1-alpha) = 1 falls linearly: half way it is 0.5 -> alpha = 1/3
    assert alphas(p, [10, 15, 20]) == pytest.approx([0.5, 1 / 3, 0.0])
    p = build_policy(cfg(alpha=1.0, alpha_schedule="linear_increase", kd_steps=10), TRAIN)
    assert alphas(p, [0, 4, 9, 50]) == pytest.approx([0.1, 0.5, 1.0, 1.0])
    p = build_policy(cfg(alpha=1.0, alpha_schedule="linear_decrease", kd_steps=10), TRAIN)
    assert alphas(p, [0, 5, 10]) == pytest.approx([1.0, 0.5, 0.0])
    p = build_policy(cfg(alpha=0.9, alpha_schedule="wsd"), TRAIN)
    assert alphas(p, [0, 9, 50, 80, 90, 100]) == pytest.approx([0.09, 0.9, 0.9, 0.9, 0.45, 0.0])


def test_fixed_policy_and_kd_aware_lr():
    p = build_policy(cfg(policy="fixed", kd_steps=20, kd_lr_factor=1.5, post_kd_lr_factor=0.5, lr_drop_steps=4), TRAIN)
    assert p.knobs(19).alpha == 1.0 and p.knobs(20).alpha == 0.0
    assert [p.knobs(s).lr_factor for s in (0, 19, 20, 21, 23, 30)] == pytest.approx([1.5, 1.5, 1.25, 1.0, 0.5, 0.5])
    assert not p.teacher_done(19) and p.teacher_done(20)


def test_bootstrapped_switch_fires_exactly_when_condition_first_holds():
    p = build_policy(cfg(policy="bootstrapped", margin=0.05, kd_lr_factor=2.0, post_kd_lr_factor=0.5), TRAIN)
    assert isinstance(p, Bootstrapped)
    teacher = 3.0
    assert p.on_eval(10, 100, 3.5, teacher) == []  # 3.5 > 3.15
    assert p.on_eval(20, 200, 3.1501, teacher) == []
    events = p.on_eval(30, 300, 3.15, teacher)  # == (1 + 0.05) * 3.0: fires
    assert len(events) == 1 and "kd_stopped" in events[0]
    assert (p.stopped_step, p.stopped_tokens) == (30, 300)
    assert p.knobs(29).alpha == 1.0 and p.knobs(29).lr_factor == 2.0
    assert p.knobs(30).alpha == 0.0 and p.knobs(30).lr_factor == 0.5 and p.teacher_done(30)
    assert p.on_eval(40, 400, 4.0, teacher) == []  # for good: a worse student does not restart KD
    assert p.knobs(41).alpha == 0.0
    q = build_policy(cfg(policy="bootstrapped"), TRAIN)
    q.load_state_dict(p.state_dict())
    assert q.knobs(30).alpha == 0.0 and q.summary()["kd_stopped_step"] == 30


@pytest.mark.parametrize("kw, message", [
    ({"policy": "bootstrapd"}, "did you mean 'bootstrapped'"),
    ({"teacher": None}, "needs a teacher"),
    ({"policy": "fixed"}, "needs distill.kd_steps"),
    ({"alpha_schedule": "step"}, "needs distill.kd_steps"),
    ({"alpha_schedule": "ratio_decay", "kd_steps": 10, "alpha": 1.0}, "alpha < 1"),
    ({"alpha_schedule": "cosine"}, "is unknown"),
    ({"alpha_schedule": "linear_decay", "kd_steps": 10, "alpha_window": 20}, "must not exceed"),
])
def test_bad_policy_config(kw, message):
    with pytest.raises(ConfigError, match=message):
        build_policy(cfg(**kw), TRAIN)


def test_post_kd_cosine_lr_drops_then_decays_to_lr_min():
    train = TrainConfig(warmup_steps=0, total_steps=100, lr_max=1.0, lr_min=0.1)
    p = build_policy(cfg(policy="fixed", kd_steps=20, post_kd_lr="cosine", post_kd_lr_factor=0.5), train)
    from bootdistill.train.schedule import step_lr, train_lr

    def lr(step):
        return step_lr(step, train, p.knobs(step))

    assert p.knobs(19).lr_restart_step is None and lr(19) == train_lr(19, train)  # KD on: the normal schedule
    at_stop = train_lr(19, train) * 0.5
    assert lr(20) == pytest.approx(at_stop)
    assert lr(60) == pytest.approx(0.1 + 0.5 * (at_stop - 0.1))
    assert lr(100) == pytest.approx(0.1) and lr(150) == pytest.approx(0.1)


def test_free_switch_rule_compares_window_means_and_resumes_mid_window():
    p = build_policy(cfg(policy="bootstrapped", margin=0.15, switch_on="train"), TRAIN)
    assert p.wants_teacher_ce and p.summary()["switch_on"] == "train"
    for step, (s, t) in enumerate([(5.0, 4.0), (4.6, 4.0)]):  # mean 4.8 > 1.15 * 4.0
        p.on_step(step, s, t)
    assert p.on_eval(2, 100, student_val=0.0, teacher_val=10.0) == []  # the validation losses play no part
    p.on_step(2, 4.5, 4.0)
    q = build_policy(cfg(policy="bootstrapped", margin=0.15, switch_on="train"), TRAIN)
    q.load_state_dict(p.state_dict())  # a checkpoint between two evaluations keeps the window's sums
    q.on_step(3, 4.3, 4.0)  # mean 4.4 <= 4.6
    assert q.on_eval(4, 200, student_val=9.0, teacher_val=1.0)[0].startswith("kd_stopped: student train CE")
    assert q.stopped_step == 4 and not q.wants_teacher_ce
