"""Rotation and compression for the ``file`` output: when a file is finished, what its rotated
name is, and a gzip that never loses the original.

Names sort by time: ``x.jsonl`` rotates to ``x.2026-12-02.jsonl`` (daily), ``x.2026-12-02T07.jsonl``
(hourly) or ``x.2026-12-02T07-15-03.123.jsonl`` (by size: the UTC time of the rotation to the
millisecond, bumped until free), and compresses to that name plus ``.gz``. A file whose path
already changes with the period (``{date}``, ``{hour}``) is finished where it is: it keeps its
name and is compressed in place (``2026-12-02.jsonl.gz``).

Compression writes ``<dst>.tmp``, fsyncs it, renames it to ``<dst>``, fsyncs the directory and
only then unlinks the source: a crash at any point leaves the source, or a complete ``.gz``
next to it (recognised by its CRC and size and then the source is removed).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any

from .file_path import PathTemplate

#: A file of an earlier period is finished this long after its last write (late events of a
#: backlog still find it open for appending).
GRACE = 300.0
_CHUNK = 1 << 20
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
_UNITS = {"hourly": 0, "daily": 1}
_FORMATS = {"daily": "%Y-%m-%d", "hourly": "%Y-%m-%dT%H"}


def period(t: float, unit: str) -> str:
    """The UTC day (``2026-12-02``) or hour (``2026-12-02T07``) of ``t``."""
    return time.strftime(_FORMATS[unit], time.gmtime(t))


def ms_stamp(t: float) -> str:
    """``2026-12-02T07-15-03.123``: the UTC time of ``t`` to the millisecond."""
    ms = int(t * 1000)
    return time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


def _finer(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if _UNITS[a] <= _UNITS[b] else b


class Policy:
    """The ``rotate``, ``retain``, ``keep`` and ``compress`` options, read against the path.

    ``unit`` is the period after which a file is finished: the finer of ``rotate``'s and the
    path's own (``{hour}``, ``{date}``). ``in_place`` when the path changes that often by
    itself, so a finished file keeps its name; otherwise a finished file is renamed.
    """

    def __init__(self, options: Mapping[str, Any], template: PathTemplate) -> None:
        rotate = options.get("rotate")
        self.size = int(rotate) if isinstance(rotate, int) else 0
        by_time = rotate if isinstance(rotate, str) else None
        self.unit = _finer(by_time, template.granularity)
        self.in_place = self.unit is not None and _finer(self.unit, template.granularity) == (
            template.granularity
        )
        self.retain = float(options.get("retain") or 0.0)
        self.keep = int(options.get("keep") or 0)
        self.compress = bool(options.get("compress", False))

    @property
    def renames_by_time(self) -> bool:
        """The output renames its files when the period changes."""
        return self.unit is not None and not self.in_place

    @property
    def needs_sweep(self) -> bool:
        return bool(self.renames_by_time or self.compress or self.keep or self.retain)

    def stale(self, mtime: float, now: float) -> bool:
        """A file last written at ``mtime`` belongs to an earlier period than ``now``."""
        return self.unit is not None and period(mtime, self.unit) < period(now, self.unit)

    def finished(self, mtime: float, now: float) -> bool:
        """An active file that will not be written again (short of a backlog)."""
        return self.stale(mtime, now) and now - mtime >= GRACE

    def time_stamp(self, mtime: float) -> str:
        assert self.unit is not None
        return period(mtime, self.unit)


def free_name(template: PathTemplate, directory: str, active: str, stamp: str, t: float) -> str:
    """The rotated path of ``active`` for ``stamp``; when that is taken (in any of its forms),
    the millisecond stamp of ``t``, bumped until free."""
    for n in range(10_000):
        name = template.rotated_name(active, stamp)
        path = os.path.join(directory, name)
        if not any(os.path.lexists(path + s) for s in ("", ".gz", ".gz.tmp")):
            return path
        stamp = ms_stamp(t + (n + 1) / 1000)
    raise FileExistsError(f"no free rotated name for {active}")


def compress(src: str, dst: str, stop: threading.Event) -> bool:
    """gzip ``src`` into ``dst`` and unlink ``src``; False (``src`` kept) when ``stop`` was set
    part way. Raises OSError (a full disk): ``dst.tmp`` is removed and ``src`` kept."""
    tmp = dst + ".tmp"
    st = os.stat(src)
    try:
        with open(src, "rb") as fin, open(os.open(tmp, _TMP_FLAGS, 0o600), "wb") as fout:
            os.chmod(tmp, st.st_mode & 0o777)  # never wider than the source, even briefly
            with gzip.GzipFile(os.path.basename(src), "wb", 6, fout, int(st.st_mtime)) as gz:
                while chunk := fin.read(_CHUNK):
                    if stop.is_set():
                        raise _Stopped
                    gz.write(chunk)
            fout.flush()
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # retention reads the age
            os.fsync(fout.fileno())
        os.rename(tmp, dst)
    except _Stopped:
        _unlink(tmp)
        return False
    except BaseException:
        _unlink(tmp)
        raise
    fsync_dir(os.path.dirname(dst))
    os.unlink(src)
    return True


class _Stopped(Exception):
    pass


def same_content(gz_path: str, src: str) -> bool:
    """``gz_path`` is a complete gzip of ``src`` (its trailer's CRC-32 and size match): what a
    crash between the rename and the unlink leaves."""
    try:
        with open(gz_path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                return False
            fh.seek(-8, os.SEEK_END)
            crc, size = struct.unpack("<II", fh.read(8))
        if os.path.getsize(src) & 0xFFFFFFFF != size:
            return False
        value = 0
        with open(src, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                value = zlib.crc32(chunk, value)
        return value == crc
    except OSError:
        return False


def fsync_dir(directory: str) -> None:
    """Make a rename or a new file in ``directory`` durable (a no-op on Windows)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
