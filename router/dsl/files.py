"""Reading configuration files and ``file()`` values: regular files only, never unbounded.

``include "/dev/zero"`` or ``file("/proc/self/fd/0")`` must not hang or fill memory. An
included file and a ``file()`` value must be a regular file (not a FIFO, a device or a
directory); every read stops one byte past its limit, so a ``/proc`` file that reports size 0
but has more to say is still cut off and refused. Reasons are words; a file's contents never
appear in them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

CONFIG_LIMIT = 1 << 20
"""The largest configuration or included file read: 1 MiB."""
VALUE_LIMIT = 64 << 10
"""The largest file ``file("...")`` reads: 64 KiB."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class Refused(Exception):
    """A file was not read; ``str(exc)`` says why in words, e.g. ``larger than 64 KiB``.

    ``unsafe`` is True when the file was refused for what it is (not a regular file, too
    large), False when it could not be read (missing, no permission, not UTF-8).
    """

    def __init__(self, reason: str, unsafe: bool = False) -> None:
        super().__init__(reason)
        self.unsafe = unsafe


def read_text(path: str | Path, limit: int, regular_only: bool = True) -> str:
    """The UTF-8 text of ``path``, at most ``limit`` bytes; raises :class:`Refused`.

    ``regular_only=False`` (the main configuration file) also reads pipes, so that
    ``dsrouter check -c <(generate)`` works; directories and devices are refused either way.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise Refused(exc.strerror or str(exc)) from None
    except ValueError as exc:  # a NUL in the path ("embedded null byte")
        raise Refused(str(exc)) from None
    kind = _kind(info.st_mode)
    if kind is not None and (regular_only or not stat.S_ISFIFO(info.st_mode)):
        raise Refused(f"not a regular file ({kind})", unsafe=True)
    if info.st_size > limit:
        raise Refused(f"larger than {size_text(limit)}", unsafe=True)
    data = _read(path, limit + 1, regular_only)
    if len(data) > limit:
        raise Refused(f"larger than {size_text(limit)}", unsafe=True)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("not UTF-8 text") from None


def _read(path: str | Path, size: int, regular_only: bool) -> bytes:
    """Up to ``size`` bytes; non-blocking for regular-only reads (a swapped-in FIFO fails)."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    if regular_only:
        flags |= getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise Refused(exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as f:
        try:
            if regular_only and not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Refused("not a regular file", unsafe=True)
            chunks, left = [], size
            while left > 0:
                chunk = f.read(min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise Refused(exc.strerror or str(exc)) from None
    return b"".join(chunks)


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "an unusual file")


def size_text(n: int) -> str:
    """``65536`` → ``64 KiB``."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"
