"""Device-specific setup beyond precision: CPU thread settings, and what torch.compile needs on this machine."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..errors import ConfigError


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux), recorded beside measured figures: machines differ."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def set_cpu_threads(threads: int | None, device: torch.device) -> bool:
    """train.threads sets torch's intra-op threads for CPU training only: on CUDA the host threads only launch
    kernels, and lowering them would slow the CPU work around the GPU (data, optimizer bookkeeping)."""
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
        return True
    return False


@contextmanager
def cpu_threads(threads: int | None):
    """torch's intra-op threads set to `threads` (None: unchanged) inside the block, restored after it."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_compile(device: torch.device) -> None:
    """Fail in one line before any work when torch.compile cannot build kernels here, instead of inductor's
    traceback at the first step: C++ kernels need a compiler on CPU, GPU kernels need Triton."""
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
        except ImportError:  # another torch layout: let torch.compile speak for itself
            return
        try:
            get_cpp_compiler()
        except Exception:  # InvalidCxxCompiler, or a broken compiler on PATH
            raise ConfigError("train.compile=true on CPU needs a working C++ compiler (torch.compile builds C++ "
                              "kernels): install g++ (or set CXX), or use train.compile=false") from None
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise ConfigError("train.compile=true on CUDA needs Triton (pip install triton, matching your torch), "
                              "or use train.compile=false")


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """Regional compilation: each transformer block is compiled, not the whole model. The blocks are identical, so
    one compiled graph serves them all: the cold compile costs one block instead of n_layers (minutes for the
    48-layer 150M preset), and the state dict keeps its names. Embeddings and the LM head stay eager."""
    for block in model.blocks:
        block.compile()
    return model
