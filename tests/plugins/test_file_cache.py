"""The file output lets go of what it wrote: an archive does not fill the page cache.

Residency is read with ``mincore(2)`` over a read-only mapping of the file. ``sync = "batch"``
makes every written page clean before the next batch, so what stays cached is exactly what
the output has not yet advised away.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from dsrouter.api import OutputContext
from dsrouter.plugins.file import FileOutput
from dsrouter.plugins.file_handles import CACHE_STEP, CACHE_WINDOW

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="mincore(2) and posix_fadvise are Linux's"
)
MIB = 1 << 20
#: File systems without a page cache of their own to drop (their pages are the data).
_MEMORY_FS = {"tmpfs", "ramfs", "shm"}


def _fs_type(path: str) -> str:
    """The type of the file system ``path`` is on (the longest mount point above it)."""
    best, kind = "", ""
    with open("/proc/self/mounts") as f:
        for line in f:
            _, point, fstype = line.split()[:3]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(
                best
            ):
                best, kind = point, fstype
    return kind


@pytest.fixture
def disk_dir(tmp_path):
    """``tmp_path``, or a folder under /var/tmp where /tmp is in memory (Debian 13)."""
    if _fs_type(str(tmp_path.resolve())) not in _MEMORY_FS:
        yield tmp_path
        return
    folder = tempfile.mkdtemp(prefix="dsrouter-cache-", dir="/var/tmp")
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _resident(path) -> int:
    """Bytes of ``path`` in the page cache."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = (ctypes.c_ubyte * pages)()
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec) * mmap.PAGESIZE


def _write(tmp_path, total: int, sync: str = "batch") -> str:
    ctx = OutputContext(tmp_path / "data", tmp_path)
    out = FileOutput("a", {"path": "all.jsonl", "sync": sync}, ctx)
    out.open()
    line = b'{"msg":"' + b"x" * 1013 + b'"}'  # 1 KiB with its newline
    batch = [line] * 1024  # 1 MiB per batch
    for _ in range(total // MIB):
        out.send_payloads(batch)
    out.close()
    path = str(tmp_path / "data" / "all.jsonl")
    assert os.path.getsize(path) == total
    return path


def test_a_long_archive_keeps_only_its_last_window_cached(disk_dir):
    total = 3 * CACHE_WINDOW
    path = _write(disk_dir, total)
    resident = _resident(path)
    assert resident <= CACHE_WINDOW + CACHE_STEP, f"{resident / MIB:.0f} MiB of {total / MIB:.0f}"
    with open(path, "rb") as f:  # read back whole: the kernel has it, on disk
        assert sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(MIB), b"")) == total // 1024


def test_a_file_smaller_than_one_step_stays_cached(disk_dir):
    path = _write(disk_dir, CACHE_STEP - MIB)
    assert _resident(path) == CACHE_STEP - MIB
