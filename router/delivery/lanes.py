"""A lane (one output block's output, queue and worker) and the batches it holds.

A batch reaches a lane as event dicts, or as :class:`Encoded` JSON payloads when a parser
process routed it; a durable queue needs the payloads, so each event is serialised once
however many disk queues take it (:func:`payloads_of`).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dsrouter.api import Event, Output
from dsrouter.delivery.commit import Share
from dsrouter.delivery.options import DeliveryOptions
from dsrouter.delivery.queue import Queue
from dsrouter.delivery.worker import Worker

_DUMPS = orjson.dumps


@dataclass(eq=False)
class Lane:
    """An output with its queue, worker and the batches waiting for room."""

    name: str
    type: str
    options: dict[str, Any]
    delivery: DeliveryOptions
    output: Output
    queue: Queue
    worker: Worker
    held: deque[Share] = field(default_factory=deque)
    dropped: Counter = field(default_factory=Counter)
    hold_reason: str = ""
    retiring: bool = False  # removed by a reload: drains, takes nothing new
    #: Cluster lanes (:mod:`~dsrouter.delivery.publishing`): publishes in flight, and the
    #: consecutive failures and time (monotonic) of the next retry.
    publishing: dict[Any, Share] = field(default_factory=dict)
    failures: int = 0
    retry_at: float = 0.0

    @property
    def held_events(self) -> int:
        return sum(len(s) for s in self.held) + sum(len(s) for s in self.publishing.values())

    def same_as(self, block: Any) -> bool:
        return self.type == block.type and self.options == block.options


def queue_dir(data_dir: Path, output: str) -> Path:
    """Where an output's disk queue (or a memory queue's spill) lives: named by output."""
    return data_dir / "queues" / output


def quietly_close(output: Output, log: Any) -> None:
    """Close an output; a broken close is logged, never raised (it must not hide others)."""
    try:
        output.close()
    except (Exception, SystemExit) as exc:  # SystemExit too: a plugin must not end the daemon
        log.error("output_close_failed", output=getattr(output, "name", "?"), error=str(exc))


class Encoded(list):
    """A batch of events as their JSON payloads (``orjson.dumps(event)``), no dicts."""

    __slots__ = ()


def payloads_of(events: list[Event], cache: dict[int, bytes]) -> list[bytes]:
    """Serialize each event once, however many durable queues take it."""
    out = []
    for ev in events:
        key = id(ev)
        data = cache.get(key)
        if data is None:
            data = cache[key] = _DUMPS(ev, default=str)
        out.append(data)
    return out
