"""The disk queue's on-disk format: segment records, the scanner that reads them back, and the
two-slot ack state file.

Segment file ``<first seq, 20 digits>.seg``: records back to back, each a 26-byte header then
the payload (the event as JSON)::

    magic   2 bytes  b"\\xff\\xd5" (0xff never occurs in UTF-8, so never inside a JSON payload)
    length  u32      payload length
    seq     u64      the record's sequence number
    time    f64      enqueued_at, wall-clock seconds (so event age survives a restart)
    crc     u32      zlib.crc32 over the payload, then length + seq + time

All little-endian (``struct``). A reader resynchronises after garbage by scanning forward for
the next magic whose record has a plausible length and a valid CRC.

State file ``state``: two fixed slots of :data:`SLOT_SIZE` bytes, each ``magic "DSQS", gen u64,
floor u64, limit u64, next_seq u64, nruns u32``, ``nruns`` pairs ``(lo, hi)`` of u64, then a
crc32 of all that. The slot with the highest valid ``gen`` wins; a write goes to the other slot
in place (no rename), so a torn write leaves the previous state readable. Meaning: every seq
below ``floor`` is acked; in ``[floor, limit)`` a seq is acked unless some run ``lo <= seq <
hi`` holds it; every seq from ``limit`` on is unacked.
"""

from __future__ import annotations

import bisect
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from .queue import Record

try:  # ISA-L's crc32: the same CRC as zlib's (the format is unchanged), about 3x as fast
    from isal.isal_zlib import crc32
except ImportError:  # a platform without isal's wheels
    from zlib import crc32

MAGIC = b"\xff\xd5"
HEADER = struct.Struct("<2sIQdI")
HEADER_SIZE = HEADER.size  # 26
_FIELDS = struct.Struct("<IQd")  # the header fields covered by the crc
MAX_PAYLOAD = 64 << 20  # a longer "length" is garbage, never a record
CHUNK = 256 << 10  # read size of the scanner (the bound of its read-ahead)
SEGMENT_RE = re.compile(r"^(\d{20})\.seg$")
O_BINARY: int = getattr(os, "O_BINARY", 0)

SLOT_SIZE = 8192
_SLOT_MAGIC = b"DSQS"
_SLOT_HEAD = struct.Struct("<4sQQQQI")
_RUN = struct.Struct("<QQ")
MAX_RUNS = (SLOT_SIZE - _SLOT_HEAD.size - 4) // _RUN.size


def pread(fd: int, n: int, offset: int) -> bytes:
    """``os.pread``, or seek + read where the platform lacks it (callers serialise access)."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


def pwrite(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``os.pwrite`` or seek + write)."""
    view = memoryview(data)
    while view:
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, view, offset)
        else:
            os.lseek(fd, offset, os.SEEK_SET)
            n = os.write(fd, view)
        view, offset = view[n:], offset + n


def datasync(fd: int) -> None:
    """``fdatasync`` where it exists, else ``fsync``."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def record_crc(payload_crc: int, length: int, seq: int, ts: float) -> int:
    return crc32(_FIELDS.pack(length, seq, ts), payload_crc)


def encode_batch(
    seq: int, times: list[float], payloads: list[bytes], crcs: list[int], sizes: list[int]
) -> bytes:
    """Header + payload for each payload, numbered from ``seq``; ``crcs`` and ``sizes`` are
    their crc32s and lengths (the header's crc is :func:`record_crc`, inlined here)."""
    parts: list[bytes] = []
    add, head, fields, crc = parts.append, HEADER.pack, _FIELDS.pack, crc32
    for payload, pcrc, n, ts in zip(payloads, crcs, sizes, times, strict=True):
        add(head(MAGIC, n, seq, ts, crc(fields(n, seq, ts), pcrc)))
        add(payload)
        seq += 1
    return b"".join(parts)


def check_record(data: bytes) -> tuple[int, bytes] | None:
    """``(seq, payload)`` of one whole record's bytes, or None when it does not verify."""
    if len(data) < HEADER_SIZE:
        return None
    magic, length, seq, ts, crc = HEADER.unpack_from(data)
    payload = data[HEADER_SIZE:]
    if magic != MAGIC or length != len(payload):
        return None
    return (seq, payload) if record_crc(crc32(payload), length, seq, ts) == crc else None


@dataclass(slots=True)
class Entry:
    """One verified record: where it sits in its segment and what it holds."""

    seq: int
    ts: float
    offset: int  # of the header in the segment file
    payload: bytes
    seg: int = 0  # first seq of the segment (set by the log)


class Scanner:
    """Reads verified records from one segment file, from ``offset`` up to ``end``.

    Garbage (bad magic, implausible length, bad CRC) is skipped by scanning forward for the
    next valid record; ``corrupt`` counts such spans. A valid record whose seq is not above the
    last one's (or above ``after``) is where the previous life of a recycled segment file
    begins: the records end there (``stale``). When :meth:`next` returns None, ``tail`` is the
    offset where unparsable or stale bytes before ``end`` begin (None when the file ended
    cleanly) and ``tail_complete`` says whether they began with a whole record whose CRC failed
    (rather than a record cut short). ``end`` may grow (the segment being written); the scan
    then goes on from where it stopped.
    """

    def __init__(self, fd: int, offset: int, end: int, after: int = 0) -> None:
        self.fd, self.end = fd, end
        self.buf, self.pos, self.base = b"", 0, offset  # base: file offset of buf[0]
        self.corrupt = 0
        self.last_seq = after
        self.tail: int | None = None
        self.tail_complete = self.stale = False

    def _have(self, need: int) -> int:
        """Buffer at least ``need`` bytes from ``pos`` if the file has them; return how many."""
        have = len(self.buf) - self.pos
        while have < need:
            start = self.base + len(self.buf)
            want = min(max(CHUNK, need - have), self.end - start)
            data = pread(self.fd, want, start) if want > 0 else b""
            if not data:
                break
            self.buf = self.buf[self.pos :] + data
            self.base += self.pos
            self.pos = 0
            have = len(self.buf)
        return have

    def next(self) -> Entry | None:
        """The next valid record, or None at ``end``."""
        garbage: int | None = None
        complete = False
        self.tail, self.stale = None, False
        while True:
            if self.pos == len(self.buf) and self.base + len(self.buf) >= self.end:
                break  # fast path: nothing buffered and nothing more to read
            if self._have(HEADER_SIZE) < HEADER_SIZE:
                break
            magic, length, seq, ts, crc = HEADER.unpack_from(self.buf, self.pos)
            whole = False
            if magic == MAGIC and length <= MAX_PAYLOAD:
                whole = self._have(HEADER_SIZE + length) >= HEADER_SIZE + length
                if whole:
                    start = self.pos + HEADER_SIZE
                    payload = self.buf[start : start + length]
                    if record_crc(crc32(payload), length, seq, ts) == crc:
                        if seq <= self.last_seq and garbage is None:
                            self.stale = True  # an older life of a recycled file
                            break
                        if seq > self.last_seq:
                            if garbage is not None:
                                self.corrupt += 1
                            entry = Entry(seq, ts, self.base + self.pos, payload)
                            self.pos = start + length
                            self.last_seq = seq
                            return entry
            if garbage is None:
                garbage, complete = self.base + self.pos, whole
            self._resync()
        if garbage is None and (self.stale or self.pos < len(self.buf)):
            garbage = self.base + self.pos  # stale records, or a cut-short header
        if garbage is not None:
            self.tail, self.tail_complete = garbage, complete
            self.buf, self.base, self.pos = b"", garbage, 0  # rescan from here if end grows
        return None

    def _resync(self) -> None:
        """Move to the next occurrence of the magic after the current position."""
        i = self.buf.find(MAGIC, self.pos + 1)
        while i < 0:
            self.pos = max(self.pos + 1, len(self.buf) - 1)  # the last byte may start a magic
            avail = len(self.buf) - self.pos
            if self._have(avail + 1) <= avail:
                self.pos = len(self.buf)
                return
            i = self.buf.find(MAGIC, self.pos)
        self.pos = i


@dataclass(frozen=True, slots=True)
class AckState:
    """Which seqs are acked (see the module docstring) and the next seq to assign."""

    floor: int = 0
    limit: int = 0
    runs: tuple[tuple[int, int], ...] = ()
    next_seq: int = 1

    def acked(self, seq: int) -> bool:
        if seq < self.floor:
            return True
        if seq >= self.limit:
            return False
        i = bisect.bisect_right(self.runs, seq, key=lambda run: run[0]) - 1
        return i < 0 or seq >= self.runs[i][1]


def encode_slot(gen: int, st: AckState) -> bytes:
    runs = st.runs[:MAX_RUNS]
    body = _SLOT_HEAD.pack(_SLOT_MAGIC, gen, st.floor, st.limit, st.next_seq, len(runs))
    body += b"".join(_RUN.pack(lo, hi) for lo, hi in runs)
    return body + struct.pack("<I", crc32(body))


def decode_slot(data: bytes) -> tuple[int, AckState] | None:
    if len(data) < _SLOT_HEAD.size + 4:
        return None
    magic, gen, floor, limit, next_seq, nruns = _SLOT_HEAD.unpack_from(data)
    end = _SLOT_HEAD.size + nruns * _RUN.size
    if magic != _SLOT_MAGIC or nruns > MAX_RUNS or end + 4 > len(data):
        return None
    if struct.unpack_from("<I", data, end)[0] != crc32(data[:end]):
        return None
    runs = tuple(_RUN.unpack_from(data, _SLOT_HEAD.size + i * _RUN.size) for i in range(nruns))
    return gen, AckState(floor, limit, runs, next_seq)


def read_state(path: Path) -> tuple[int, AckState] | None:
    """``(gen, state)`` from the newest valid slot of ``path``; None when missing or both bad."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    slots = [decode_slot(data[i * SLOT_SIZE : (i + 1) * SLOT_SIZE]) for i in (0, 1)]
    valid = [s for s in slots if s is not None]
    return max(valid, key=lambda s: s[0]) if valid else None


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """``(first seq, path)`` of every segment file, in seq order."""
    found = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        m = SEGMENT_RE.match(name)
        if m:
            found.append((int(m.group(1)), directory / name))
    return sorted(found)


def read_records(directory: Path | str) -> Iterator[Record]:
    """Yield every unacked record in a queue directory, oldest first (``attempts`` 0).

    Read-only and lock-free, for offline inspection (``dsrouter queue status``): it tolerates a
    writer running concurrently (it may then report records acked meanwhile, never skip one
    that was committed before the call), and skips damaged bytes without repairing them.
    """
    directory = Path(directory)
    found = read_state(directory / "state")
    state = found[1] if found else AckState()
    last = 0  # a segment recycled while listed must not show its records twice
    for first, path in list_segments(directory):
        try:
            fd = os.open(path, os.O_RDONLY | O_BINARY)
        except OSError:
            continue  # deleted meanwhile (fully acked) or unreadable
        try:
            scanner = Scanner(fd, 0, os.fstat(fd).st_size, max(first - 1, last))
            while (e := scanner.next()) is not None:
                last = e.seq
                if not state.acked(e.seq):
                    event = orjson.loads(e.payload)
                    yield Record(e.seq, event, len(e.payload), e.ts, 0, (first, e.offset))
        except OSError:
            continue
        finally:
            os.close(fd)
