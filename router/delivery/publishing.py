"""Commits to a queue on the cluster without blocking the event loop.

A JetStream publish is a network round trip (a few ms; seconds while a stream elects a new
leader), so the engine never waits for one. Each cluster lane keeps up to
:data:`IN_FLIGHT` batches publishing at once (:meth:`JetStreamQueue.submit` futures); what
comes while they are all busy waits in the lane's held list, which pauses the receivers
exactly as a full local queue does. A publish that fails goes back to the front of the held
list and is retried, one at a time with a growing delay, until the cluster takes it again;
its message ids make the retry store only what was not stored yet. Batches in flight at
the same time are stored in the order they came (the queue's sends take turns); a retried
one lands after later ones.

``when_full`` applies when the output's limits refuse a batch, inside the publish itself:
``block`` holds it, ``drop_newest`` publishes what fits and counts the rest, ``drop_oldest``
deletes the output's oldest messages first. Events larger than the servers' ``max_payload``
can never be stored: they become dead letters in the router's local store (a dead letter
would not fit in the cluster either), the rest of the batch is published.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

from dsrouter.delivery.commit import Share, put_back
from dsrouter.delivery.deadletter import Letter
from dsrouter.delivery.jetstream_msgs import EventTooLarge
from dsrouter.delivery.lanes import Encoded, payloads_of
from dsrouter.delivery.queue import QueueFull, decode_payload

if TYPE_CHECKING:
    from dsrouter.delivery.engine import Engine
    from dsrouter.delivery.lanes import Lane

#: Batches of one output publishing at once.
IN_FLIGHT = 8
_RETRY_FIRST, _RETRY_MAX = 0.2, 5.0


class Publishing:
    """The engine's cluster commits (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.closing = False

    def submit(self, lane: Lane, share: Share, cache: dict[int, bytes]) -> None:
        """Publish now if a slot is free and nothing waits before it; else hold it."""
        if lane.held or len(lane.publishing) >= IN_FLIGHT:
            lane.held.append(share)
        else:
            self._send(lane, share, cache)

    def pump(self, lane: Lane) -> None:
        """Start held batches while slots are free (one at a time after a failure)."""
        if lane.retry_at > time.monotonic():
            return
        slots = 1 if lane.failures else IN_FLIGHT
        while lane.held and len(lane.publishing) < slots:
            self._send(lane, lane.held.popleft())

    def _send(self, lane: Lane, share: Share, cache: dict[int, bytes] | None = None) -> None:
        batch = share.batch
        events: list[Any] | None = None
        if batch.__class__ is Encoded:
            payloads: list[bytes] = batch
        else:
            events, payloads = batch, payloads_of(batch, {} if cache is None else cache)
        policy = lane.delivery.when_full
        try:
            future = lane.queue.submit(events, payloads, when_full=policy)  # type: ignore[attr-defined]
        except EventTooLarge as exc:
            self._too_large(lane, share, exc)
            return
        except RuntimeError as exc:  # closed: only at shutdown, which commits what is held
            self._failed(lane, share, f"queue closed: {exc}")
            return
        lane.publishing[future] = share
        loop = asyncio.get_running_loop()

        def landed(fut: concurrent.futures.Future[Any]) -> None:  # on the client's thread
            try:
                loop.call_soon_threadsafe(self.landed, lane, fut)
            except RuntimeError:  # the loop is gone: Engine.close() settles it
                pass

        future.add_done_callback(landed)

    def landed(self, lane: Lane, future: concurrent.futures.Future[Any]) -> None:
        """A publish finished: settle its share, or put it back to be retried."""
        share = lane.publishing.pop(future, None)
        if share is None:  # already settled by Engine.close()
            return
        error = None if future.cancelled() else future.exception()
        if future.cancelled():
            error = TimeoutError("publish cancelled")
        if error is None:
            evicted, dropped = future.result()
            self._dropped(lane, "queue_full_oldest", evicted)
            self._dropped(lane, "queue_full_newest", dropped)
            lane.failures, lane.retry_at = 0, 0.0
            share.settle(True)
        elif isinstance(error, QueueFull) and lane.delivery.when_full == "drop_oldest":
            self._dropped(lane, "queue_full_oldest", len(share))  # nothing left to evict
            share.settle(True)
        else:
            why = "queue full" if isinstance(error, QueueFull) else f"queue unwritable: {error}"
            self._failed(lane, share, why)
        if not self.closing:
            self.pump(lane)
            self.engine.released(lane)
            self.engine.on_progress()

    @staticmethod
    def _dropped(lane: Lane, reason: str, count: int) -> None:
        if count:
            lane.dropped[reason] += count

    def _failed(self, lane: Lane, share: Share, reason: str) -> None:
        put_back(lane.held, share)
        lane.failures += 1
        lane.retry_at = time.monotonic() + min(_RETRY_FIRST * 2 ** (lane.failures - 1), _RETRY_MAX)
        self.engine.note_hold(lane, reason)

    def _too_large(self, lane: Lane, share: Share, exc: EventTooLarge) -> None:
        """Keep events the cluster can never store as dead letters in this router's own
        store (a dead letter of them would not fit in the cluster either); publish the rest."""
        batch = share.batch
        bad = set(exc.indexes)
        reason = f"event larger than the cluster's max_payload ({exc.limit} bytes)"
        letters = [
            Letter(decode_payload(batch[i]) if batch.__class__ is Encoded else batch[i], reason, 0)
            for i in sorted(bad)
        ]
        try:
            self.engine.local_dead_letters.add(lane.name, letters)
        except OSError as err:
            self.engine.lost[lane.name] += len(bad)
            self.engine.log.error("events_lost", output=lane.name, events=len(bad), reason=str(err))
        else:
            self.engine.log.error(
                "events_too_large_for_cluster",
                output=lane.name,
                events=len(bad),
                max_payload=exc.limit,
                help="kept in this router's data_dir/deadletter; raise the servers' max_payload",
            )
        rest = [x for i, x in enumerate(batch) if i not in bad]
        if rest:
            share.batch = Encoded(rest) if batch.__class__ is Encoded else rest
            self._send(lane, share)
        else:
            share.settle(True)

    def wait(self, lanes: list[Lane], deadline: float) -> None:
        """At shutdown: wait for the publishes in flight and settle them here (the loop is
        blocked, so their callbacks cannot run); failed ones go back to the held lists."""
        self.closing = True
        futures = [f for lane in lanes for f in lane.publishing]
        concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for lane in lanes:
            for future in list(lane.publishing):
                if future.done():
                    self.landed(lane, future)
                else:
                    future.cancel()
                    put_back(lane.held, lane.publishing.pop(future))
