"""The delivery-latency histogram each worker keeps (read by the metrics collector)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from typing import Any

from dsrouter.delivery.queue import Record

#: Delivery-latency histogram bounds in seconds (commit to the queue → output success).
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, float("inf"))


class Latency:
    """A cumulative histogram kept with plain integers (read by the metrics collector)."""

    def __init__(self) -> None:
        self.counts = [0] * len(LATENCY_BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, now: float, records: Sequence[Record]) -> None:
        """Records committed together share ``enqueued_at``: one bucket look-up per time."""
        counts, total = self.counts, 0.0
        for at, n in Counter([r.enqueued_at for r in records]).items():
            age = max(0.0, now - at)
            counts[bisect_left(LATENCY_BUCKETS, age)] += n
            total += age * n
        self.sum += total
        self.count += len(records)

    def snapshot(self) -> dict[str, Any]:
        cumulative, total = [], 0
        for n in self.counts:
            total += n
            cumulative.append(total)
        return {
            "buckets": list(LATENCY_BUCKETS),
            "counts": cumulative,
            "sum": self.sum,
            "count": self.count,
        }
