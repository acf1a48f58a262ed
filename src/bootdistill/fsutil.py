"""Atomic file writes: a crash or a full disk never leaves a half-written file where a good one was."""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import BootdistillError


def disk_full_error(path: Path | str) -> BootdistillError:
    return BootdistillError(f"no space left on the device holding '{path}': free some space or choose another output directory")


@contextmanager
def translate_os_errors(path: Path | str):
    """Turn a full disk or a permission problem into one clear line."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full_error(path) from None
        if e.errno == errno.EFBIG:
            raise BootdistillError(f"cannot write '{path}': the file-size limit (ulimit -f) was reached; raise it or "
                                   "write less") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR):
            raise BootdistillError(f"cannot write '{path}': {e.strerror}; choose a writable output directory") from None
        raise


def check_writable(path: Path | str) -> None:
    """Fail now, not after the work, if `path` (a directory, existing or to be made) cannot be written."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise BootdistillError(f"cannot write '{path}': '{existing}' is a file, not a directory; choose another output path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BootdistillError(f"cannot write '{path}': '{existing}' is not writable; choose a writable output path")


def umask_mode(mode: int) -> int:
    """`mode` as the user's umask lets an ordinary open() or mkdir() create it (0o777 -> 0o755 under umask 022).
    Temp files and directories are made private (0600 / 0700); outputs get this mode before they are renamed
    into place."""
    current = os.umask(0o077)  # reading the umask means setting it: set the private one for the instant between
    os.umask(current)
    return mode & ~current


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with translate_os_errors(path), os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode(0o666))  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path | str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory `tmp` at `final` in one rename, replacing an older one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def follow_umask(root: Path) -> None:
    """Give a finished temp dir the modes an ordinary mkdir() and open() would have: mkdtemp makes 0700, and
    some writers (safetensors) make their files 0600."""
    dirs, files = umask_mode(0o777), umask_mode(0o666)
    os.chmod(root, dirs)
    for p in Path(root).rglob("*"):
        if not p.is_symlink():
            os.chmod(p, dirs if p.is_dir() else files)


def _held(path: Path) -> bool:
    """Whether a live process holds the flock of directory `path` (atomic_dir's writers do)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def clean_stale_temps(final: Path | str) -> list[Path]:
    """Remove the temp dirs atomic_dir(final) left when its writer was killed; a live writer's stays."""
    final = Path(final)
    stale = [p for p in final.parent.glob(f".{glob.escape(final.name)}.*.tmp") if p.is_dir() and not _held(p)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


@contextmanager
def atomic_dir(final: Path | str):
    """Yield a temp dir beside `final`; on success it replaces `final` in one rename, on failure it is removed.
    The writer holds a flock on the temp dir, so clean_stale_temps can tell a killed write from a running one."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    fd = os.open(tmp, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with translate_os_errors(final):
            yield tmp
            follow_umask(tmp)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)
