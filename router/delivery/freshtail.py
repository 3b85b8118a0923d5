"""The disk queue's fresh tail: batches appended while the reader was caught up, kept in
memory (bounded by the log) so the reader takes them without reading the segment back.

The records are in the segment file too; this is only a copy of the reader's next ones. A
batch is kept as the lists it was written from — no object per record until it is taken.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Any

from . import segments as sg

#: What a take hands out: first seq, the segment's first seq, then offsets, payloads, times.
Taken = tuple[int, int, list[int], list[bytes], list[float]]


@dataclass(slots=True)
class _Batch:
    seg: Any  # the log's segment (``first``, ``count``, ``nbytes``)
    seq: int  # of its first record
    offsets: list[int]
    payloads: list[bytes]
    times: list[float]
    nbytes: int  # of its payloads
    pos: int = 0  # records before it are taken


class FreshTail:
    """Appended batches, oldest first; ``count`` and ``nbytes``: untaken records, bytes."""

    def __init__(self) -> None:
        self._batches: deque[_Batch] = deque()
        self.count = self.nbytes = 0

    def __bool__(self) -> bool:
        return bool(self._batches)

    def keep(
        self,
        seg: Any,
        seq: int,
        offset: int,
        payloads: list[bytes],
        times: list[float],
        sizes: list[int],
        nbytes: int,
    ) -> None:
        """Remember a batch of ``nbytes`` payload bytes (``sizes`` each) written at
        ``offset`` of ``seg`` (the lists are not copied)."""
        records = map(sg.HEADER_SIZE.__add__, islice(sizes, len(sizes) - 1))
        offsets = list(accumulate(records, initial=offset))
        self._batches.append(_Batch(seg, seq, offsets, payloads, times, nbytes))
        self.count += len(payloads)
        self.nbytes += nbytes

    def first(self) -> sg.Entry:
        """The oldest untaken record (the tail is not empty)."""
        b = self._batches[0]
        i = b.pos
        return sg.Entry(b.seq + i, b.times[i], b.offsets[i], b.payloads[i], b.seg.first)

    def take(self, n: int) -> tuple[Any, Taken, int]:
        """Up to ``n`` records from the oldest batch (the tail is not empty), with its
        segment and their payload bytes."""
        b = self._batches[0]
        lo, hi = b.pos, min(b.pos + n, len(b.payloads))
        if lo == 0 and hi == len(b.payloads):
            taken = b.seq, b.seg.first, b.offsets, b.payloads, b.times
            nbytes = b.nbytes
            self._batches.popleft()
        else:
            taken = b.seq + lo, b.seg.first, b.offsets[lo:hi], b.payloads[lo:hi], b.times[lo:hi]
            nbytes = sum(map(len, taken[3]))
            b.pos = hi
            if hi == len(b.payloads):
                self._batches.popleft()
        self.count -= hi - lo
        self.nbytes -= nbytes
        return b.seg, taken, nbytes
