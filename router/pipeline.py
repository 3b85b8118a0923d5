"""The receive side of the daemon: raw messages → events → routes → the delivery engine.

Receivers call a sink with every message of a received chunk; the sink only appends to a
pending list and schedules one flush for the current loop iteration, so a flush handles
everything that arrived from every connection since the last one. A flush parses, stamps an
``event_id``, routes, and commits each output's share to its queue through the engine. When
the engine holds a batch (a ``block`` queue is full, or a queue cannot be written), every
receiver is paused until the engine has room again: TCP senders see flow control, UDP
datagrams wait in (and, past it, are dropped and counted by) the kernel's receive buffer.

Inputs that parse their own messages and must know when their events are committed (the SNS
input answers its sender only then) use ``sink.submit(events, on_done)`` instead: the events
join the next flush, and ``on_done(True)`` runs once every output's share is in its queue —
at that flush, or when the engine releases the batches it held; ``on_done(False)`` when they
could not be kept at all. The syslog path does not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsrouter.delivery.deadletter import Letter
from dsrouter.delivery.engine import Engine
from dsrouter.parse_worker import Item, Stamper, now_stamp, parse_items
from dsrouter.pipeline_pool import PooledFlow

#: The dead-letter store name for batches the pipeline itself could not route.
PIPELINE = "_pipeline"


class Pipeline:
    """Pending messages, the flush, the route table and pausing of receivers."""

    def __init__(
        self, engine: Engine, table: Any, data_dir: Path, log: Any, pool: Any = None
    ) -> None:
        self.engine, self.table, self.data_dir, self.log = engine, table, data_dir, log
        #: A :class:`~dsrouter.parse_pool.ParserPool` when ``workers`` > 0 (see
        #: :mod:`dsrouter.pipeline_pool`); None: messages are parsed on the event loop.
        self.pooled = PooledFlow(self, pool) if pool is not None else None
        self.pending: list[Item] = []
        self.parsed: list[tuple[list[dict], Callable[[bool], None]]] = []
        self.flush_scheduled = False
        self.listeners: list[Any] = []
        self.paused = False  # receivers are paused
        self.events_total = self.unparsed = self.batches = self.pipeline_errors = 0
        self.decisions: dict[Any, int] = {}
        self.stamper = Stamper()

    def sink_for(self, name: str):
        """The ``sink(messages, peer, truncated=False)`` callable handed to an input; its
        ``submit(events, on_done)`` attribute is :meth:`submit_events` for this input."""
        pending, pooled = self.pending, self.pooled

        def sink(messages: list[bytes], peer: str, truncated: bool = False) -> None:
            pending.append((name, peer, messages, truncated))
            if pooled is not None:
                pooled.received(len(messages), sum(map(len, messages)))
            if not self.flush_scheduled:
                self.flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)

        def submit(events: list[dict], on_done: Callable[[bool], None]) -> None:
            self.submit_events(events, on_done)

        sink.submit = submit  # type: ignore[attr-defined]
        return sink

    def submit_events(self, events: list[dict], on_done: Callable[[bool], None]) -> None:
        """Route already-normalized events with the next flush; ``on_done(committed)`` is
        called once on the event loop when they are in their queues (or cannot be kept)."""
        self.parsed.append((events, on_done))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    # -- the batch path -------------------------------------------------------------------
    def flush(self) -> None:
        """Parse, route and commit everything received since the last flush (with a pool:
        hand it to the parser processes, and commit what they answered)."""
        self.flush_scheduled = False
        if self.pooled is not None:
            self.pooled.dispatch()
            batch: list[Item] = []
        else:
            batch, self.pending[:] = list(self.pending), []
        if batch or self.parsed:
            self._flush_local(batch)

    def _flush_local(self, batch: list[Item]) -> None:
        self.batches += 1
        events = parse_items(batch, now_stamp())
        self._stamp(events)
        callbacks: list[Callable[[bool], None]] = []
        if self.parsed:
            callbacks = self._take_parsed(events)
        self.commit_events(events, callbacks)

    def commit_events(self, events: list[dict], callbacks: list[Callable[[bool], None]]) -> bool:
        """Route parsed events here and commit them; False when the engine holds them."""
        try:
            batches = self._route(events)
        except Exception as exc:  # a bug must not lose the batch: keep it for replay
            self.pipeline_errors += 1
            kept = self._dead_letter_batch(events, exc)
            _settle(callbacks, kept)
            return True
        return self.submit(batches, callbacks)

    def submit(self, batches: dict, callbacks: list[Callable[[bool], None]] | None = None) -> bool:
        """Commit routed batches through the engine; pause the receivers when it holds.
        ``callbacks`` learn once all of the batches are committed (or could not be kept)."""
        done = None
        if callbacks:
            done = lambda ok: _settle(callbacks, ok)  # noqa: E731
        if not self.engine.submit(batches, done):
            self.pause()
            return False
        return True

    def _take_parsed(self, events: list[dict]) -> list[Callable[[bool], None]]:
        """Append the submitted events to this flush's (stamped and counted like them)."""
        parsed, self.parsed = self.parsed, []
        extra = [ev for evs, _ in parsed for ev in evs]
        self._stamp(extra)
        events.extend(extra)
        return [on_done for _, on_done in parsed]

    def _stamp(self, events: list[dict]) -> None:
        """Give each event its ``event_id``; count events and unparsed ones."""
        self.unparsed += self.stamper.stamp(events)
        self.events_total += len(events)

    def _route(self, events: list[dict]) -> dict[str, list[dict]]:
        batches: dict[str, list[dict]] = {}
        decisions = self.decisions
        decide = self.table.decide
        for ev in events:
            d = decide(ev)
            decisions[d] = decisions.get(d, 0) + 1
            for name in d.outputs:
                target = batches.get(name)
                if target is None:
                    batches[name] = [ev]
                else:
                    target.append(ev)
        return batches

    def _dead_letter_batch(self, events: list[dict], exc: Exception) -> bool:
        """Keep a batch the pipeline choked on, as dead letters of the ``_pipeline`` store;
        False when even that failed."""
        reason = f"routing failed: {exc!r}"
        try:
            self.engine.dead_letters.add(PIPELINE, [Letter(ev, reason, 0) for ev in events])
        except OSError as err:
            self.log.error("events_lost", events=len(events), reason=f"{reason}; {err}")
            return False
        self.log.error("pipeline_failed", events=len(events), error=repr(exc))
        return True

    def reconfigure(self, config: Any, table: Any) -> None:
        """Route with ``table`` from the next batch (parser processes: ``config``'s routes)."""
        self.table = table
        if self.pooled is not None:
            self.pooled.pool.reconfigure(config)

    def finish(self, timeout: float) -> None:
        """At shutdown: commit everything received (parser processes answer or it is parsed
        here within ``timeout``), then stop the parser processes."""
        if self.pooled is not None:
            self.pooled.finish(timeout)
        self.flush()

    # -- back-pressure --------------------------------------------------------------------
    def pause(self) -> None:
        """Stop reading every receiver that can be paused (inputs without it keep going)."""
        if self.paused:
            return
        self.paused = True
        for listener in self.listeners:
            getattr(listener, "pause", lambda: None)()

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        for listener in self.listeners:
            getattr(listener, "resume", lambda: None)()

    def tick(self) -> None:
        """Retry what the engine holds; resume the receivers once it holds nothing."""
        if self.engine.tick():
            if self.pooled is not None:
                self.pooled.dispatch()
            if self.paused and (self.pooled is None or not self.pooled.backlogged):
                self.resume()

    # -- counters -------------------------------------------------------------------------
    def route_counts(self) -> tuple[dict[str, dict[str, int]], int]:
        """Per-route ``events_total`` / ``dropped_total`` and the unrouted count."""
        routes: dict[str, dict[str, int]] = {}
        unrouted = 0
        for d, n in list(self.decisions.items()):
            for r in d.routes:
                entry = routes.setdefault(r, {"events_total": 0, "dropped_total": 0})
                entry["events_total"] += n
            if d.dropped and d.routes:
                routes[d.routes[-1]]["dropped_total"] += n
            elif not d.outputs:
                unrouted += n
        return routes, unrouted


def _settle(callbacks: list[Callable[[bool], None]], committed: bool) -> None:
    """Tell each submitter the outcome; one failing callback does not hide the others'."""
    for on_done in callbacks:
        try:
            on_done(committed)
        except Exception:  # a submitter's bug: its own input counts and logs it
            pass
