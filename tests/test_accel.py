"""CPU-only machinery stays off CUDA (thread settings, the KD loss's worker pool), checked on any machine with a
device object; torch.compile's prerequisites fail in one line."""

import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from conftest import run_cli, tiny_overrides
from bootdistill.distill import fused_kd
from bootdistill.errors import ConfigError
from bootdistill.runtime.accel import check_compile, keep_freed_memory, set_cpu_threads

CUDA = torch.device("cuda")  # a device object needs no GPU: the guards only read its type
CPU = torch.device("cpu")


def test_threads_are_set_for_cpu_training_only():
    before = torch.get_num_threads()
    try:
        assert not set_cpu_threads(before + 1, CUDA) and torch.get_num_threads() == before
        assert not set_cpu_threads(None, CPU) and torch.get_num_threads() == before
        assert set_cpu_threads(1, CPU) and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("device, workers_used", [(CPU, True), (CUDA, False)])
def test_kd_worker_pool_runs_for_cpu_tensors_only(device, workers_used):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    ran_in = set()
    try:
        fused_kd._for_row_chunks(10, 2, lambda r0, r1, buf: ran_in.add(threading.current_thread().name),
                               lambda: {}, device)
    finally:
        torch.set_num_threads(before)
    assert ran_in and all(n.startswith("bootdistill-kd") for n in ran_in) == workers_used
    assert (threading.current_thread().name in ran_in) != workers_used


def test_kd_chunks_are_larger_on_cuda():
    assert fused_kd.rows_per_chunk(5000, None, CPU) == fused_kd.CHUNK_ELEMENTS // 5000
    assert fused_kd.rows_per_chunk(5000, None, CUDA) == fused_kd.CUDA_CHUNK_ELEMENTS // 5000
    assert fused_kd.rows_per_chunk(5000, 7, CUDA) == 7  # an explicit size wins


def test_compile_without_a_cxx_compiler_is_one_line(tiny_corpus, tmp_path):
    # PATH without compilers (python is started by its absolute path): what a machine without g++ looks like
    bare = tmp_path / "bin"
    bare.mkdir()
    out = tmp_path / "run"
    r = run_cli("train", *tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{"train.compile": "true"}),
                env={"PATH": str(bare), "CXX": ""})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "train.compile=true on CPU needs a working C++ compiler" in lines[0]
    assert not out.exists()


def test_compile_check_passes_where_a_compiler_is_installed():
    if not any((Path(d) / "g++").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("no g++ on this machine")
    check_compile(CPU)  # no error: the real compile is exercised on CUDA in tests/test_cuda.py


def test_compile_check_on_cuda_needs_triton(monkeypatch):
    import torch.utils._triton as triton_util

    monkeypatch.setattr(triton_util, "has_triton", lambda: False)
    with pytest.raises(ConfigError, match="needs Triton"):
        check_compile(CUDA)


# A step's pattern: two 20 MiB activations and a smaller buffer, freed at the end. Page faults over 10 steps
# after warm-up, in a fresh process so that no earlier allocation shapes the heap.
STEP_FAULTS = """
import mmap, resource, sys, torch
from bootdistill.runtime.accel import keep_freed_memory
def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
# probe: does this kernel count minor faults at all? (some sandboxes, e.g. gVisor, report none)
before, fresh = minor_faults(), mmap.mmap(-1, 8 * 2**20)
for page in range(0, len(fresh), 4096):
    fresh[page] = 1
probe = minor_faults() - before
if sys.argv[1] == "kept":
    assert keep_freed_memory(torch.device("cpu"))
def step():
    buffers = [torch.empty(mb * 2**20, dtype=torch.uint8).fill_(1) for mb in (20, 20, 8)]
    del buffers
for _ in range(6):
    step()
before = minor_faults()
for _ in range(10):
    step()
print(probe, minor_faults() - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_step_buffers_are_reused_without_page_faults():
    def faults_in_10_steps(mode):
        out = subprocess.run([sys.executable, "-c", STEP_FAULTS, mode], capture_output=True, text=True, check=True)
        probe, faults = map(int, out.stdout.split())
        if probe == 0:
            pytest.skip("this kernel reports no minor page faults (getrusage ru_minflt is 0 for fresh pages)")
        return faults

    pages = 40 * 2**20 / 4096  # the two large buffers, in 4 KiB pages
    # No control assertion on glibc's defaults: from one fresh process to the next they make either ~87k faults
    # here or none (the heap's layout differs), so only the kept setting is asserted, in three fresh processes.
    for _ in range(3):
        assert faults_in_10_steps("kept") < 0.1 * pages


def test_freed_memory_is_kept_for_cpu_training_only():
    assert not keep_freed_memory(CUDA)
