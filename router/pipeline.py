"""The receive side of the daemon: raw messages → events → routes → the delivery engine.

Receivers call a sink with every message of a received chunk; the sink only appends to a
pending list and schedules one flush for the current loop iteration, so a flush handles
everything that arrived from every connection since the last one. A flush parses, stamps an
``event_id``, routes, and commits each output's share to its queue through the engine. When
the engine holds a batch (a ``block`` queue is full, or a queue cannot be written), every
receiver is paused until the engine has room again: TCP senders see flow control, UDP
datagrams wait in (and, past it, are dropped and counted by) the kernel's receive buffer.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsrouter.delivery.deadletter import Letter
from dsrouter.delivery.engine import Engine
from dsrouter.ds import parse_batch

#: The dead-letter store name for batches the pipeline itself could not route.
PIPELINE = "_pipeline"


class Pipeline:
    """Pending messages, the flush, the route table and pausing of receivers."""

    def __init__(self, engine: Engine, table: Any, data_dir: Path, log: Any) -> None:
        self.engine, self.table, self.data_dir, self.log = engine, table, data_dir, log
        self.pending: list[tuple[str, str, list[bytes], bool]] = []
        self.flush_scheduled = False
        self.listeners: list[Any] = []
        self.paused = False
        self.events_total = self.unparsed = self.batches = self.pipeline_errors = 0
        self.decisions: dict[Any, int] = {}
        self._id_prefix = f"{int(time.time() * 1000):x}{os.getpid() & 0xFFFF:04x}"
        self._id_next = 0

    def sink_for(self, name: str):
        """The ``sink(messages, peer, truncated=False)`` callable handed to an input."""
        pending = self.pending

        def sink(messages: list[bytes], peer: str, truncated: bool = False) -> None:
            pending.append((name, peer, messages, truncated))
            if not self.flush_scheduled:
                self.flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)

        return sink

    # -- the batch path -------------------------------------------------------------------
    def flush(self) -> None:
        """Parse, route and commit everything received since the last flush."""
        self.flush_scheduled = False
        if not self.pending:
            return
        batch, self.pending[:] = list(self.pending), []
        self.batches += 1
        events = self._parse(batch)
        try:
            batches = self._route(events)
        except Exception as exc:  # a bug must not lose the batch: keep it for replay
            self.pipeline_errors += 1
            self._dead_letter_batch(events, exc)
            return
        if not self.engine.submit(batches):
            self.pause()

    def _parse(self, batch: list[tuple[str, str, list[bytes], bool]]) -> list[dict]:
        received_at = datetime.now(UTC).isoformat(timespec="microseconds")
        events: list[dict] = []
        for name, peer, messages, truncated in batch:
            parsed = parse_batch(messages, name, peer, received_at)
            if truncated:
                for ev in parsed:
                    ev["truncated"] = True
            events.extend(parsed)
        prefix, n = self._id_prefix, self._id_next
        for ev in events:
            ev["event_id"] = f"{prefix}-{n:x}"
            n += 1
            if "parse_error" in ev:
                self.unparsed += 1
        self._id_next = n
        self.events_total += len(events)
        return events

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

    def _dead_letter_batch(self, events: list[dict], exc: Exception) -> None:
        """Keep a batch the pipeline choked on, as dead letters of the ``_pipeline`` store."""
        reason = f"routing failed: {exc!r}"
        try:
            self.engine.dead_letters.add(PIPELINE, [Letter(ev, reason, 0) for ev in events])
        except OSError as err:
            self.log.error("events_lost", events=len(events), reason=f"{reason}; {err}")
            return
        self.log.error("pipeline_failed", events=len(events), error=repr(exc))

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
        if self.engine.tick() and self.paused:
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
