"""Delivery: route each batch of events, hand per-output batches to the outputs, retry, dead-letter.

The per-event work is one ``RouteTable.decide`` call and a list append per target output; each
output then gets one ``send()`` per batch. An output's failure never reaches the receivers:

* ``send()`` returns → delivered;
* ``RetryLater`` (or any unexpected exception) → the batch waits in that output's retry queue and
  is offered again with exponential backoff; later batches queue behind it so order holds;
* ``PermanentFailure``, or retries exhausted, or shutdown with a retry still pending → the batch
  is written to ``<data_dir>/deadletter/<output>.jsonl`` with the reason.

Nothing accepted is dropped without a count: ``stats`` holds every total.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dsrouter.api import Event, Output, PermanentFailure, RetryLater


@dataclass
class RetryPolicy:
    """Exponential backoff: ``first`` seconds, doubling up to ``cap``, ``attempts`` tries in all."""

    attempts: int = 6
    first: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.first * (2 ** (attempt - 1)))


@dataclass
class _Pending:
    events: Sequence[Event]
    attempt: int
    due: float
    reason: str = ""


@dataclass
class _Lane:
    """One output with its retry queue and counters."""

    output: Output
    queue: deque[_Pending] = field(default_factory=deque)
    delivered: int = 0
    retried: int = 0
    dead: int = 0


class Dispatcher:
    """Routes batches with a compiled route table and delivers them to the outputs."""

    def __init__(
        self,
        decide: Callable[[Event], Any],
        outputs: Mapping[str, Output],
        deadletter_dir: Path,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
    ) -> None:
        self.decide = decide
        self.lanes = {name: _Lane(out) for name, out in outputs.items()}
        self.deadletter_dir = deadletter_dir
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.log = log
        self.decisions: Counter = Counter()
        self.events_total = 0

    def process(self, events: Sequence[Event]) -> None:
        """Route a batch and deliver it; never raises because of an output."""
        if not events:
            return
        batches: dict[str, list[Event]] = {name: [] for name in self.lanes}
        decisions = self.decisions
        decide = self.decide
        for ev in events:
            d = decide(ev)
            decisions[d] += 1
            for name in d.outputs:
                batches[name].append(ev)
        self.events_total += len(events)
        for name, batch in batches.items():
            if batch:
                self._offer(name, batch)

    def _offer(self, name: str, batch: Sequence[Event]) -> None:
        lane = self.lanes[name]
        if lane.queue:  # keep order: wait behind the pending retry
            lane.queue.append(_Pending(batch, 0, 0.0))
            return
        self._attempt(name, lane, _Pending(batch, 0, 0.0))

    def _attempt(self, name: str, lane: _Lane, item: _Pending) -> bool:
        """One delivery try; True when the item is settled (delivered or dead-lettered)."""
        item.attempt += 1
        error = self._send_once(lane, item.events)
        if error is None:
            return True
        if isinstance(error, PermanentFailure):
            self._dead_letter(name, lane, item.events, f"permanent failure: {error}")
            return True
        return self._defer(name, lane, item, error)

    @staticmethod
    def _send_once(lane: _Lane, events: Sequence[Event]) -> Exception | None:
        try:
            lane.output.send(events)
            lane.output.flush()
        except Exception as exc:  # isolate the output: its failure is data, not a crash
            return exc
        lane.delivered += len(events)
        return None

    def _defer(self, name: str, lane: _Lane, item: _Pending, exc: Exception) -> bool:
        kind = "retry requested" if isinstance(exc, RetryLater) else type(exc).__name__
        item.reason = f"{kind}: {exc}"
        if item.attempt >= self.policy.attempts:
            self._dead_letter(
                name, lane, item.events, f"gave up after {item.attempt} attempts; {item.reason}"
            )
            return True
        lane.retried += len(item.events)
        item.due = self.clock() + self.policy.delay(item.attempt)
        if not lane.queue or lane.queue[0] is not item:
            lane.queue.appendleft(item)
        if self.log is not None:
            self.log.warning(
                "delivery_failed",
                output=name,
                events=len(item.events),
                attempt=item.attempt,
                reason=item.reason,
            )
        return False

    def tick(self) -> None:
        """Offer due retries again; call this periodically."""
        now = self.clock()
        for name, lane in self.lanes.items():
            while lane.queue and lane.queue[0].due <= now:
                item = lane.queue[0]
                if not self._attempt(name, lane, item):
                    break
                lane.queue.popleft()

    def close(self) -> None:
        """Last try for pending retries, then dead-letter what is left; close every output."""
        for name, lane in self.lanes.items():
            while lane.queue:
                item = lane.queue.popleft()
                error = self._send_once(lane, item.events)
                if error is not None:
                    reason = f"shutdown with delivery pending; last error: {error}"
                    self._dead_letter(name, lane, item.events, reason)
            try:
                lane.output.close()
            except Exception as exc:  # a broken close must not hide the others
                if self.log is not None:
                    self.log.error("output_close_failed", output=name, error=str(exc))

    def _dead_letter(self, name: str, lane: _Lane, events: Sequence[Event], reason: str) -> None:
        self.deadletter_dir.mkdir(parents=True, exist_ok=True)
        path = self.deadletter_dir / f"{name}.jsonl"
        with open(path, "ab") as fh:
            for ev in events:
                fh.write(
                    orjson.dumps(
                        {"output": name, "reason": reason, "event": ev},
                        default=str,  # the last stop: a value an output choked on still lands
                        option=orjson.OPT_APPEND_NEWLINE,
                    )
                )
        lane.dead += len(events)
        if self.log is not None:
            self.log.error(
                "events_dead_lettered",
                output=name,
                events=len(events),
                reason=reason,
                path=str(path),
            )

    def stats(self) -> dict[str, Any]:
        """Totals for the periodic summary and the shutdown line."""
        routes: Counter = Counter()
        dropped = unrouted = 0
        for d, n in self.decisions.items():
            for r in d.routes:
                routes[r] += n
            if d.dropped:
                dropped += n
            elif not d.outputs:
                unrouted += n
        return {
            "events_total": self.events_total,
            "events_dropped_total": dropped,
            "events_unrouted_total": unrouted,
            "route_events_total": dict(routes),
            "output_delivered_total": {n: lane.delivered for n, lane in self.lanes.items()},
            "output_retried_total": {n: lane.retried for n, lane in self.lanes.items()},
            "output_dead_lettered_total": {n: lane.dead for n, lane in self.lanes.items()},
            "output_pending_events": {
                n: sum(len(p.events) for p in lane.queue) for n, lane in self.lanes.items()
            },
        }
