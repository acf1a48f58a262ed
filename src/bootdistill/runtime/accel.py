"""Device-specific setup beyond precision: CPU thread settings, and what torch.compile needs on this machine."""

from __future__ import annotations

import ctypes
import functools
import platform
from contextlib import contextmanager

import torch

from ..errors import ConfigError


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux), recorded beside measured figures: machines differ."""
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


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc refuses a higher threshold on 64-bit
KEEP_FREED = 2**30  # freed heap kept by the process before glibc trims it
TOP_PAD = 256 * 2**20  # each heap extension grabs this much more, so a step's buffers rarely extend it again


@functools.cache
def _on_glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"  # reads the Python binary: once per process


def keep_freed_memory(device: torch.device) -> bool:
    """On Linux glibc, keep the buffers a CPU training step frees for the next step instead of handing them back.

    By default glibc returns every freed buffer above an adaptive mmap threshold to the kernel, and trims the
    heap top, so each step faults its activations back in page by page: 40-50k faults a step for a 4.5M student,
    10-15% of its CPU time in the kernel (docs/benchmarks.md). Serving buffers up to 32 MiB from the heap and
    keeping up to 1 GiB of it free removes almost all of them. Values are unchanged; memory is held, not grown
    per step. Returns whether glibc accepted the settings."""
    if device.type != "cpu" or not _on_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    settings = ((M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX), (M_TRIM_THRESHOLD, KEEP_FREED), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)


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
