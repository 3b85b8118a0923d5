"""``when_full = "drop_newest"`` and ``"drop_oldest"`` on a local queue that refused a batch.

``drop_oldest`` first evicts the queue's oldest records (not in flight) to make room, then
commits the batch's newest events that fit (a batch larger than the room loses its oldest);
``drop_newest`` commits the batch's first events that fit. The rest is counted as dropped. (A
cluster queue applies the same policies inside its publish: :mod:`~dsrouter.delivery.jetstream`.)
"""

from __future__ import annotations

from dsrouter.api import Event
from dsrouter.delivery.lanes import Lane
from dsrouter.delivery.memqueue import estimate_size
from dsrouter.delivery.queue import QueueFull


def make_room(lane: Lane, events: list[Event] | None, payloads: list[bytes] | None) -> None:
    """Commit what fits of a refused batch under the lane's policy; count the rest."""
    policy = lane.delivery.when_full
    if payloads is not None:
        sizes = [len(p) for p in payloads]
    else:
        assert events is not None
        sizes = [estimate_size(e) for e in events]
    if policy == "drop_oldest":  # room from the queue's oldest; then the batch's newest
        lane.dropped["queue_full_oldest"] += lane.queue.evict_oldest(len(sizes), sum(sizes))
        fit = fitting(lane, sizes[::-1])
        keep = slice(len(sizes) - fit, None)
    else:
        fit = fitting(lane, sizes)
        keep = slice(0, fit)
    if fit:
        try:
            lane.queue.publish(
                events[keep] if events is not None else None,
                payloads[keep] if payloads is not None else None,
            )
        except (QueueFull, OSError):
            fit = 0
    if len(sizes) > fit:
        reason = "queue_full_newest" if policy == "drop_newest" else "queue_full_oldest"
        lane.dropped[reason] += len(sizes) - fit


def fitting(lane: Lane, sizes: list[int]) -> int:
    """How many of the batch's first events fit in the room left."""
    room_events, room_bytes = lane.queue.room()
    fit = min(len(sizes), room_events)
    total = 0
    for i, size in enumerate(sizes[:fit]):
        total += size
        if total > room_bytes:
            return i
    return fit
