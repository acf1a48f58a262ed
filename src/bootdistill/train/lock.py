"""One process per run directory: an advisory lock (fcntl.flock) on RUN/.lock, held while the trainer lives.

The kernel drops the lock when the process ends, however it ends, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import BootdistillError
from ..fsutil import translate_os_errors
from .rundir import LOCK_NAME


class RunLock:
    fd: int | None = None

    def __init__(self, run_dir: Path):
        run_dir = Path(run_dir)
        with translate_os_errors(run_dir):
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BootdistillError(f"run directory '{run_dir}' is in use by another bootdistill process (PID {pid}): "
                                   "wait for it to finish, or stop that process, before training into it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None

    def __del__(self):
        self.release()
