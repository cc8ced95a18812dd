"""One writer at a time for a folder drivesim writes (a clip store, a rollout folder), and worker
processes that die with the process that started them.

The lock is an advisory `flock` on `.<name>.lock` beside the folder, so it works before the folder
exists and is released by the kernel when its holder dies, even by kill -9. A second writer is refused
at once, with the holder's PID, instead of two runs interleaving their writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from drivesim.errors import DataError

__all__ = ["die_with_parent", "lock_path", "writer_lock"]

_HELD: set[str] = set()  # folders this process holds: a nested writer_lock of the same folder re-enters
PR_SET_PDEATHSIG = 1      # linux/prctl.h


def lock_path(folder: str | os.PathLike) -> Path:
    folder = Path(os.path.abspath(folder))
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def writer_lock(folder: str | os.PathLike, name: str) -> Iterator[None]:
    """Hold the writer lock of `folder` for the with block. DataError naming `name` (the option or input
    that named the folder), the folder and the holder's PID when another process holds it."""
    path = lock_path(folder)
    key = str(path)
    if key in _HELD:
        yield
        return
    created = _make_parents(path.parent, name, folder)
    try:
        descriptor = _acquire(path, name, folder)
    except BaseException:
        _remove_empty(created)
        raise
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(descriptor)  # after the unlink: a waiter that opened the old file sees it is gone (_acquire)
        _remove_empty(created)  # a run refused or failed before writing leaves no empty folders behind


def _make_parents(parent: Path, name: str, folder) -> list[Path]:
    """Create `parent` and the folders above it that are missing; returns those created, deepest first."""
    missing = []
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    try:
        for path in reversed(missing):
            path.mkdir()
    except OSError as error:
        _remove_empty(missing)
        raise DataError(f"{name} {folder}: cannot be created ({error.strerror or error})") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for path in folders:  # deepest first; a folder the run wrote into is not empty and stays
        try:
            path.rmdir()
        except OSError:
            return


def _acquire(path: Path, name: str, folder) -> int:
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(descriptor)
            raise DataError(f"{name} {folder}: another drivesim run (pid {holder}) is writing there; wait for it "
                            "to finish, or stop it") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(descriptor).st_ino:
            break
        os.close(descriptor)  # the last holder removed this file as we opened it: lock the new one
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode("ascii"))
    return descriptor


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process receive SIGKILL when its parent dies, kill -9 included (Linux prctl);
    exit at once if the parent is already gone. Elsewhere a no-op: the pool's own shutdown still applies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl in this libc: nothing more to do
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
