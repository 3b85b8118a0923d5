"""A receiving router's local spool: what it could not commit to the cluster at shutdown.

When the cluster does not take a held batch before the daemon stops (no quorum, every
server unreachable), the batch is written to the output's local disk queue directory
(:func:`~dsrouter.delivery.lanes.queue_dir`, fsync'd) instead of being lost. At the next
start with the cluster, the lane commits the spool first (its events keep their message ids,
so a batch JetStream already stored within the duplicate window is not stored twice) and
removes each record only once the cluster acknowledged it: a crash meanwhile leaves it spooled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dsrouter.delivery.commit import Share, Ticket
from dsrouter.delivery.diskqueue import DiskQueue
from dsrouter.delivery.lanes import Encoded, queue_dir

#: Events per batch when a spool is committed again.
BATCH = 500


def save(data_dir: Path, output: str, shares: list[Share], reason: str, log: Any) -> None:
    """Append the shares' events to the output's spool and settle them (they are safe);
    ``OSError`` (nothing settled) if it cannot."""
    queue = DiskQueue(output, queue_dir(data_dir, output), fsync="always")
    try:
        for share in shares:
            batch = share.batch
            if batch.__class__ is Encoded:
                queue.publish(None, batch)
            else:
                queue.publish(batch, [orjson.dumps(e, default=str) for e in batch])
    finally:
        queue.close()
    for share in shares:
        share.settle()
    log.warning(
        "events_spooled",
        output=output,
        events=sum(len(s) for s in shares),
        reason=reason,
        help="committed to the cluster first at the next start",
    )


def restore(data_dir: Path, output: str, log: Any) -> list[Share]:
    """The spooled events as shares to commit first; each batch's records are removed from
    the spool once it is committed, and the spool is closed after the last."""
    where = queue_dir(data_dir, output)
    if not where.is_dir():
        return []
    queue = DiskQueue(output, where, fsync="always")
    batches = []
    while records := queue.fetch(BATCH, 0.0):
        batches.append(records)
    if not batches:
        queue.close()
        return []
    left = [len(batches)]

    def committed(records: list[Any], ok: bool) -> None:
        if ok:
            queue.ack(records)
        left[0] -= 1
        if not left[0]:
            queue.close()  # what was not committed stays spooled for the next start

    def settle(records: list[Any]) -> Callable[[bool], None]:
        return lambda ok: committed(records, ok)

    shares = []
    for records in batches:
        ticket = Ticket(settle(records))
        payloads = Encoded(r.payload or orjson.dumps(r.event, default=str) for r in records)
        shares.append(Share(payloads, ticket))
        ticket.settle()  # only its share is left
    log.info("spool_restored", output=output, events=sum(len(s) for s in shares))
    return shares
