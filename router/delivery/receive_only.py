"""A lane's output and worker in a process that only receives (``run --role receive``).

In a cluster, a receiving router commits every output's events to the stream and other
processes (``--role deliver``) deliver them. Its lanes still carry the output's queue and
limits, so the engine, status and metrics treat them like any other; the output is never
opened and the worker runs no thread.
"""

from __future__ import annotations

from typing import Any

from dsrouter.delivery.worker import Worker


class NotOpened:
    """Stands for an output this process does not deliver to."""

    concurrency = 1

    def __init__(self, type_name: str) -> None:
        self.type = type_name

    def describe(self) -> str:
        return f"{self.type} (delivered by the --role deliver processes)"

    def send(self, events: Any) -> None:  # never called: no worker thread runs
        raise RuntimeError("a receive-only router does not deliver")

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class ReceiveOnly(Worker):
    """A worker that never starts: the lane only publishes."""

    def start(self) -> None:
        pass

    def request_reopen(self) -> None:
        pass

    @property
    def state(self) -> str:
        return "receive-only"
