"""The delivery engine: one lane (output + queue + worker) per ``output`` block.

The daemon's event loop hands each routed batch to :meth:`Engine.submit`, which commits every
output's share to that output's queue and returns at once. When a queue is full its
``when_full`` policy decides: ``drop_newest`` / ``drop_oldest`` count what they drop;
``block`` keeps the batch in the lane's small *held* list and tells the daemon to stop reading
its receivers (TCP flow control reaches the sender). A queue that cannot be written at all
(its disk is full) is held the same way, whatever the policy: nothing is lost, the sender waits.
Held batches are retried when a worker makes progress and on every :meth:`Engine.tick`.

An output whose ``open()`` fails at start-up (other than PermanentFailure) does not stop the
daemon: its lane starts closed and its worker retries ``open()``; one watchdog thread reports
sends that run past their output's ``send_timeout`` (:mod:`~dsrouter.delivery.isolation`).

With a cluster (``settings { cluster_servers }``) every queue is a
:class:`~dsrouter.delivery.jetstream.JetStreamQueue`, commits run in the background
(:mod:`~dsrouter.delivery.publishing`), dead letters go to the cluster's stream, and a
receive-only router's lanes have no output or worker (:mod:`~dsrouter.delivery.receive_only`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsrouter.api import Event, Output, OutputContext, OutputType
from dsrouter.delivery.commit import Share, Ticket
from dsrouter.delivery.deadletter import DeadLetters
from dsrouter.delivery.diskqueue import DiskQueue
from dsrouter.delivery.isolation import Origin, Watchdog, open_output, refusal
from dsrouter.delivery.lanes import Encoded, Lane, payloads_of, queue_dir, quietly_close
from dsrouter.delivery.memqueue import MemoryQueue
from dsrouter.delivery.options import DeliveryOptions, strip_raw
from dsrouter.delivery.policy import make_room
from dsrouter.delivery.queue import Queue, QueueFull
from dsrouter.delivery.receive_only import NotOpened, ReceiveOnly
from dsrouter.delivery.worker import Worker
from dsrouter.errors import StartupError

if TYPE_CHECKING:  # the cluster modules (and nats-py) load only when a cluster is used
    from dsrouter.delivery.jetstream_conn import JetStreamClient
    from dsrouter.delivery.jetstream_dlq import JetStreamDeadLetters
    from dsrouter.delivery.publishing import Publishing

__all__ = ["Encoded", "Engine", "Lane", "queue_dir"]


class Engine:
    """Builds and runs the lanes; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        config_dir: Path,
        output_types: Mapping[str, OutputType],
        log: Any,
        on_progress: Callable[[], None] = lambda: None,
        *,
        cluster: JetStreamClient | None = None,
        deliver: bool = True,
    ) -> None:
        self.data_dir, self.config_dir, self.types, self.log = (
            data_dir,
            config_dir,
            output_types,
            log,
        )
        self.on_progress = on_progress
        #: The process's cluster connection: every queue is then a JetStreamQueue.
        self.cluster = cluster
        #: False in a receive-only router: lanes publish, their outputs are never opened.
        self.deliver = deliver
        #: This process's own store (events too large for the cluster, in a cluster).
        self.local_dead_letters = DeadLetters(data_dir / "deadletter")
        self.dead_letters: DeadLetters | JetStreamDeadLetters = self.local_dead_letters
        self.publishing: Publishing | None = None
        if cluster is not None:
            from dsrouter.delivery.jetstream_dlq import JetStreamDeadLetters
            from dsrouter.delivery.publishing import Publishing

            self.dead_letters = JetStreamDeadLetters(cluster)
            self.publishing = Publishing(self)
        self.lanes: dict[str, Lane] = {}
        self.retired: list[Lane] = []
        self.lost: Counter[str] = Counter()
        self.watchdog = Watchdog(self._workers, log)

    # -- building -------------------------------------------------------------------------
    def open(self, blocks: Sequence[Any]) -> None:
        """Start a lane for every output block; StartupError names the one that cannot start
        (an ``open()`` that raised anything but PermanentFailure is retried by its worker)."""
        if self.watchdog.thread is None:
            self.watchdog.start()
        for block in blocks:
            lane = self.lanes[block.name] = self._lane(block)
            if self.cluster is not None:
                from dsrouter.delivery import spool

                lane.held.extend(spool.restore(self.data_dir, block.name, self.log))

    def _lane(self, block: Any, queue: Queue | None = None, output: Output | None = None) -> Lane:
        delivery, _ = DeliveryOptions.split(block.options)
        error = None
        if not self.deliver:
            output = output or NotOpened(block.type)  # type: ignore[assignment]
        elif output is None:
            output, error = self._open_output(block)
        assert output is not None
        try:
            queue = queue or self._queue(block.name, delivery)
        except OSError as exc:
            if error is None:
                quietly_close(output, self.log)
            raise StartupError(f"output '{block.name}': cannot open its queue: {exc}") from exc
        worker = (Worker if self.deliver else ReceiveOnly)(
            block.name,
            output,
            queue,
            self.dead_letters,
            delivery,
            self.log,
            self.on_progress,
            origin=self._origin(block),
            opened=error is None,
        )
        if error is not None:
            worker.open_failed(error)
        worker.start()
        return Lane(block.name, block.type, dict(block.options), delivery, output, queue, worker)

    def _origin(self, block: Any) -> Origin:
        origin = Origin.of(self.types.get(block.type))
        return origin if origin.type else Origin(block.type, origin.plugin, origin.distribution)

    def _open_output(self, block: Any) -> tuple[Output, str | None]:
        """The block's output and, when its ``open()`` raised (to be retried), why."""
        _, own = DeliveryOptions.split(block.options)
        ctx = OutputContext(data_dir=self.data_dir, config_dir=self.config_dir, logger=self.log)
        return open_output(self.types[block.type], block.name, own, ctx)

    def _workers(self) -> list[Worker]:
        """Every running lane's worker (the watchdog's view)."""
        return [lane.worker for lane in [*self.lanes.values(), *self.retired]]

    def _queue(self, name: str, opts: DeliveryOptions) -> Queue:
        if self.cluster is not None:
            from dsrouter.delivery.jetstream import JetStreamQueue

            return JetStreamQueue(name, self.cluster, opts.queue_max_events, opts.queue_max_bytes)
        where = queue_dir(self.data_dir, name)
        if opts.queue == "disk":
            return DiskQueue(
                name, where, opts.queue_max_events, opts.queue_max_bytes, fsync=opts.fsync_policy
            )
        return MemoryQueue(name, opts.queue_max_events, opts.queue_max_bytes, spill_dir=where)

    # -- the hot path ---------------------------------------------------------------------
    def submit(
        self, batches: Mapping[str, list[Event]], done: Callable[[bool], None] | None = None
    ) -> bool:
        """Commit each output's batch to its queue; False when something is held (pause).

        A batch may be :class:`Encoded` (the events' JSON payloads only, from a parser
        process): it is committed as bytes and decoded only if an output needs dicts.
        ``done(ok)`` runs on the loop once every batch is committed (see
        :mod:`~dsrouter.delivery.commit`). Cluster queues commit in the background
        (:mod:`~dsrouter.delivery.publishing`). An output with ``raw = false`` gets the
        events without ``raw`` (an Encoded batch for it was serialized without it)."""
        ticket = Ticket(done) if done is not None else None
        cache: dict[int, bytes] = {}
        copies: dict[int, Event] = {}
        for name, events in batches.items():
            lane = self.lanes[name]
            if not lane.delivery.raw and events.__class__ is not Encoded:
                events = strip_raw(events, copies)
            share = Share(events, ticket)
            if self.publishing is not None:
                self.publishing.submit(lane, share, cache)
            elif lane.held:
                lane.held.append(share)
            else:
                self._commit(lane, share, cache)
        if ticket is not None:
            ticket.settle()
        return not self.holding

    @property
    def holding(self) -> bool:
        return any(lane.held for lane in self.lanes.values())

    def _commit(self, lane: Lane, share: Share, cache: dict[int, bytes]) -> None:
        batch = share.batch
        events: list[Event] | None = None
        payloads: list[bytes] | None = batch
        if batch.__class__ is not Encoded:
            events, payloads = batch, payloads_of(batch, cache) if lane.queue.durable else None
        try:
            lane.queue.publish(events, payloads)
        except QueueFull:
            if lane.delivery.when_full == "block":
                self._hold(lane, share, "queue full")
                return
            make_room(lane, events, payloads)
        except OSError as exc:
            self._hold(lane, share, f"queue unwritable: {exc}")
            return
        share.settle()

    def _hold(self, lane: Lane, share: Share, reason: str) -> None:
        lane.held.append(share)
        self.note_hold(lane, reason)

    def note_hold(self, lane: Lane, reason: str) -> None:
        """Log the start of a hold (once, not per batch) and remember why."""
        if not lane.hold_reason:
            self.log.warning("output_backpressure", output=lane.name, reason=reason)
        lane.hold_reason = reason

    def released(self, lane: Lane) -> None:
        """Log the end of a hold once the lane holds nothing any more."""
        if not lane.held and lane.hold_reason:
            self.log.info("output_backpressure_released", output=lane.name)
            lane.hold_reason = ""

    def tick(self) -> bool:
        """Retry held batches; True when nothing is held any more (receivers may resume)."""
        cache: dict[int, bytes] = {}
        for lane in self.lanes.values():
            if self.publishing is not None:
                self.publishing.pump(lane)
                continue
            while lane.held:
                share = lane.held[0]
                try:
                    self._publish_held(lane, share.batch, cache)
                except (QueueFull, OSError):
                    break
                lane.held.popleft()
                share.settle()
            self.released(lane)
        return not self.holding

    @staticmethod
    def _publish_held(lane: Lane, batch: list[Event] | Encoded, cache: dict[int, bytes]) -> None:
        if batch.__class__ is Encoded:
            lane.queue.publish(None, batch)
        else:
            data = payloads_of(batch, cache) if lane.queue.durable else None
            lane.queue.publish(batch, data)

    # -- reload ---------------------------------------------------------------------------
    def reconfigure(self, blocks: Sequence[Any]) -> None:
        """Apply a new set of output blocks, all or nothing: every new or changed output is
        opened first (a failure closes those and changes nothing); then unchanged lanes stay
        as they are (queue, worker, connections) and reopen their files, changed ones get the
        new output on the same queue, removed ones take nothing new, drain and close."""
        wanted = {b.name: b for b in blocks}
        changed = [
            b for b in blocks if b.name not in self.lanes or not self.lanes[b.name].same_as(b)
        ]
        opened: dict[str, Output] = {}
        try:
            for block in changed:  # a running daemon keeps its old output rather than none
                output, error = self._open_output(block)
                if error is not None:
                    raise refusal(block.name, self._origin(block), error)
                opened[block.name] = output
        except StartupError:
            for output in opened.values():
                quietly_close(output, self.log)
            raise
        for name in [n for n in self.lanes if n not in wanted]:
            self._retire(self.lanes.pop(name))
        for name, lane in self.lanes.items():
            if name not in opened:
                lane.worker.request_reopen()
        for block in changed:
            old = self.lanes.get(block.name)
            output = opened[block.name]
            if old is None:
                self.lanes[block.name] = self._lane(block, output=output)
            else:
                self.lanes[block.name] = self._replace(old, block, output)

    def _replace(self, lane: Lane, block: Any, output: Output) -> Lane:
        """The changed block's new output on the lane's queue (a new queue if its type
        changed: the old one's backlog stays in the directory the new one reads)."""
        new_opts, _ = DeliveryOptions.split(block.options)
        wait = 0.0 if lane.worker.sends.hung else 10.0  # a hung send: do not stall the loop
        if self._stop_lane(lane, time.monotonic() + wait) and lane.worker.is_open:
            quietly_close(lane.output, self.log)
        queue: Queue | None = lane.queue
        if new_opts.queue == lane.delivery.queue or self.cluster is not None:
            lane.queue.max_events = new_opts.queue_max_events
            lane.queue.max_bytes = new_opts.queue_max_bytes
        else:
            lane.queue.close()  # a memory queue spills to the directory the disk queue reads
            queue = None
        new = self._lane(block, queue, output)
        new.held, new.dropped, new.publishing = lane.held, lane.dropped, lane.publishing
        new.failures, new.retry_at = lane.failures, lane.retry_at
        return new

    def _retire(self, lane: Lane) -> None:
        lane.retiring = True
        self.retired.append(lane)
        self.log.info("output_retiring", output=lane.name, queued=lane.queue.recent_stats().events)

    def reap(self) -> None:
        """Close retired lanes whose queue has drained (called periodically)."""
        for lane in list(self.retired):
            stats = lane.queue.recent_stats()
            if stats.events == 0 and not lane.held and not lane.publishing:
                self._close_lane(lane, time.monotonic() + 5.0)
                self.retired.remove(lane)

    # -- shutdown -------------------------------------------------------------------------
    def close(self, deadline: float) -> dict[str, int]:
        """Stop every worker (bounded by ``deadline``), commit what is held ignoring limits,
        close outputs and queues; return the events still queued per output."""
        self.lift_limits()
        lanes = list(self.lanes.values()) + self.retired
        for lane in lanes:
            lane.worker.stopping.set()
            lane.queue.wake()
        if self.publishing is not None:
            self.publishing.wait(lanes, min(deadline, time.monotonic() + 30.0))
        left: dict[str, int] = {}
        for lane in lanes:
            self._flush_held(lane, deadline)
            left[lane.name] = self._depth(lane)
            self._close_lane(lane, deadline)
        self.watchdog.stop()
        return left

    def lift_limits(self) -> None:
        """At shutdown what senders already sent must fit: queue limits no longer apply."""
        for lane in list(self.lanes.values()) + self.retired:
            lane.queue.max_events = lane.queue.max_bytes = 0

    def _depth(self, lane: Lane) -> int:
        """Events in the lane's queue now (a cluster that is away: its last reading)."""
        if self.cluster is not None and not self.cluster.connected:
            return lane.queue.recent_stats().events
        return lane.queue.stats().events

    def _flush_held(self, lane: Lane, deadline: float) -> None:
        while lane.held:
            share = lane.held[0]
            try:
                self._publish_held(lane, share.batch, {})
            except OSError as exc:
                if self.cluster is not None:
                    if time.monotonic() + 1.0 < deadline:  # a cluster electing a leader
                        time.sleep(0.25)
                        continue
                    self._spool(lane, exc)
                    return
                lane.held.popleft()
                self._lose(lane, [share], f"queue unwritable at shutdown: {exc}")
            else:
                lane.held.popleft()
                share.settle()

    def _spool(self, lane: Lane, error: OSError) -> None:
        """The cluster did not take what is held: keep it in the local spool instead."""
        from dsrouter.delivery import spool

        shares = list(lane.held)
        lane.held.clear()
        try:
            spool.save(self.data_dir, lane.name, shares, str(error), self.log)
        except OSError as exc:
            self._lose(lane, shares, f"cluster unavailable ({error}) and spool failed: {exc}")

    def _lose(self, lane: Lane, shares: list[Share], reason: str) -> None:
        events = sum(len(s) for s in shares)
        self.lost[lane.name] += events
        for share in shares:
            share.settle(False)
        self.log.error("events_lost", output=lane.name, events=events, reason=reason)

    def _stop_lane(self, lane: Lane, deadline: float) -> bool:
        stopped = lane.worker.stop(deadline)
        if not stopped:
            self.log.error(
                "output_stop_timeout",
                output=lane.name,
                **lane.worker.origin.fields(),
                help="a send() did not return; its batch stays queued",
            )
        return stopped

    def _close_lane(self, lane: Lane, deadline: float) -> None:
        if self._stop_lane(lane, deadline) and lane.worker.is_open:  # never opened: no close
            quietly_close(lane.output, self.log)
        queued = self._depth(lane)
        try:
            lane.queue.close()
        except OSError as exc:  # a memory queue could not spill to a full or broken disk
            self.lost[lane.name] += queued
            self.log.error(
                "events_lost",
                output=lane.name,
                events=queued,
                reason=f"memory queue could not be saved at shutdown: {exc}",
            )

    # -- observing ------------------------------------------------------------------------
    def queue_type(self, lane: Lane) -> str:
        """``jetstream`` in a cluster, else the output's ``queue`` option."""
        return "jetstream" if self.cluster is not None else lane.delivery.queue

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per-output counters and queue state, for metrics, health and ``queue status``."""
        out = {}
        for lane in list(self.lanes.values()) + self.retired:
            stats = lane.queue.recent_stats()
            now = time.time()
            entry = lane.worker.snapshot()
            dropped = dict(lane.dropped)
            if self.lost.get(lane.name):
                dropped["lost"] = self.lost[lane.name]
            entry.update(
                type=lane.type,
                plugin=lane.worker.origin.plugin,
                distribution=lane.worker.origin.distribution,
                queue_type=self.queue_type(lane),
                queue_events=stats.events + lane.held_events,
                queue_bytes=stats.bytes,
                queue_max_events=lane.delivery.queue_max_events,
                queue_max_bytes=lane.delivery.queue_max_bytes,
                queue_oldest_seconds=max(0.0, now - stats.oldest_enqueued_at)
                if stats.oldest_enqueued_at
                else 0.0,
                in_flight=stats.in_flight,
                held_events=lane.held_events,
                hold_reason=lane.hold_reason,
                dropped_total=dropped,
                corrupt_total=stats.corrupt,
                recovered_total=stats.recovered,
                retiring=lane.retiring,
            )
            out[lane.name] = entry
        return out
