"""MemoryQueue: a bounded queue in RAM, optionally spilled to disk at an orderly stop.

Records are lost on a crash. ``size`` (what ``max_bytes`` counts) is ``len(payload)`` when the
publisher passes the serialized payloads; otherwise it is *estimated* without serializing, as
``6 * len(event["raw"])`` (at least 1 KiB): what a normalized event costs in RAM as Python
objects, measured with the benchmark workload (~500-byte messages took ~3 KB each: the raw
line, the parsed fields and the dict overhead). Cheap on the hot path and close enough for a
memory bound.

With ``spill_dir``, :meth:`MemoryQueue.close` writes every unacked record (in flight ones too,
in seq order) to a :class:`~dsrouter.delivery.diskqueue.DiskQueue` in that directory, so an
orderly stop loses nothing (``spilled`` says how many). At construction the queue opens that
directory (holding its lock), and :meth:`MemoryQueue.fetch` drains what it holds before
anything published since, reading it lazily from disk and acking it there; such records keep
their disk seqs, which lie below every seq this queue assigns. They count in :meth:`stats`
(``recovered`` too) but not against ``max_events``/``max_bytes``, which bound RAM, and
:meth:`evict_oldest` leaves them alone.

``attempts`` of a fetched record is the number of times it was fetched, this fetch included
(1 the first time).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import orjson

from .diskqueue import DiskQueue, Retries
from .queue import Event, Queue, QueueFull, QueueStats, Record

_SPILL_BATCH = 1000


def estimate_size(event: Event) -> int:
    """What a payload-less event counts against ``max_bytes`` (see the module docstring)."""
    raw = event.get("raw")
    return max(6 * len(raw), 1024) if isinstance(raw, str | bytes) else 1024


class MemoryQueue(Queue):
    """A queue in RAM; ``spill_dir`` keeps its backlog across an orderly restart."""

    def __init__(
        self, name: str, max_events: int = 0, max_bytes: int = 0, spill_dir: Path | None = None
    ) -> None:
        super().__init__(name, max_events, max_bytes)
        self._cond = threading.Condition()
        self._records: dict[int, Record] = {}  # unacked, in seq order
        self._new: deque[Record] = deque()  # never fetched, in seq order (may hold stale ones)
        self._retries = Retries()
        self._leased: set[int] = set()
        self._bytes = self._evicted = self._gen = 0
        self._closed = False
        self.spilled = 0
        self._spill = DiskQueue(f"{name}.spill", spill_dir) if spill_dir is not None else None
        self._first_seq = self._spill.next_seq if self._spill is not None else 1
        self._next_seq = self._first_seq

    def publish(
        self, events: Sequence[Event] | None, payloads: Sequence[bytes] | None = None
    ) -> None:
        if payloads is None:  # estimate_size, inlined: this runs once per event
            if events is None:
                raise ValueError("publish: events or payloads")
            sizes = [max(6 * len(e.get("raw") or ""), 1024) for e in events]
        elif events is None or len(payloads) == len(events):
            sizes = [len(p) for p in payloads]
        else:
            raise ValueError("publish: one payload per event")
        total, now = sum(sizes), time.time()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"queue {self.name} is closed")
            if self._records and (
                (self.max_events and len(self._records) + len(sizes) > self.max_events)
                or (self.max_bytes and self._bytes + total > self.max_bytes)
            ):
                raise QueueFull(f"queue {self.name}: {len(sizes)} events / {total} bytes")
            seq = self._next_seq
            if events is None:
                assert payloads is not None
                made = [
                    Record(seq + i, None, size, now, payload=p)
                    for i, (p, size) in enumerate(zip(payloads, sizes, strict=True))
                ]
            else:
                made = [
                    Record(seq + i, event, size, now)
                    for i, (event, size) in enumerate(zip(events, sizes, strict=True))
                ]
            records = self._records
            for rec in made:
                records[rec.seq] = rec
            self._new.extend(made)
            seq += len(made)
            self._next_seq = seq
            self._bytes += total
            self._cond.notify(len(sizes))

    def _usage(self) -> tuple[int, int]:
        with self._cond:
            return len(self._records), self._bytes

    def fetch(self, max_events: int, timeout: float) -> list[Record]:
        """Lease up to ``max_events``: due nak'ed records, then spilled ones, then new ones."""
        deadline = time.monotonic() + timeout
        with self._cond:
            gen = self._gen
        while True:
            with self._cond:
                if self._closed or self._gen != gen:
                    return []
                out = [
                    self._lease(seq)
                    for seq in self._retries.take(time.monotonic(), max_events, self._waiting)
                ]
            if self._spill is not None and len(out) < max_events:
                out += self._spill.fetch(max_events - len(out), 0)
            with self._cond:
                new, records, leased = self._new, self._records, self._leased
                while new and len(out) < max_events:
                    rec = new.popleft()
                    if records.get(rec.seq) is rec:  # _lease, inlined: once per event
                        rec.attempts += 1
                        leased.add(rec.seq)
                        out.append(rec)
                if out or self._closed or self._gen != gen:
                    return out
                now = time.monotonic()
                if now >= deadline:
                    return []
                self._cond.wait(self._wait_for(deadline - now, now))

    def _wait_for(self, wait: float, now: float) -> float:
        dues = [self._retries.next_due()]
        if self._spill is not None:
            dues.append(self._spill.next_due())
        for due in dues:
            if due is not None:
                wait = min(wait, max(due - now, 0.0005))
        return wait

    def _waiting(self, seq: int) -> bool:
        return seq in self._records and seq not in self._leased

    def _lease(self, seq: int) -> Record:
        rec = self._records[seq]
        rec.attempts += 1
        self._leased.add(seq)
        return rec

    def _split(self, records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
        """(this queue's records, the spill's records)."""
        mine = [r for r in records if r.seq >= self._first_seq]
        return mine, [r for r in records if r.seq < self._first_seq]

    def ack(self, records: Sequence[Record]) -> None:
        mine, spilled = self._split(records)
        with self._cond:
            pop, discard, freed = self._records.pop, self._leased.discard, 0
            for r in mine:
                rec = pop(r.seq, None)
                if rec is not None:
                    discard(r.seq)
                    freed += rec.size
            self._bytes -= freed
        if spilled and self._spill is not None:
            self._spill.ack(spilled)

    def nak(self, records: Sequence[Record], delay: float = 0.0) -> None:
        mine, spilled = self._split(records)
        if spilled and self._spill is not None:
            self._spill.nak(spilled, delay)
        due = time.monotonic() + delay
        with self._cond:
            self._retries.give_back(self._leased, mine, due)
            self._cond.notify_all()

    def evict_oldest(self, events: int, nbytes: int) -> int:
        with self._cond:
            de, db = self._shortfall(len(self._records), self._bytes, events, nbytes)
            victims: list[Record] = []
            freed = 0
            for seq, rec in self._records.items():
                if len(victims) >= de and freed >= db:
                    break
                if seq not in self._leased:
                    victims.append(rec)
                    freed += rec.size
            for rec in victims:
                del self._records[rec.seq]
            new = self._new  # victims never fetched are at its front: let go of them now
            while new and self._records.get(new[0].seq) is not new[0]:
                new.popleft()
            self._bytes -= freed
            self._evicted += len(victims)
            return len(victims)

    def stats(self) -> QueueStats:
        with self._cond:
            oldest = next(iter(self._records.values())).enqueued_at if self._records else None
            own = QueueStats(
                len(self._records), self._bytes, len(self._leased), oldest, self._evicted
            )
        if self._spill is None or self._closed:
            return own
        disk = self._spill.stats()
        times = [t for t in (own.oldest_enqueued_at, disk.oldest_enqueued_at) if t is not None]
        return QueueStats(
            own.events + disk.events,
            own.bytes + disk.bytes,
            own.in_flight + disk.in_flight,
            min(times) if times else None,
            own.evicted,
            disk.corrupt,
            disk.recovered,
        )

    def wake(self) -> None:
        with self._cond:
            self._gen += 1
            self._cond.notify_all()
        if self._spill is not None:
            self._spill.wake()

    def close(self) -> None:
        """Stop; with ``spill_dir``, write every unacked record there first."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._gen += 1
            self._cond.notify_all()
            backlog = list(self._records.values())
            self._records.clear()
            self._new.clear()
            self._leased.clear()
            self._bytes = 0
        if self._spill is None:
            return
        try:
            for i in range(0, len(backlog), _SPILL_BATCH):
                chunk = backlog[i : i + _SPILL_BATCH]
                payloads = [r.payload or orjson.dumps(r.data) for r in chunk]
                known = [r.data for r in chunk if r.data is not None]
                events = known if len(known) == len(chunk) else None
                self._spill.publish_at(events, payloads, [r.enqueued_at for r in chunk])
                self.spilled += len(chunk)
        finally:
            self._spill.close()
