"""FLOPs models and the compute ledger: one module used by the trainer, the reports and the planner.

Per token, for a model (gpt2 or llama, shape.py) with N parameters, L layers, width d, context T, vocabulary V:
- `6N` proxy (Kaplan; the bootstrapped paper's eq. 4) for training, `2N` for inference.
- exact: 6 * N_matmul + 12 * L * T * d for training (PaLM's MFU convention, attention QK^T and AV at full
  T), where N_matmul are the weights that take part in a matmul (block linears + LM head); inference is a
  third of that. Grouped-query attention shrinks N_matmul (k, v) but not the attention term (every query head
  attends over T keys).
- fixed aspect ratio (distillation scaling laws App. H): F(N) = 2N (1 + c1 N^(-1/3) + c2 N^(-2/3)).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .shape import ModelShape, count_params

if TYPE_CHECKING:  # torch is imported where a matmul runs: planning and listing stay fast
    import torch


# How much of the teacher a run pays for: (delta_logits, delta_pretraining) of the distillation scaling laws'
# eq. 9 / Table 2. The planner optimises under each; the report measures each from a run's ledger.
SCENARIOS = {"best": (0, 0), "inference": (1, 0), "pretraining": (0, 1), "both": (1, 1)}
SCENARIO_TITLES = {
    "best": "best case (teacher free)",
    "inference": "teacher inference counted",
    "pretraining": "teacher pretraining counted",
    "both": "teacher pretraining + inference counted",
}


def flops_per_token(shape: ModelShape, training: bool = True, exact: bool = False) -> float:
    """FLOPs to process one token: training (forward + backward) or inference (forward only)."""
    if exact:
        n_matmul = count_params(shape)["matmul"]
        forward = 2 * n_matmul + 4 * shape.n_layers * shape.context * shape.d_model
    else:
        forward = 2 * count_params(shape)["total"]
    return 3 * forward if training else forward


def fixed_aspect_flops_per_token(n_params, c1: float, c2: float):
    """App. H: forward FLOPs per token of a model at fixed aspect ratio, F(N) = 2N(1 + c1 N^-1/3 + c2 N^-2/3)."""
    return 2 * n_params * (1 + c1 * n_params ** (-1 / 3) + c2 * n_params ** (-2 / 3))


@dataclass
class FlopsLedger:
    """Cumulative compute of one run, split by who spent it. Both proxies are kept side by side."""

    student_train: float = 0.0
    teacher_inference: float = 0.0
    teacher_train: float = 0.0  # read from the teacher checkpoint's own ledger
    student_train_exact: float = 0.0
    teacher_inference_exact: float = 0.0
    teacher_train_exact: float = 0.0
    init_train: float = 0.0  # the training behind model.init_from's weights: a checkpoint's ledger, or given
    init_train_exact: float = 0.0
    # forward passes of in-training evaluations (the student's, and the teacher's validation loss and
    # diagnostics): not in `total`, which is training compute; the report charges the ones that decide a switch
    eval: float = 0.0
    eval_exact: float = 0.0
    proxy: str = "6N"  # which one `total` reports
    teacher_tokens: int = 0  # tokens that got a teacher signal (KD steps), whatever the source
    extra: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.student_train + self.teacher_inference + self.teacher_train + self.init_train

    @property
    def total_exact(self) -> float:
        return self.student_train_exact + self.teacher_inference_exact + self.teacher_train_exact + self.init_train_exact

    def add_student(self, shape: ModelShape, tokens: int) -> None:
        self.student_train += tokens * flops_per_token(shape, training=True)
        self.student_train_exact += tokens * flops_per_token(shape, training=True, exact=True)

    def add_teacher_inference(self, shape: ModelShape, tokens: int) -> None:
        self.teacher_inference += tokens * flops_per_token(shape, training=False)
        self.teacher_inference_exact += tokens * flops_per_token(shape, training=False, exact=True)

    def add_teacher_flops(self, proxy: float, exact: float, tokens: int = 0) -> None:
        self.teacher_tokens += tokens
        self.teacher_inference += proxy
        self.teacher_inference_exact += exact

    def add_eval(self, shape: ModelShape, tokens: int) -> None:
        """A forward pass of `shape` over `tokens` evaluated tokens (the count evaluate() returns)."""
        self.eval += tokens * flops_per_token(shape, training=False)
        self.eval_exact += tokens * flops_per_token(shape, training=False, exact=True)

    def add_eval_flops(self, proxy: float, exact: float) -> None:
        self.eval += proxy
        self.eval_exact += exact

    def row(self) -> dict:
        """The cumulative compute columns of a metrics row."""
        return {
            "flops_student": self.student_train,
            "flops_teacher_inference": self.teacher_inference,
            "flops_teacher_train": self.teacher_train,
            "flops_init": self.init_train,
            "flops_total": self.total,
            "flops_total_exact": self.total_exact,
            "flops_eval": self.eval,
            "flops_eval_exact": self.eval_exact,
        }

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "FlopsLedger":
        return cls(**state)


# bf16 dense peaks (no sparsity) of common accelerators, for MFU on CUDA
GPU_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AMX or AVX512-BF16): bf16 autocast then wins."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@functools.lru_cache(maxsize=None)  # one probe per process, dtype and device
def measure_matmul_peak(dtype: torch.dtype, device: str = "cpu", size: int = 1024, seconds: float = 0.2) -> float:
    """FLOP/s of a square matmul in `dtype` on this machine: the CPU's MFU denominator.

    The operands come from a private generator: drawing from the global one would shift a resumed run's
    dropout masks (its RNG state was restored just before this runs)."""
    import torch

    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=gen).to(dtype)
    b = torch.randn(size, size, device=device, generator=gen).to(dtype)
    for _ in range(2):
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * size**3 * n / (time.perf_counter() - start)


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """The MFU denominator: the GPU's published bf16 peak, or the measured CPU matmul peak of `dtype`."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAK_FLOPS.items():
            if key in name:
                return value if dtype != torch.float32 else value / 2  # tf32 is half the bf16 peak
        return measure_matmul_peak(dtype, "cuda", size=8192)
    env = os.environ.get("BOOTDISTILL_PEAK_FLOPS")
    return float(env) if env else measure_matmul_peak(dtype)
