"""One writer per model: an exclusive lock from choosing a version to installing it.

The lock is `fcntl.flock` on `<repository>/.tritongen-lock-<model>`, a file (Triton only looks at directories in a
repository). The kernel releases it when its holder dies, SIGKILL included; the holder removes the file when it is
done, and a waiter that finds its file removed takes a fresh one, so two builds never both believe they hold it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_PREFIX = ".tritongen-lock-"


def lock_path(repository: Path, model: str) -> Path:
    return Path(repository) / f"{LOCK_PREFIX}{model}"


@contextmanager
def model_lock(repository: Path, model: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock of `model` in `repository` for the block (waiting for another holder, and saying so)."""
    path = lock_path(repository, model)
    fd = _acquire(path, model, on_wait)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it: a waiter then sees its file gone and starts over
        os.close(fd)


@contextmanager
def model_locks(repository: Path, models: Iterable[str], on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """The locks of several models, always taken in the same order so that two builds cannot deadlock."""
    with contextlib.ExitStack() as stack:
        for model in sorted(set(models)):
            stack.enter_context(model_lock(repository, model, on_wait))
        yield


def _acquire(path: Path, model: str, on_wait: Callable[[str], None] | None) -> int:
    told = False
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder was removed between the two calls: make it again
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if on_wait and not told:
                    holder = _holder(fd)
                    on_wait(f"another tritongen build of model '{model}' is running"
                            + (f" (pid {holder})" if holder else "") + "; waiting for it to finish")
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C interrupts the wait
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the previous holder removed this file: lock the one that is there now


def _holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or "0") or None
    return None
