"""A disk queue directory's lock and open descriptors (see :mod:`.disklog`)."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
from pathlib import Path

from . import segments as sg

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

__all__ = ["Files", "QueueLocked", "lock_directory"]


class QueueLocked(OSError):
    """Another process (or another open queue) holds the queue directory."""

    def __init__(self, directory: Path) -> None:
        msg = "queue directory is locked by another process (is another dsrouter running?)"
        super().__init__(errno.EAGAIN, msg, str(directory))


class Files:
    """Every descriptor of a log, so that a log dropped unclosed (a simulated crash) lets go
    of its files and lock like a dead process would, writing nothing."""

    def __init__(self) -> None:
        self.fds: set[int] = set()
        self.stop = threading.Event()

    def open(self, path: Path, flags: int) -> int:
        fd = os.open(path, flags | sg.O_BINARY, 0o644)
        self.fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        self.fds.discard(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def close_all(self) -> None:
        self.stop.set()
        for fd in list(self.fds):
            self.close(fd)


def lock_directory(files: Files, directory: Path) -> None:
    """Take the queue directory's exclusive lock (``lock``); :class:`QueueLocked` if held."""
    fd = files.open(directory / "lock", os.O_RDWR | os.O_CREAT)
    try:
        if sys.platform == "win32":
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        files.close(fd)
        raise QueueLocked(directory) from e
