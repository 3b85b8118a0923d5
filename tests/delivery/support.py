"""What the delivery unit tests share: a structlog-shaped recorder and a bounded wait."""

from __future__ import annotations

import threading
import time


class Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[tuple[str, str, dict]] = []

    def _add(self, level: str, event: str, **kw) -> None:
        with self.lock:
            self.records.append((level, event, kw))

    def debug(self, event, **kw):
        self._add("debug", event, **kw)

    def info(self, event, **kw):
        self._add("info", event, **kw)

    def warning(self, event, **kw):
        self._add("warning", event, **kw)

    def error(self, event, **kw):
        self._add("error", event, **kw)

    def events(self, level: str | None = None) -> list[str]:
        with self.lock:
            return [e for lv, e, _ in self.records if level is None or lv == level]


def wait_for(predicate, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
