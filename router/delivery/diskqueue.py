"""DiskQueue: a durable queue kept as an append-only, checksummed segment log.

``directory`` holds segment files ``<first seq, 20 digits>.seg`` (the record format is in
:mod:`~dsrouter.delivery.segments`), ``state`` (which seqs are acked: two checksummed slots),
``lock`` (held with an exclusive lock while open) and ``corrupt/`` (unreadable segments moved
aside at start). A publish batch is one ``write`` to the current segment; a new segment starts
once it has passed ``segment_bytes``; a segment is deleted once every record in it is acked.

What survives what:

* A returned ``publish`` is in the kernel: it survives ``kill -9`` of the process. ``ack``,
  ``nak`` and ``evict_oldest`` write the ack state through on every call, so after a process
  crash exactly the unacked records come back (those in flight included, ``attempts`` reset).
* ``fsync="always"``: publish (and ack) return after ``fdatasync``: they survive an OS crash or
  power loss too. Slowest.
* ``fsync=<seconds>`` (default 1.0): group commit. A daemon thread fsyncs the segments, the
  state and the directory at most once per interval when something changed, and close does;
  an OS crash or power loss loses at most about one interval of publishes (records from the
  torn tail are truncated away at start) and may bring back acks of that interval (duplicates,
  never a lost unacked record). Seqs of records lost that way may be assigned again.
* ``fsync="never"``: left to the kernel's write-back; close does not fsync either.

Start-up never refuses: a torn tail of the last segment is truncated, damaged records are
skipped (counted in ``stats().corrupt``), an unreadable segment is moved to ``corrupt/``, and a
missing or unreadable state file is rebuilt by treating every record found as unacked
(``state_rebuilt``, counted once in ``corrupt``). Memory stays small whatever the backlog:
records are read from the files as they are fetched (a read-ahead of one 256 KiB chunk); only
records fetched and not yet acked are tracked one by one, the rest as counts per segment.
Events this process published stay in RAM up to ``cache_bytes`` until fetched, so fetching
them skips the JSON decode (their bytes are still read back and checked).

``attempts`` of a fetched record is the number of times it was fetched in this process, this
fetch included (1 the first time). Seqs increase and are never reused, across restarts too.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from . import segments as sg
from .diskfiles import QueueLocked
from .disklog import SegmentLog
from .queue import Event, Queue, QueueFull, QueueStats, Record
from .segments import read_records

__all__ = ["DiskQueue", "QueueLocked", "Retries", "read_records"]


class Retries:
    """Nak'ed records waiting out their delay (a heap by due time), then due (a heap by seq)."""

    __slots__ = ("_delayed", "_due")

    def __init__(self) -> None:
        self._delayed: list[tuple[float, int]] = []
        self._due: list[int] = []

    def add(self, seq: int, due: float) -> None:
        heapq.heappush(self._delayed, (due, seq))

    def give_back(self, leased: set[int], records: Sequence[Record], due: float) -> list[Record]:
        """``nak``: records still leased leave the lease and wait until ``due``; returns them."""
        back = [r for r in records if r.seq in leased]
        for r in back:
            leased.remove(r.seq)
            self.add(r.seq, due)
        return back

    def take(self, now: float, n: int, live: Callable[[int], bool]) -> list[int]:
        """Up to ``n`` due seqs, lowest first, dropping those ``live`` rejects (gone since)."""
        delayed, due = self._delayed, self._due
        while delayed and delayed[0][0] <= now:
            heapq.heappush(due, heapq.heappop(delayed)[1])
        out: list[int] = []
        while due and len(out) < n:
            seq = heapq.heappop(due)
            if live(seq):
                out.append(seq)
        return out

    def next_due(self) -> float | None:
        """When the next waiting record becomes due (``time.monotonic``); None if none waits."""
        return self._delayed[0][0] if self._delayed else None


#: The first byte of every payload (a JSON object): a record whose payload starts otherwise is
#: damage the checksums did not catch, dropped and counted as corrupt when it is leased.
_OBJECT = b"{"


def _policy(fsync: float | str) -> float | str:
    if fsync in ("always", "never"):
        return fsync
    if isinstance(fsync, int | float) and not isinstance(fsync, bool) and fsync > 0:
        return float(fsync)
    raise ValueError(f'fsync must be "always", "never" or seconds > 0, not {fsync!r}')


class DiskQueue(Queue):
    """A queue in ``directory`` that survives restarts and crashes (see the module docstring).

    ``segment_bytes``: start a new segment file once the current one is that large.
    ``fsync``: ``"always"``, ``"never"`` or the group-commit interval in seconds.
    Raises :class:`QueueLocked` when the directory is in use. ``state_rebuilt`` tells whether
    the ack state had to be rebuilt at start.
    """

    durable = True

    def __init__(
        self,
        name: str,
        directory: Path | str,
        max_events: int = 0,
        max_bytes: int = 0,
        segment_bytes: int = 8 << 20,
        fsync: float | str = 1.0,
        cache_bytes: int = 32 << 20,
    ) -> None:
        super().__init__(name, max_events, max_bytes)
        # Events published by this process and not yet fetched, so that fetching them needs no
        # ``orjson.loads`` (the bytes are still read back and checked): bounded by their size.
        self._fresh: dict[int, tuple[Event, int]] = {}
        self._fresh_bytes = 0
        self._cache_bytes = cache_bytes
        self.directory = Path(directory)
        self._cond = threading.Condition()
        self._log = SegmentLog(self.directory, segment_bytes, _policy(fsync), self._cond)
        self.state_rebuilt = self._log.state_rebuilt
        # Taken and unacked, in seq order: the records handed out (``pos`` is (segment,
        # offset)); a nak'ed one is kept without its payload and event until it is due again.
        self._pending: dict[int, Record] = {}
        self._pbytes = 0
        self._leased: set[int] = set()
        self._retries = Retries()
        self._evicted = 0
        self._gen = 0
        self._closed = False

    @property
    def next_seq(self) -> int:
        """The seq the next published record gets."""
        return self._log.next_seq

    def publish(
        self, events: Sequence[Event] | None, payloads: Sequence[bytes] | None = None
    ) -> None:
        """Append the batch with one write (see the module docstring for durability)."""
        self.publish_at(events, payloads, None)

    def publish_at(
        self,
        events: Sequence[Event] | None,
        payloads: Sequence[bytes] | None,
        enqueued_at: Sequence[float] | None,
    ) -> None:
        """:meth:`publish`, keeping the given enqueue times (a memory queue's spill does)."""
        if payloads is None:
            if events is None:
                raise ValueError("publish: events or payloads")
            blobs = [orjson.dumps(e) for e in events]
        else:
            blobs = list(payloads)
        times = [time.time()] * len(blobs) if enqueued_at is None else list(enqueued_at)
        if not len(blobs) == len(times) or (events is not None and len(events) != len(blobs)):
            raise ValueError("publish: one payload (and time) per event")
        if not blobs:
            return
        sizes = list(map(len, blobs))
        if max(sizes) > sg.MAX_PAYLOAD:
            raise ValueError(f"publish: an event larger than {sg.MAX_PAYLOAD} bytes")
        crcs = list(map(sg.crc32, blobs))
        total = sum(sizes)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"queue {self.name} is closed")
            depth, nbytes = self._totals()
            if depth and (
                (self.max_events and depth + len(blobs) > self.max_events)
                or (self.max_bytes and nbytes + total > self.max_bytes)
            ):
                raise QueueFull(f"queue {self.name}: {len(blobs)} events / {total} bytes")
            first = self._log.next_seq
            self._log.append(blobs, crcs, times, sizes, total)
            if events is not None:
                self._remember(first, events, blobs)
            self._cond.notify(len(blobs))

    def _remember(self, first: int, events: Sequence[Event], blobs: list[bytes]) -> None:
        fresh, room = self._fresh, self._cache_bytes - self._fresh_bytes
        for i, (event, blob) in enumerate(zip(events, blobs, strict=True)):
            if len(blob) > room:
                break
            fresh[first + i] = (event, len(blob))
            room -= len(blob)
        self._fresh_bytes = self._cache_bytes - room

    def _recall(self, seq: int) -> Event | None:
        hit = self._fresh.pop(seq, None)
        if hit is None:
            return None
        self._fresh_bytes -= hit[1]
        return hit[0]

    def _totals(self) -> tuple[int, int]:
        log = self._log
        return log.unread + len(self._pending), log.unread_bytes + self._pbytes

    def _usage(self) -> tuple[int, int]:
        with self._cond:
            return self._totals()

    def fetch(self, max_events: int, timeout: float) -> list[Record]:
        """Lease up to ``max_events`` records: due nak'ed ones first, then unread ones."""
        deadline = time.monotonic() + timeout
        with self._cond:
            gen = self._gen
            while True:
                if self._closed or self._gen != gen:
                    return []
                got = self._lease(max_events)
                if got:
                    break
                now = time.monotonic()
                if now >= deadline:
                    return []
                wait, due = deadline - now, self._retries.next_due()
                if due is not None:
                    wait = min(wait, max(due - now, 0.0005))
                self._cond.wait(wait)
        return got

    def _waiting(self, seq: int) -> bool:
        return seq in self._pending and seq not in self._leased

    def _drop(self, seqs: list[int]) -> None:
        """Forget taken records (acked, damaged or evicted); ``seqs`` are all pending."""
        pop = self._pending.pop
        self._pbytes -= sum([pop(seq).size for seq in seqs])
        self._leased.difference_update(seqs)

    def _lease(self, n: int) -> list[Record]:
        out: list[Record] = []
        damaged = 0
        for seq in self._retries.take(time.monotonic(), n, self._waiting):
            rec = self._pending[seq]
            seg, offset = rec.pos
            payload = self._log.reread(seg, offset, seq, rec.size)
            if payload is None or payload[:1] != _OBJECT:
                self._drop([seq])
                damaged += 1
                continue
            rec.attempts += 1
            rec.payload = payload
            self._leased.add(seq)
            out.append(rec)
        log = self._log
        while len(out) < n:
            taken = log.take_fresh(n - len(out))
            if taken is None:
                e = log.take()
                if e is None:
                    break
                taken = e.seq, e.seg, [e.offset], [e.payload], [e.ts]
            damaged += self._track(*taken, out)
        if damaged:
            self._log.corrupt += damaged
            self._log.commit(self._pending)
        return out

    def _track(
        self,
        seq: int,
        seg: int,
        offsets: list[int],
        payloads: list[bytes],
        times: list[float],
        out: list[Record],
    ) -> int:
        """Lease records just taken from the log, numbered from ``seq``; returns how many were
        left out as damaged."""
        pending, lease, add = self._pending, self._leased.add, out.append
        recall = self._recall if self._fresh else None
        nbytes = damaged = 0
        for offset, payload, ts in zip(offsets, payloads, times, strict=True):
            size = len(payload)
            event = None if recall is None else recall(seq)
            if event is None and payload[:1] != _OBJECT:
                damaged += 1
            else:
                pending[seq] = rec = Record(seq, event, size, ts, 1, (seg, offset), payload)
                lease(seq)
                add(rec)
                nbytes += size
            seq += 1
        self._pbytes += nbytes
        return damaged

    def ack(self, records: Sequence[Record]) -> None:
        with self._cond:
            if self._closed:
                return
            acked = [r.seq for r in records if r.seq in self._pending]
            if acked:
                self._drop(acked)
                self._log.commit(self._pending)

    def nak(self, records: Sequence[Record], delay: float = 0.0) -> None:
        due = time.monotonic() + delay
        with self._cond:
            if self._closed:
                return
            pending = self._pending
            for r in self._retries.give_back(self._leased, records, due):
                pending[r.seq] = Record(r.seq, None, r.size, r.enqueued_at, r.attempts, r.pos)
            self._cond.notify_all()

    def evict_oldest(self, events: int, nbytes: int) -> int:
        with self._cond:
            if self._closed:
                return 0
            depth, total = self._totals()
            de, db = self._shortfall(depth, total, events, nbytes)
            n = b = 0
            victims = []
            for seq, rec in self._pending.items():  # taken ones (nak'ed) are the oldest
                if n >= de and b >= db:
                    break
                if seq not in self._leased:
                    victims.append(seq)
                    n, b = n + 1, b + rec.size
            self._drop(victims)
            while (n < de or b < db) and (e := self._log.take()) is not None:
                n, b = n + 1, b + len(e.payload)
                self._recall(e.seq)
            if n:
                self._evicted += n
                self._log.commit(self._pending)
            return n

    def stats(self) -> QueueStats:
        with self._cond:
            depth, nbytes = self._totals()
            oldest = None
            if self._pending:
                oldest = self._pending[next(iter(self._pending))].enqueued_at
            elif not self._closed and (e := self._log.head()) is not None:
                oldest = e.ts
            log = self._log
            return QueueStats(
                depth, nbytes, len(self._leased), oldest, self._evicted, log.corrupt, log.recovered
            )

    def wake(self) -> None:
        with self._cond:
            self._gen += 1
            self._cond.notify_all()

    def next_due(self) -> float | None:
        """When a nak'ed record next becomes due (``time.monotonic``), None if none waits."""
        with self._cond:
            return self._retries.next_due()

    def close(self) -> None:
        """Write the state, fsync (unless ``fsync="never"``) and release the directory;
        records in flight stay unacked."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._gen += 1
            self._cond.notify_all()
            taken = list(self._pending)
            self._fresh.clear()
        self._log.close(taken)
