"""JetStreamQueue: an output's queue as a subject of a replicated JetStream stream.

The verbs map one to one (layout and names in :mod:`~dsrouter.delivery.jetstream_stream`):

* :meth:`~JetStreamQueue.publish` — one JetStream publish per event on ``S.out.<output>``
  with ``Nats-Msg-Id = <output>:<event_id>``, all in flight together; it returns when
  JetStream acknowledged every one (stored on a quorum of the replicas): the events are
  *committed*. A retried publish within the ``duplicate_window`` stores nothing twice.
  JetStream 2.9 has no atomic batch, so a batch that fails part way may be partly stored:
  the error says so and the caller's retry of the same batch stores only the rest.
* :meth:`~JetStreamQueue.fetch` — pull requests on the output's durable consumer
  (:mod:`~dsrouter.delivery.jetstream_pull`); ``attempts`` is JetStream's delivery count,
  ``seq`` the stream sequence, ``enqueued_at`` the time the stream stored it.
* :meth:`~JetStreamQueue.ack` / :meth:`~JetStreamQueue.nak` — ``+ACK`` / ``-NAK {"delay"}``,
  each confirmed by the server before the call returns. Leases of this process are renewed
  (``+WPI``) every ``ack_wait / 3`` while they are held, so a send may take longer than
  ``ack_wait``; a process that dies leaves its leases to expire after ``ack_wait``.
* limits: ``max_events`` / ``max_bytes`` are checked against the stream's own count of the
  output's subject before each publish (:class:`QueueFull` when over; several receiving
  routers checking at once can overshoot by one batch each). ``bytes`` is what the stream
  stores for the output — payload plus subject, headers and record framing — estimated as
  the output's message count times the stream's mean stored size (exact when the output is
  alone in the stream).
* :meth:`~JetStreamQueue.evict_oldest` deletes the output's oldest messages not leased by
  this process (a lease of another delivery process cannot be seen from here).

Cluster trouble never escapes ``fetch``/``ack``/``nak`` (worker threads do not expect it):
fetch returns nothing, a lost ack or nak means a redelivery after ``ack_wait``, and
``last_error`` says what happened. ``publish`` raises it as ``OSError``.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
from nats.aio.msg import Msg

from .jetstream_conn import (
    ApiError,
    ClusterUnavailable,
    JetStreamClient,
    JetStreamError,
    Turns,
)
from .jetstream_msgs import (
    EventTooLarge,
    PartlyStored,
    check_sizes,
    msg_id,
    parse_time,
    publish_outcome,
    record_of,
)
from .jetstream_pull import GRACE, Puller
from .jetstream_stream import (
    Once,
    ensure_consumer,
    ensure_stream,
    work_stream_config,
    work_subject,
)
from .queue import Event, Queue, QueueFull, QueueStats, Record

__all__ = ["EventTooLarge", "JetStreamQueue", "PartlyStored", "record_of"]


class _Lease:
    __slots__ = ("reply", "touched")

    def __init__(self, reply: str, touched: float) -> None:
        self.reply, self.touched = reply, touched


class JetStreamQueue(Queue):
    """The queue of output ``name`` on the cluster ``client`` reaches; see the module doc."""

    durable = True
    shared = True  # several processes take from it: a nak's delay holds it back for all

    def __init__(
        self, name: str, client: JetStreamClient, max_events: int = 0, max_bytes: int = 0
    ) -> None:
        super().__init__(name, max_events, max_bytes)
        self.client = client
        self.stream = client.options.stream
        self.subject = work_subject(self.stream, name)
        self.duplicates = 0  # publishes JetStream recognised as already stored
        self.unconfirmed = 0  # acks and naks the server did not confirm (redelivered later)
        self.last_error = ""
        self._lock = threading.Lock()
        self._leases: dict[int, _Lease] = {}
        self._evicted = 0
        self._gen = 0
        self._closed = False
        self._stream, self._consumer = Once(), Once()  # created on first use
        self._stash_renewed = time.monotonic()
        self._reading: tuple[int, int, float | None] = (0, 0, None)  # for recent_stats()
        self._read_at = 0.0
        self._puller = Puller(client, self.stream, name)
        self._turns = Turns()  # publishes are sent in the order they were submitted
        client.every_half_second(id(self), self._renew)

    # -- provisioning --------------------------------------------------------------------
    async def _ensure(self, consumer: bool) -> None:
        """The stream (and the consumer, for fetching) exist: created on first use, by one
        request however many batches are published at once."""
        await self._stream.run(self._create_stream)
        if consumer:
            await self._consumer.run(lambda: ensure_consumer(self.client, self.name))

    async def _create_stream(self) -> None:
        config = work_stream_config(self.client, self.client.options.replicas)
        await ensure_stream(self.client, config)

    def _call(self, coro: Any, extra: float = 0.0) -> Any:
        """Run ``coro`` on the client's loop: one request's timeout (plus ``extra``)."""
        return self.client.call(coro, self.client.options.request_timeout + 1.0 + extra)

    # -- publish -------------------------------------------------------------------------
    def publish(
        self,
        events: Sequence[Event] | None,
        payloads: Sequence[bytes] | None = None,
        *,
        msg_ids: Sequence[str] | None = None,
    ) -> None:
        """See :meth:`Queue.publish`; ``msg_ids`` replaces the derived ``Nats-Msg-Id``s
        (a dead-letter replay must not be taken for the original publish)."""
        future = self.submit(events, payloads, msg_ids=msg_ids)
        wait = self.client.options.request_timeout * 2 + 1.0  # limits check, then publishes
        try:
            future.result(wait)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ClusterUnavailable(f"publish not acknowledged within {wait:g}s") from None

    def submit(
        self,
        events: Sequence[Event] | None,
        payloads: Sequence[bytes] | None = None,
        *,
        msg_ids: Sequence[str] | None = None,
        when_full: str = "block",
    ) -> concurrent.futures.Future[tuple[int, int]]:
        """:meth:`publish` without waiting: a future with its outcome (for the event loop).

        ``when_full`` decides what a batch over the limits does: ``block`` raises
        :class:`QueueFull`; ``drop_oldest`` first deletes the output's oldest messages
        (:meth:`evict_oldest`); ``drop_newest`` publishes only the events that fit. The
        result is (oldest evicted, newest dropped)."""
        blobs = self._payloads(events, payloads)
        if events is not None and len(blobs) != len(events):
            raise ValueError("publish: one payload per event")
        if msg_ids is None:
            msg_ids = [
                msg_id(self.name, events[i] if events is not None else None, blob)
                for i, blob in enumerate(blobs)
            ]
        elif len(msg_ids) != len(blobs):
            raise ValueError("publish: one message id per event")
        if self._closed:
            raise RuntimeError(f"queue {self.name} is closed")
        nc = self.client.nc
        check_sizes(blobs, msg_ids, nc.max_payload if nc is not None else 0)
        turn = self._turns.take()
        return self.client.submit(self._publish(blobs, list(msg_ids), when_full, turn))

    @staticmethod
    def _payloads(events: Sequence[Event] | None, payloads: Sequence[bytes] | None) -> list[bytes]:
        if payloads is not None:
            return list(payloads)
        if events is None:
            raise ValueError("publish: events or payloads")
        return [orjson.dumps(e, default=str) for e in events]

    async def _publish(
        self, blobs: list[bytes], ids: list[str], when_full: str, turn: int
    ) -> tuple[int, int]:
        """Check the limits, then send in submission order (:class:`Turns`) and wait for
        the acknowledgements."""
        try:
            return await self._publish_in_turn(blobs, ids, when_full, turn)
        finally:
            self._turns.finish(turn)

    async def _publish_in_turn(
        self, blobs: list[bytes], ids: list[str], when_full: str, turn: int
    ) -> tuple[int, int]:
        await self._ensure(consumer=False)
        evicted = dropped = 0
        if self.max_events or self.max_bytes:
            total = sum(len(b) for b in blobs)
            if when_full == "drop_oldest" and await self._over(len(blobs), total):
                evicted = await self._evict(len(blobs), total)
            elif when_full == "drop_newest":
                fit = await self._fitting(blobs)
                dropped, blobs, ids = len(blobs) - fit, blobs[:fit], ids[:fit]
                if not blobs:
                    return 0, dropped
                total = sum(len(b) for b in blobs)
            if await self._over(len(blobs), total):
                raise QueueFull(f"queue {self.name}: {len(blobs)} events / {total} bytes")
        subject = self.subject
        await self._turns.wait(turn)
        results = await self.client.request_many(
            [(subject, b, {"Nats-Msg-Id": i}) for b, i in zip(blobs, ids, strict=True)],
            sent=lambda: self._turns.finish(turn),
        )
        try:
            self.duplicates += publish_outcome(results, subject)
        except (QueueFull, OSError) as exc:
            self.last_error = str(exc)
            self._stream.reset()  # deleted by an operator? the retry looks again
            raise
        return evicted, dropped

    async def _fitting(self, blobs: list[bytes]) -> int:
        """How many of the first ``blobs`` fit in the room left (all on an empty subject)."""
        depth, used = await self._usage_async()
        if not depth:
            return len(blobs)
        fit = max(self.max_events - depth, 0) if self.max_events else len(blobs)
        room, total = (self.max_bytes - used if self.max_bytes else 1 << 62), 0
        for i, blob in enumerate(blobs[:fit]):
            total += len(blob)
            if total > room:
                return i
        return min(fit, len(blobs))

    async def _over(self, events: int, nbytes: int) -> bool:
        """Whether ``events`` more of ``nbytes`` exceed a limit (never on an empty subject)."""
        depth, used = await self._usage_async()
        return bool(depth) and bool(
            (self.max_events and depth + events > self.max_events)
            or (self.max_bytes and used + nbytes > self.max_bytes)
        )

    # -- limits and stats ----------------------------------------------------------------
    async def _usage_async(self) -> tuple[int, int]:
        info = await self.client.api(
            f"STREAM.INFO.{self.stream}", {"subjects_filter": self.subject}
        )
        state = info.get("state") or {}
        depth = int((state.get("subjects") or {}).get(self.subject, 0))
        total, msgs = int(state.get("bytes", 0)), int(state.get("messages", 0))
        return depth, (total * depth // msgs if msgs else 0)

    def _usage(self) -> tuple[int, int]:
        """From the stream; when the cluster cannot say, (no room) so nothing is assumed."""
        try:
            return self._call(self._ready_usage())
        except (JetStreamError, RuntimeError) as exc:
            self.last_error = str(exc)
            return (self.max_events or 1 << 62, self.max_bytes or 1 << 62)

    async def _ready_usage(self) -> tuple[int, int]:
        await self._ensure(consumer=False)
        return await self._usage_async()

    def stats(self) -> QueueStats:
        """The output's depth and bytes in the stream; ``in_flight`` counts this process's
        leases. When the cluster cannot answer: zeros, and ``last_error`` says why."""
        with self._lock:
            leased = len(self._leases)
        try:
            depth, nbytes, oldest = self._call(self._stats())
        except (JetStreamError, RuntimeError) as exc:
            self.last_error = str(exc)
            depth, nbytes, oldest = 0, 0, None
        return QueueStats(depth, nbytes, leased, oldest, self._evicted)

    def recent_stats(self) -> QueueStats:
        now = time.monotonic()
        if now - self._read_at >= 1.0 and not self._closed:
            self._read_at = now
            self.client.submit(self._read_stats())
        with self._lock:
            leased = len(self._leases)
        depth, nbytes, oldest = self._reading
        return QueueStats(depth, nbytes, leased, oldest, self._evicted)

    async def _read_stats(self) -> None:
        try:
            self._reading = await self._stats()
        except (JetStreamError, RuntimeError) as exc:
            self.last_error = str(exc)

    async def _stats(self) -> tuple[int, int, float | None]:
        await self._ensure(consumer=False)
        depth, nbytes = await self._usage_async()
        if not depth:
            return 0, 0, None
        first = await self._first_after(0)
        return depth, nbytes, first[1] if first is not None else None

    async def _first_after(self, seq: int) -> tuple[int, float] | None:
        """(seq, stored time) of the output's first message from ``seq`` on, or None."""
        try:
            got = await self.client.api(
                f"STREAM.MSG.GET.{self.stream}", {"seq": seq, "next_by_subj": self.subject}
            )
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        msg = got["message"]
        return int(msg["seq"]), parse_time(msg["time"])

    # -- fetch / ack / nak ---------------------------------------------------------------
    def fetch(self, max_events: int, timeout: float) -> list[Record]:
        if self._closed or max_events <= 0:
            return []
        gen = self._gen
        try:
            msgs = self._call(self._fetch(max_events, timeout, gen), timeout + GRACE)
        except (JetStreamError, RuntimeError) as exc:
            self.last_error = str(exc)
            if self._gen == gen and not self._closed:
                time.sleep(min(timeout, 1.0))
            return []
        return self._lease(msgs)

    async def _fetch(self, n: int, timeout: float, gen: int) -> list[Msg]:
        await self._ensure(consumer=True)
        silent = self._puller.silent
        msgs = await self._puller.fetch(n, timeout, lambda: self._gen != gen or self._closed)
        if self._puller.silent > silent:  # requests nobody answered: is the consumer gone?
            self._consumer.reset()
        return msgs

    def _lease(self, msgs: list[Msg]) -> list[Record]:
        now = time.monotonic()
        records = [record_of(m) for m in msgs]
        with self._lock:
            for rec in records:
                self._leases[rec.seq] = _Lease(rec.pos, now)
        records.sort(key=lambda r: r.seq)
        return records

    def _unlease(self, records: Sequence[Record]) -> list[tuple[int, str]]:
        with self._lock:
            pop = self._leases.pop
            out = [(r.seq, lease.reply) for r in records if (lease := pop(r.seq, None))]
        out.sort()
        return out

    def ack(self, records: Sequence[Record]) -> None:
        self._settle([reply for _, reply in self._unlease(records)], b"+ACK")

    def nak(self, records: Sequence[Record], delay: float = 0.0) -> None:
        body = b"-NAK" if delay <= 0 else b'-NAK {"delay":%d}' % int(delay * 1e9)
        self._settle([reply for _, reply in self._unlease(records)], body)

    def _settle(self, replies: list[str], body: bytes) -> None:
        if not replies:
            return
        try:
            results = self._call(self.client.request_many([(r, body, None) for r in replies]))
        except (JetStreamError, RuntimeError) as exc:
            self.last_error = str(exc)
            self.unconfirmed += len(replies)
            return
        for res in results:
            if isinstance(res, BaseException):
                self.last_error = f"{body[:4].decode()} not confirmed: {res}"
                self.unconfirmed += 1

    async def _renew(self) -> None:
        """``+WPI`` for every lease (and stashed message) not renewed for a third of
        ``ack_wait``; on the loop, every half second."""
        nc = self.client.nc
        if nc is None or not nc.is_connected:
            return
        every, now = self.client.options.ack_wait / 3, time.monotonic()
        with self._lock:
            due = [lease for lease in self._leases.values() if now - lease.touched >= every]
            for lease in due:
                lease.touched = now
        replies = [lease.reply for lease in due]
        if now - self._stash_renewed >= every:
            self._stash_renewed = now
            replies += [msg.reply for msg in self._puller.stash]
        for reply in replies:
            await nc.publish(reply, b"+WPI")

    # -- eviction ------------------------------------------------------------------------
    def evict_oldest(self, events: int, nbytes: int) -> int:
        try:
            removed = self._call(self._evict(events, nbytes), 60.0)
        except (JetStreamError, RuntimeError) as exc:
            self.last_error = str(exc)
            return 0
        return removed

    async def _evict(self, events: int, nbytes: int) -> int:
        await self._ensure(consumer=False)
        depth, used = await self._usage_async()
        de, db = self._shortfall(depth, used, events, nbytes)
        each = used / depth if depth else 0.0
        removed, freed, seq = 0, 0.0, 0
        while removed < de or freed < db:
            found = await self._first_after(seq)
            if found is None:
                break
            seq = found[0] + 1
            with self._lock:
                if found[0] in self._leases:
                    continue
            if await self._delete(found[0]):
                removed += 1
                freed += each
        self._evicted += removed
        return removed

    async def _delete(self, seq: int) -> bool:
        try:
            await self.client.api(
                f"STREAM.MSG.DELETE.{self.stream}", {"seq": seq, "no_erase": True}
            )
        except ApiError as exc:
            if exc.err_code == 10057:  # acked (and so removed) meanwhile
                return False
            raise
        return True

    # -- stopping ------------------------------------------------------------------------
    def wake(self) -> None:
        with self._lock:
            self._gen += 1
        try:
            self.client.loop.call_soon_threadsafe(self._puller.wake)
        except RuntimeError:  # the client's loop is closed: nothing waits there
            pass

    def close(self) -> None:
        """Stop; leases of this process are nak'ed, so other delivery processes take them
        now rather than after ``ack_wait``."""
        if self._closed:
            return
        self._closed = True
        self.wake()
        self.client.every_half_second(id(self), None)
        try:
            left = self.client.call(self._puller.close(), 2.0)
        except (JetStreamError, RuntimeError):
            left = []
        with self._lock:
            replies = [lease.reply for lease in self._leases.values()]
            self._leases.clear()
        replies += [m.reply for m in left]
        self._settle(replies, b"-NAK")
