"""The per-output queue interface, shaped after a JetStream pull consumer.

Each output owns one :class:`Queue`. The receiving side (the daemon's event loop) commits
batches with :meth:`Queue.publish`; the output's worker threads lease records with
:meth:`Queue.fetch` and settle each one with :meth:`Queue.ack` (delivered or dead-lettered)
or :meth:`Queue.nak` (offer again later). A record leaves the queue only when it is acked, so
delivery is at-least-once from the moment ``publish`` returns.

Backends: :mod:`~dsrouter.delivery.memqueue` (RAM, bounded) and
:mod:`~dsrouter.delivery.diskqueue` (an append-only, checksummed segment log that survives
``kill -9``). A replicated JetStream backend later maps these verbs one to one (publish →
``js.publish`` with ``Nats-Msg-Id``, fetch → pull ``fetch``, ack/nak → ``msg.ack``/``msg.nak``),
and several receiving processes can feed one queue through its single owner. Every method is
thread-safe: publish and evict come from the event loop, fetch/ack/nak from worker threads.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

Event = dict[str, Any]

#: Stand-in for "no limit" in :meth:`Queue.room`.
UNLIMITED = 1 << 62


class QueueFull(Exception):
    """``publish`` would exceed ``max_events`` or ``max_bytes``: nothing was committed."""


@dataclass(slots=True, eq=False)
class Record:
    """One queued event as a worker sees it.

    ``seq`` is assigned by the queue (increasing, never reused); ``size`` is the event's
    serialized size in bytes as counted against ``max_bytes``; ``enqueued_at`` is wall-clock
    time (``time.time()``) of the commit; ``attempts`` counts how often it was fetched, this fetch
    included (1 the first time; in this process: a restart starts again). ``pos`` belongs to the
    backend. ``payload`` is the event as JSON when the queue has it (events published as
    payloads only, by receiving processes, carry no dict until :attr:`event` decodes it).
    """

    seq: int
    data: Event | None
    size: int
    enqueued_at: float
    attempts: int = 0
    pos: Any = field(default=None, repr=False)
    payload: bytes | None = field(default=None, repr=False)

    @property
    def event(self) -> Event:
        """The event; decoded from ``payload`` on first use when it was published as bytes."""
        data = self.data
        if data is None:
            data = self.data = decode_payload(self.payload or b"")
        return data


def decode_payload(payload: bytes) -> Event:
    """A queued payload as an event; one that is not a JSON object (a bug upstream, since
    the queue's checksums already caught damage) becomes an event saying so, with its text."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        event = None
    if isinstance(event, dict):
        return event
    text = payload[:65536].decode("utf-8", "replace")
    return {"format": "unknown", "parse_error": "queued payload is not a JSON object", "raw": text}


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot for metrics and ``dsrouter queue status``."""

    events: int  # committed and not yet acked, including in flight
    bytes: int  # their serialized size
    in_flight: int  # leased by fetch and not yet acked or nak'ed
    oldest_enqueued_at: float | None  # wall-clock time of the oldest unacked record
    evicted: int = 0  # records removed by evict_oldest since start
    corrupt: int = 0  # records skipped as corrupt at recovery or read (disk queue)
    recovered: int = 0  # records found on disk at start (disk queue)


class Queue(abc.ABC):
    """An output's queue. Limits of 0 mean unlimited."""

    durable: bool = False
    #: Several processes fetch from it (the cluster): a nak's delay applies to all of them.
    shared: bool = False

    def __init__(self, name: str, max_events: int = 0, max_bytes: int = 0) -> None:
        self.name = name
        self.max_events = max_events
        self.max_bytes = max_bytes

    @abc.abstractmethod
    def publish(
        self, events: Sequence[Event] | None, payloads: Sequence[bytes] | None = None
    ) -> None:
        """Commit every event or none.

        ``payloads`` are the events serialized as JSON (``orjson.dumps``), one per event, when
        the caller already has them; a backend that needs bytes serializes the others itself.
        ``events`` is ``None`` when the caller has only the payloads (a receiving process
        handed them over): records then decode them when a worker first needs the dict.
        Raises :class:`QueueFull` when the batch does not fit in the limits (a batch larger
        than the limits on an empty queue is still accepted, so nothing can jam), and
        ``OSError`` when the backend could not write it — in both cases nothing is committed
        and nothing partial is left behind.
        """

    def room(self) -> tuple[int, int]:
        """How many more events and bytes fit (:data:`UNLIMITED` where there is no limit)."""
        depth, nbytes = self._usage()
        ev = max(self.max_events - depth, 0) if self.max_events else UNLIMITED
        nb = max(self.max_bytes - nbytes, 0) if self.max_bytes else UNLIMITED
        return ev, nb

    def _shortfall(self, depth: int, nbytes: int, events: int, more: int) -> tuple[int, int]:
        """Events and bytes to remove before ``events`` events of ``more`` bytes fit
        (``evict_oldest``); zero or negative where nothing must go."""
        de = depth + events - self.max_events if self.max_events else 0
        db = nbytes + more - self.max_bytes if self.max_bytes else 0
        return de, db

    @abc.abstractmethod
    def _usage(self) -> tuple[int, int]:
        """Events and bytes counted against the limits, read under the queue's lock."""

    @abc.abstractmethod
    def fetch(self, max_events: int, timeout: float) -> list[Record]:
        """Lease up to ``max_events`` records, oldest first, waiting up to ``timeout`` seconds
        for the first; an empty list on timeout or after :meth:`close`/:meth:`wake`.
        Records nak'ed with a delay are fetchable again once it has passed."""

    @abc.abstractmethod
    def ack(self, records: Sequence[Record]) -> None:
        """Remove delivered (or dead-lettered) records for good."""

    @abc.abstractmethod
    def nak(self, records: Sequence[Record], delay: float = 0.0) -> None:
        """Give leased records back, fetchable again after ``delay`` seconds, in seq order."""

    @abc.abstractmethod
    def evict_oldest(self, events: int, nbytes: int) -> int:
        """Remove the oldest records that are not in flight until at least ``events`` events
        and ``nbytes`` bytes of room are free (or nothing is left to evict); return how many
        were removed (the ``drop_oldest`` policy counts them as dropped)."""

    @abc.abstractmethod
    def stats(self) -> QueueStats:
        """Depth, bytes, in flight, oldest age and the recovery counters."""

    def recent_stats(self) -> QueueStats:
        """:meth:`stats` for the event loop: never waits (a cluster queue answers from its
        last reading, refreshed in the background at most once a second)."""
        return self.stats()

    @abc.abstractmethod
    def wake(self) -> None:
        """Make every waiting :meth:`fetch` return now (used at shutdown)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files; in-flight records count as not acked (redelivered next start)."""
