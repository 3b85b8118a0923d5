"""The pipeline's batch path when parser processes do the parsing (``workers`` > 0).

On the event loop only cheap steps remain: chunks the receivers framed wait in
``Pipeline.pending``; :meth:`PooledFlow.dispatch` cuts them into batches of at most
:data:`BATCH_MESSAGES` messages and :data:`BATCH_BYTES` bytes (one message at least) and hands
each to the least busy parser process (two batches in flight per process, none while the
engine holds a batch). Answers (each output's JSON payloads) are committed to the engine in
batch order. When more than :data:`MAX_PENDING` messages or :data:`MAX_PENDING_BYTES` bytes
wait for a free process, the receivers pause until the backlog is half that — the same
back-pressure the engine applies. The bound is generous because a UDP sender cannot be held
back: a burst the parsers cannot keep up with waits here (bounded in bytes, whatever the
message sizes) instead of overflowing the kernel's buffer.

Events that reached a throttle come back unrouted and are routed here, against the one
budget state (so ``throttle 1 per 5m`` admits one event per window, not one per process).
A batch whose process died, or that raised there, is parsed and routed here instead.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import orjson

from dsrouter.delivery.engine import Encoded
from dsrouter.parse_worker import Item, Routed, now_stamp, parse_items, route_batch

BATCH_MESSAGES = 500
BATCH_BYTES = 1 << 20
MAX_PENDING = 200_000
MAX_PENDING_BYTES = 64 << 20


class PooledFlow:
    """Dispatch to the pool, and commit its answers in order (see the module docstring)."""

    def __init__(self, pipe: Any, pool: Any) -> None:
        self.pipe, self.pool = pipe, pool
        self.sent = self.committed = 0  # batch ids: next to send, next to commit
        self.arrived: dict[int, Routed] = {}
        self.pending_messages = self.pending_bytes = 0
        self.backlogged = False

    # -- sending --------------------------------------------------------------------------
    def received(self, count: int, nbytes: int) -> None:
        """A receiver added ``count`` messages of ``nbytes`` bytes to ``pending``."""
        self.pending_messages += count
        self.pending_bytes += nbytes
        if self._over(1) and not self.backlogged:
            self.backlogged = True
            self.pipe.pause()

    def dispatch(self) -> None:
        """Commit the answers that are next in order, then send batches while there is room:
        answers that wait for an earlier batch count against it, so a stalled process cannot
        let the others run ahead (and fill this process's memory) without bound."""
        pool, pending = self.pool, self.pipe.pending
        engine = self.pipe.engine
        self._commit_ready()
        while (
            pending
            and not engine.holding
            and pool.in_flight + len(self.arrived) < max(pool.capacity, 1)
        ):
            items, count, nbytes = _take(pending, BATCH_MESSAGES)
            self.pending_messages -= count
            self.pending_bytes -= nbytes
            batch, at = self.sent, now_stamp()
            self.sent += 1
            if not pool.send(batch, at, items):  # no process left: parse here
                self.arrived[batch] = self._route_here(batch, at, items)
                self._commit_ready()
        if self.backlogged and not self._over(2):
            self.backlogged = False
            if not engine.holding:
                self.pipe.resume()

    def _over(self, share: int) -> bool:
        """Is the backlog past ``1/share`` of its bounds?"""
        return (
            self.pending_messages * share > MAX_PENDING
            or self.pending_bytes * share > MAX_PENDING_BYTES
        )

    # -- answers --------------------------------------------------------------------------
    def on_answers(self) -> None:
        """On the loop, after a reader thread queued answers: take them all, commit, send."""
        self._drain_answers(block=0.0)
        self.dispatch()

    def _drain_answers(self, block: float) -> bool:
        got = False
        while True:
            try:
                answer = (
                    self.pool.answers.get(timeout=block)
                    if block
                    else self.pool.answers.get_nowait()
                )
            except queue.Empty:
                return got
            got, block = True, 0.0
            self._take_answer(answer)

    def _take_answer(self, answer: Any) -> None:
        if isinstance(answer, Routed):
            if self.pool.answered(answer.batch) is not None:
                self.arrived[answer.batch] = answer
            return
        kind, number = answer[0], answer[1]
        if kind == "ready":
            self.pipe.log.info("parser_process_started", index=number, compiled=answer[2])
        elif kind == "failed":
            sent = self.pool.answered(number)
            if sent is not None:
                self.pipe.log.error("parser_batch_failed", batch=number, error=answer[2])
                self.arrived[number] = self._route_here(number, *sent)
        elif kind == "lost":
            orphans = self.pool.lost(number)
            if orphans or self.pool.procs[number].alive:
                self.pipe.log.error(
                    "parser_process_died",
                    index=number,
                    batches=len(orphans),
                    restarted=self.pool.procs[number].alive,
                )
            for batch, (at, items) in orphans.items():
                self.arrived[batch] = self._route_here(batch, at, items)

    def _route_here(self, batch: int, at: str, items: list[Item]) -> Routed:
        """Parse and route a batch in this process (real throttles: nothing is deferred)."""
        pipe = self.pipe
        try:
            lean = frozenset(n for n, lane in pipe.engine.lanes.items() if not lane.delivery.raw)
            return route_batch(pipe.table, pipe.stamper, batch, items, at, lean)
        except Exception as exc:  # a bug in routing: keep the events as dead letters
            events = parse_items(items, at)
            pipe.stamper.stamp(events)
            pipe.pipeline_errors += 1
            pipe._dead_letter_batch(events, exc)
            return Routed(batch, events=len(events))

    def _commit_ready(self) -> None:
        arrived = self.arrived
        while self.committed in arrived:
            self._commit(arrived.pop(self.committed))
            self.committed += 1

    def _commit(self, routed: Routed) -> None:
        pipe = self.pipe
        pipe.batches += 1
        pipe.events_total += routed.events
        pipe.unparsed += routed.unparsed
        decisions = pipe.decisions
        for d, n in routed.decisions.items():
            decisions[d] = decisions.get(d, 0) + n
        if routed.outputs:
            pipe.submit({name: Encoded(p) for name, p in routed.outputs.items()})
        if routed.deferred:
            pipe.commit_events([orjson.loads(p) for p in routed.deferred], [])

    # -- stopping -------------------------------------------------------------------------
    def finish(self, timeout: float) -> None:
        """Commit everything received: wait up to ``timeout`` for the processes' answers,
        parse the rest here, then stop the processes."""
        deadline = time.monotonic() + timeout
        self.dispatch()
        while self.committed < self.sent or self.pipe.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._drain_answers(block=min(left, 0.1))
            self.dispatch()
        for proc in self.pool.procs:  # what is still unanswered: here
            for batch, (at, items) in list(proc.unanswered.items()):
                self.arrived[batch] = self._route_here(batch, at, items)
            proc.unanswered.clear()
        while self.pipe.pending:
            items, _, _ = _take(self.pipe.pending, BATCH_MESSAGES)
            self.arrived[self.sent] = self._route_here(self.sent, now_stamp(), items)
            self.sent += 1
        self._commit_ready()
        self.pool.close()


def _take(
    pending: list[Item], limit: int, max_bytes: int = BATCH_BYTES
) -> tuple[list[Item], int, int]:
    """Up to ``limit`` messages and ``max_bytes`` bytes (at least one message) from the front
    of ``pending`` (a big chunk is split), with how many messages and bytes they are."""
    items: list[Item] = []
    room, room_bytes = limit, max_bytes
    while pending and room > 0 and room_bytes > 0:
        name, peer, messages, truncated = pending[0]
        n = min(len(messages), room)
        size = sum(map(len, messages[:n]))
        if size > room_bytes:  # cut at the byte bound (but take one message at least)
            n, size = _fit(messages, room_bytes, first=not items)
            if n == 0:
                break
        if n == len(messages):
            items.append(pending.pop(0))
        else:
            items.append((name, peer, messages[:n], truncated))
            pending[0] = (name, peer, messages[n:], truncated)
        room, room_bytes = room - n, room_bytes - size
    return items, limit - room, max_bytes - room_bytes


def _fit(messages: list[bytes], room: int, first: bool) -> tuple[int, int]:
    """How many of ``messages`` fit ``room`` bytes, and their size; with ``first`` (nothing
    is in the batch yet) the first message always does."""
    n = size = 0
    for m in messages:
        if size + len(m) > room and (n or not first):
            break
        n, size = n + 1, size + len(m)
    return n, size
