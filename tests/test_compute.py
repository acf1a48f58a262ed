import pytest

from bootdistill.compute import FlopsLedger, fixed_aspect_flops_per_token, flops_per_token
from bootdistill.shape import ModelShape, count_params


def test_flops_per_token_formulas():
    s = ModelShape(5000, 256, 6, 8, 1024)
    n = count_params(s)
    assert flops_per_token(s) == 6 * n["total"]
    assert flops_per_token(s, training=False) == 2 * n["total"]
    matmul = 6 * 12 * 256 * 256 + 5000 * 256
    assert n["matmul"] == matmul
    assert flops_per_token(s, exact=True) == 6 * matmul + 12 * 6 * 1024 * 256
    assert flops_per_token(s, training=False, exact=True) == 2 * matmul + 4 * 6 * 1024 * 256


def test_fixed_aspect_form():
    assert fixed_aspect_flops_per_token(1e6, 0.0, 0.0) == 2e6
    assert fixed_aspect_flops_per_token(1e6, 1.0, 0.0) == pytest.approx(2e6 * (1 + 1e-2))


def test_ledger_adds_up_and_round_trips():
    s, t = ModelShape(5000, 256, 6, 8, 1024), ModelShape(5000, 128, 5, 8, 512)
    led = FlopsLedger(teacher_train=7.0, teacher_train_exact=8.0)
    led.add_student(s, 1000)
    led.add_teacher_inference(t, 1000)
    led.add_student(s, 500)
    assert led.student_train == 1500 * 6 * count_params(s)["total"]
    assert led.teacher_inference == 1000 * 2 * count_params(t)["total"]
    assert led.total == led.student_train + led.teacher_inference + 7.0
    assert led.row()["flops_total"] == led.total
    assert FlopsLedger.from_state(led.state_dict()) == led
