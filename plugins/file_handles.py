"""The ``file`` output's open files: whole-line appends, rotation, and files moved under it.

:class:`Files` keeps up to ``max_open_files`` handles (least recently used closed first). Each
append takes whole lines or nothing: the size is noted first and the file truncated back to it
when the write fails part way (a full disk), so a retry never leaves a torn or doubled line.
Before each append the path is checked to still name the open file: a file renamed or deleted
under the output (logrotate, ``rm -rf`` of the archive) is opened anew at its path, directories
included, rather than written into the void. A file rotates when the next batch would take it
past the ``rotate`` size, and at its first open in a new period when ``rotate`` is by time.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import OrderedDict
from collections.abc import Callable

from .file_path import PathTemplate
from .file_rotate import Policy, free_name, fsync_dir, ms_stamp, period
from .file_sweep import Shared

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
#: A handle not written for this long is closed (checked about once a minute), so the sweep
#: may finish, compress or expire its file.
IDLE_CLOSE = 600.0
#: Every this many bytes appended to a file, the last ``CACHE_WINDOW`` bytes are advised out
#: of the page cache (see :func:`_let_go`).
CACHE_STEP = 16 << 20
CACHE_WINDOW = 4 * CACHE_STEP
_fadvise = getattr(os, "posix_fadvise", None)  # not on Windows


class _Open:
    __slots__ = ("fd", "written", "unadvised")

    def __init__(self, fd: int, now: float) -> None:
        self.fd, self.written, self.unadvised = fd, now, 0


class Files:
    """Open handles by path, shared knowledge with the sweep, and rotation on the way."""

    def __init__(
        self,
        template: PathTemplate,
        policy: Policy,
        shared: Shared,
        mode: int,
        max_open: int,
        sync: bool,
        on_rotated: Callable[[str], None],
    ) -> None:
        self.template, self.policy, self.shared = template, policy, shared
        self.mode, self.dir_mode = mode, mode | ((mode & 0o444) >> 2)  # r → r-x for dirs
        self.max_open, self.sync, self.on_rotated = max_open, sync, on_rotated
        self.fds: OrderedDict[str, _Open] = OrderedDict()
        # path -> (st_dev, st_ino, size): a torn append whose truncation failed, repaired on
        # the next open of that same file.
        self.torn: dict[str, tuple[int, int, int]] = {}
        self.now = 0.0
        self._period: str | None = None
        self._idle_checked = 0.0

    def tick(self, now: float) -> None:
        """Called before each batch: close every handle when the period changes (each file is
        looked at again when it is next opened) and handles idle for long."""
        self.now = now
        if self.policy.unit is not None:
            current = period(now, self.policy.unit)
            if current != self._period:
                if self._period is not None:
                    self.close_all()
                self._period = current
        if now - self._idle_checked >= 60.0:
            self._idle_checked = now
            for path in [p for p, f in self.fds.items() if now - f.written >= IDLE_CLOSE]:
                self.drop(path)

    def append(self, path: str, data: bytes) -> None:
        """Append whole lines or nothing; rotate by size first when they would not fit.

        The failed file is closed either way, so the retry reopens it by path (a stale handle
        cannot fail every retry); when even the truncation failed, that reopen cuts the tail.
        """
        rec, st = self._current(path)
        limit = self.policy.size
        if limit and st.st_size and st.st_size + len(data) > limit:
            self._rotate(path, ms_stamp(self.now))
            rec, st = self._current(path)
        try:
            _write_all(rec.fd, data)
            if self.sync:
                _datasync(rec.fd)
            rec.unadvised += len(data)
            if rec.unadvised >= CACHE_STEP:
                rec.unadvised = 0
                _let_go(rec.fd, st.st_size + len(data))
        except BaseException:
            try:
                os.ftruncate(rec.fd, st.st_size)
            except OSError:
                self.torn[path] = (st.st_dev, st.st_ino, st.st_size)
            self.drop(path)
            raise
        rec.written = self.now

    def _current(self, path: str) -> tuple[_Open, os.stat_result]:
        """The open file of ``path``, opened anew when it was renamed or deleted under us."""
        rec = self.fds.get(path)
        if rec is not None:
            st = os.fstat(rec.fd)
            try:
                at_path = os.stat(path)
            except FileNotFoundError:
                at_path = None
            if at_path is not None and (at_path.st_ino, at_path.st_dev) == (st.st_ino, st.st_dev):
                self.fds.move_to_end(path)
                return rec, st
            self.drop(path)
        rec = self._open(path)
        return rec, os.fstat(rec.fd)

    def _open(self, path: str) -> _Open:
        with self.shared.lock:
            self.shared.opened(path)  # EBUSY while the sweep compresses this very file
            try:
                fd = self._create(path)
            except BaseException:
                self.shared.forget(path)
                raise
        rec = self.fds[path] = _Open(fd, self.now)
        while len(self.fds) > self.max_open:
            self.drop(next(iter(self.fds)))
        return rec

    def _create(self, path: str) -> int:
        directory = os.path.dirname(path)
        _makedirs(directory, self.dir_mode, self.sync)
        fd = _open_file(path, self.mode, self.sync)
        try:
            if path in self.torn:
                self._repair(path, fd)
            if self.policy.renames_by_time:
                st = os.fstat(fd)
                if st.st_size and self.policy.stale(st.st_mtime, self.now):
                    os.close(fd)
                    fd = -1
                    self._rename(path, self.policy.time_stamp(st.st_mtime))
                    fd = _open_file(path, self.mode, self.sync)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return fd

    def _rotate(self, path: str, stamp: str) -> None:
        """Close ``path`` and move it aside (still counted open, so the sweep keeps off)."""
        rec = self.fds.pop(path)
        with self.shared.lock:
            with contextlib.suppress(OSError):
                os.close(rec.fd)
            try:
                self._rename(path, stamp)
            finally:
                self.shared.forget(path)

    def _rename(self, path: str, stamp: str) -> None:
        directory, name = os.path.split(path)
        target = free_name(self.template, directory, name, stamp, self.now)
        os.rename(path, target)
        if self.sync:
            fsync_dir(directory)
        self.on_rotated(directory)

    def _repair(self, path: str, fd: int) -> None:
        """Cut the torn tail an earlier failed append left in this very file."""
        dev, ino, size = self.torn[path]
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (dev, ino) and st.st_size > size:
            os.ftruncate(fd, size)
        del self.torn[path]

    def drop(self, path: str) -> None:
        rec = self.fds.pop(path, None)
        if rec is not None:
            with contextlib.suppress(OSError):
                os.close(rec.fd)
            with self.shared.lock:
                self.shared.forget(path)

    def close_all(self) -> None:
        for path in list(self.fds):
            self.drop(path)


def _open_file(path: str, mode: int, sync: bool) -> int:
    """Open for appending; with ``sync``, a new file's directory entry is made durable."""
    if not sync:
        return os.open(path, _FLAGS, mode)
    try:
        fd = os.open(path, _FLAGS | os.O_EXCL, mode)
    except FileExistsError:
        return os.open(path, _FLAGS, mode)
    try:
        fsync_dir(os.path.dirname(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _makedirs(directory: str, mode: int, sync: bool) -> None:
    """``os.makedirs`` with ``mode`` on every new directory (and each made durable)."""
    missing, p = [], directory
    while not os.path.exists(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    if not missing and not os.path.isdir(directory):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), directory)
    for made in reversed(missing):
        try:
            os.mkdir(made, mode)
        except FileExistsError:  # made meanwhile
            if not os.path.isdir(made):
                raise
        if sync:
            fsync_dir(os.path.dirname(made))


def _datasync(fd: int) -> None:
    """The data of ``fd`` on disk (``fdatasync`` where there is one)."""
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


def _let_go(fd: int, end: int) -> None:
    """Start writing back the last ``CACHE_WINDOW`` bytes before ``end`` and drop from the
    page cache those already on disk (``POSIX_FADV_DONTNEED``; a no-op without it).

    An archive is written once and rarely read: kept cached, it would push everything else
    out of memory, and each new page costs more than one just freed (measured on a VM that
    hands free memory back to its host: 2 GB appended in 5.1 CPU-s, 0.9 with this). Called
    every ``CACHE_STEP`` bytes, each part of the file is advised four times, by when the
    kernel has written it back; a reader less than ``CACHE_STEP`` behind the end still finds
    it cached.
    """
    if _fadvise is not None:
        start = max(0, end - CACHE_WINDOW)
        with contextlib.suppress(OSError):
            _fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
