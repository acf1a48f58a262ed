"""The CUDA path: bf16 autocast, fp16 + GradScaler, fused AdamW, SDPA flash kernels, torch.compile, the fused KD
loss on GPU tensors, the GPU peak. Skipped without a GPU; benchmarks/gpu_check.sh runs them on one."""

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli, tiny_overrides
from bootdistill.compute import peak_flops
from bootdistill.config import load_config
from bootdistill.distill import fused_kd, losses
from bootdistill.model import GPT
from bootdistill.shape import ModelShape
from bootdistill.runtime.device import resolve_precision
from bootdistill.train.trainer import Trainer

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)")]
CUDA = torch.device("cuda")


def trainer(corpus, tmp_path, name="run", resume=False, **extra) -> Trainer:
    over = {"train.device": "cuda", "train.precision": "bf16", "model.d_model": 64, "model.n_heads": 2, **extra}
    return Trainer(load_config(None, tiny_overrides(corpus, tmp_path / name, tmp_path / "prep", **over)), resume=resume)


def test_precision_auto_is_bf16_on_cuda_and_peak_is_published():
    assert resolve_precision("auto", CUDA) == (torch.bfloat16, False)
    assert resolve_precision("fp16", CUDA) == (torch.float16, True)
    assert peak_flops(CUDA, torch.bfloat16) > 1e13


def test_attention_runs_on_the_flash_kernel_in_bf16():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = GPT(ModelShape(512, 128, 2, 4, 256, dropout=0.1)).to(CUDA)
    x = torch.randint(0, 512, (4, 256), device=CUDA)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", torch.bfloat16):  # raises if unusable
        logits = model(x)
        F.cross_entropy(logits.float().flatten(0, 1), x.flatten()).backward()
    assert logits.dtype == torch.bfloat16
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):  # flash vs the math kernel: same numbers
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            a = model(x).float()
        with sdpa_kernel([SDPBackend.MATH]):
            b = model(x).float()
    assert (a - b).abs().max() < 0.1 * a.abs().max()


def test_bf16_training_uses_fused_adamw_and_learns(tiny_corpus, tmp_path):
    tr = trainer(tiny_corpus, tmp_path)
    assert tr.device.type == "cuda" and tr.amp_dtype == torch.bfloat16 and tr.scaler is None
    assert all(g["fused"] for g in tr.optimizer.param_groups)
    assert next(tr.model.parameters()).dtype == torch.float32  # master weights stay fp32 under autocast
    summary = tr.fit()
    assert summary["device"].startswith("cuda") and summary["precision"] == "bfloat16"
    assert summary["final_val_loss"] < 5.5  # ln(300) = 5.70 at init


def test_fp16_uses_a_grad_scaler_that_resumes(tiny_corpus, tmp_path):
    tr = trainer(tiny_corpus, tmp_path, **{"train.precision": "fp16", "train.max_steps": 4})
    assert tr.amp_dtype == torch.float16 and tr.scaler is not None
    tr.fit()
    scale = tr.scaler.get_scale()
    assert scale > 0 and all(torch.isfinite(p).all() for p in tr.model.parameters())
    again = trainer(tiny_corpus, tmp_path, resume=True, **{"train.precision": "fp16", "train.max_steps": 8})
    assert again.step == 4 and again.scaler.get_scale() == scale  # scaler state came back from the checkpoint
    assert again.fit()["steps"] == 8


def test_compile_on_cuda_trains_like_eager(tiny_corpus, tmp_path):
    losses_seen = {}
    for compiled in (False, True):
        tr = trainer(tiny_corpus, tmp_path, name=f"c{compiled}", **{"train.compile": str(compiled).lower(),
                                                                    "model.dropout": 0.0, "train.max_steps": 3})
        losses_seen[compiled] = [tr.train_step()["train_loss"] for _ in range(3)]
        tr.logger.close()
    assert losses_seen[True] == pytest.approx(losses_seen[False], rel=2e-2)


def test_fused_kd_loss_on_cuda_matches_reference_without_the_cpu_pool(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))  # the CPU pool would start here for CPU tensors
    started = []
    monkeypatch.setattr(fused_kd, "ThreadPoolExecutor", lambda *a, **k: started.append(a) or pytest.fail("pool on CUDA"))
    monkeypatch.setattr(fused_kd, "_POOL", None)  # a pool left by CPU tests would be reused without a new executor
    monkeypatch.setattr(fused_kd, "CUDA_CHUNK_ELEMENTS", 1 << 14)  # several chunks at this size too
    try:
        torch.manual_seed(0)
        N, V = 512, 1000
        zs = (3 * torch.randn(N, V, device=CUDA)).requires_grad_()
        zt = 3 * torch.randn(N, V, device=CUDA)
        labels = torch.randint(0, V, (N,), device=CUDA)
        out = losses.ce_and_kd(zs, labels, zt.clone(), temperature=2.0, z_loss=True)
        (out.ce.mean() + out.kd.mean() + 1e-4 * out.z.mean()).backward()
        ref_zs = zs.detach().clone().requires_grad_()
        ref_kd = losses.kd_loss("kl", ref_zs, zt, temperature=2.0, fused=False)
        ref_ce = F.cross_entropy(ref_zs, labels, reduction="none")
        ref_z = torch.logsumexp(ref_zs, -1) ** 2
        (ref_ce.mean() + ref_kd.mean() + 1e-4 * ref_z.mean()).backward()
    finally:
        torch.set_num_threads(before)
    assert not started and fused_kd._POOL is None
    torch.testing.assert_close(out.kd, ref_kd, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.ce, ref_ce, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(zs.grad, ref_zs.grad, rtol=1e-4, atol=1e-6)


def test_bootstrapped_run_on_cuda_counts_the_teacher(tiny_corpus, tmp_path):
    common = {"train.device": "cuda", "train.precision": "bf16"}
    teacher = tmp_path / "teacher"
    r = run_cli("train", *tiny_overrides(tiny_corpus, teacher, tmp_path / "prep", **common, **{"model.d_model": 16}))
    assert r.returncode == 0, r.stderr
    student = tmp_path / "student"
    r = run_cli("train", *tiny_overrides(tiny_corpus, student, tmp_path / "prep", **common, **{
        "model.d_model": 64, "distill.policy": "bootstrapped", "distill.teacher": str(teacher)}))
    assert r.returncode == 0, r.stderr
    s = json.loads((student / "summary.json").read_text())
    assert s["device"].startswith("cuda") and s["flops"]["flops_teacher_train"] > 0
    assert s["flops"]["flops_teacher_inference"] > 0
