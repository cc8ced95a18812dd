"""Writing a folder safely, for every command that makes one (synth, ingest, generate, export,
pack-weights): checked before any work (`check_out_dir`, `check_writable`), one writer at a time
(`writer_lock`), written beside its place and published whole (`staging_folder`, `publish_folder`).

The lock is an advisory `flock` on `.<name>.lock` beside the folder, so it works before the folder
exists and is released by the kernel when its holder dies, even by kill -9. A second writer is refused
at once, with the holder's PID, instead of two runs interleaving their writes. A staging folder is
`.<name>.partial-<pid>` beside the folder; one whose process is gone is never whole and is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from drivesim.errors import ConfigError, DataError

__all__ = ["check_out_dir", "check_writable", "contains", "lock_path", "overlaps", "publish_folder", "staging_folder",
           "writer_lock"]

_HELD: set[str] = set()  # folders this process holds: a nested writer_lock of the same folder re-enters


# ---------------------------------------------------------------- checks before any work


def check_writable(path: str | os.PathLike, option: str) -> None:
    """`path` can be created or replaced: its nearest existing ancestor is a writable folder."""
    parent = Path(path).resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {path} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path} is not writable")


def check_out_dir(out: str | os.PathLike, overwrite: bool, option: str = "--out") -> None:
    """An output folder must be new or empty, or `overwrite` given, and creatable; ConfigError naming
    `option` otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{option} {out} is not empty; pass --overwrite to replace what is in it")
    check_writable(out, option)


def contains(folder: Path, path: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (both resolved)."""
    return folder == path or folder in path.parents


def overlaps(a: Path, b: Path) -> bool:
    """Whether one of two resolved folders is, or lies inside, the other."""
    return contains(a, b) or contains(b, a)


# ---------------------------------------------------------------- staged and published whole


def staging_folder(out: str | os.PathLike) -> Path:
    """A new empty folder beside `out` to write into; publish_folder moves it there once complete. Staging
    folders that killed runs left behind (their process is gone) are removed first: they are never whole."""
    out = Path(out)
    prefix = f".{out.name}.partial-"
    if out.parent.is_dir():
        for stale in out.parent.iterdir():
            pid = stale.name.removeprefix(prefix)
            if stale.name.startswith(prefix) and pid.isdigit() and not _process_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
    staging = out.parent / f"{prefix}{os.getpid()}"
    try:
        if staging.exists():  # this process's own, from a call that failed before cleaning up
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
    except OSError as error:
        raise ConfigError(f"--out {out} cannot be written: {error.strerror or error}") from None
    return staging


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # there signal 0 is CTRL_C_EVENT, not a probe: keep every staging folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def publish_folder(staging: Path, out: Path) -> None:
    """Swap the finished staging folder into place; an old output is removed only afterwards."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- one writer at a time


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
