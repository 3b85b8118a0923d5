"""A disk queue directory's lock, open descriptors and spare segment files (see
:mod:`.disklog`)."""

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

__all__ = ["Files", "QueueLocked", "Spares", "lock_directory"]

#: Acked segment files kept for reuse, per queue.
SPARES = 2


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


class Spares:
    """Acked segment files kept to be written over as new segments (PostgreSQL recycles its
    WAL files the same way): rewriting a file whose pages are cached costs no page, block or
    inode allocation — measured on this project's VM, an eighth of the system time of
    writing a new file, and far less where freed memory goes back to the hypervisor.

    A spare still holds its old records; their seqs are below every seq a later segment
    holds, which is how a reader knows where a recycled file's new records end (see
    :class:`~dsrouter.delivery.segments.Scanner`). Only a file retired in this process's
    life is known to be such: spares found at start-up are deleted.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths: list[Path] = []
        self._n = 0
        for path in directory.glob("spare.*"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def keep(self, path: Path) -> bool:
        """Take an acked segment file as a spare (False: there are enough; delete it)."""
        if len(self.paths) >= SPARES:
            return False
        self._n += 1
        spare = self.directory / f"spare.{self._n}"
        try:
            os.replace(path, spare)
        except OSError:
            return False
        self.paths.append(spare)
        return True

    def reuse(self, files: Files, path: Path) -> int | None:
        """A spare renamed to ``path``, open for writing from its start; None if none is."""
        while self.paths:
            spare = self.paths.pop()
            try:
                os.replace(spare, path)
                return files.open(path, os.O_WRONLY)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(spare)
        return None

    def drop(self) -> None:
        """Delete every spare (the disk is full: give their blocks back)."""
        for spare in self.paths:
            with contextlib.suppress(OSError):
                os.unlink(spare)
        self.paths.clear()
