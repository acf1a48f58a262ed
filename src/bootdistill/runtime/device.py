"""Device and precision choice, and the autocast a forward runs under. `auto` = bf16 autocast on CUDA and on CPUs that multiply bf16 natively
(AMX / AVX512-BF16: 2.2-3.3x the fp32 matmul rate on this project's CPU, see docs/benchmarks.md)."""

from __future__ import annotations

import contextlib

import torch

from ..compute import cpu_has_fast_bf16
from ..errors import ConfigError


def resolve_device(name: str, option: str = "train.device=") -> torch.device:
    """`option` names the setting in errors: `train.device=` for configs, `--device ` for CLI flags."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{option}{name} but no CUDA GPU is visible: use {option}cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{option}{name} is not a device: use auto, cpu, cuda or cuda:N") from None


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a gradient scaler is needed)."""
    if precision == "auto":
        if device.type == "cuda":
            return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16), not torch.cuda.is_bf16_supported()
        return (torch.bfloat16 if cpu_has_fast_bf16() else None), False
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA GPU (CPU autocast supports bf16): use bf16 or fp32")
    return torch.float16, True


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
