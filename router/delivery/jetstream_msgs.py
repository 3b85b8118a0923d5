"""What goes over the wire per message: ``Nats-Msg-Id``s, publish outcomes, fetched records."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from nats.aio.msg import Msg

from .jetstream_conn import ApiError, JetStreamError
from .queue import QueueFull, Record

_ID_CHARS = frozenset(b"0123456789abcdefABCDEF-_.")
_MARK = b'"event_id":"'
_HEADER_ROOM = 64  # "NATS/1.0\r\nNats-Msg-Id: ...\r\n\r\n" besides the id itself


def msg_id(output: str, event: dict[str, Any] | None, payload: bytes) -> str:
    """The ``Nats-Msg-Id`` of an event published for ``output``.

    ``<output>:<event_id>`` — the event's ``event_id`` (unique per router process and start)
    plus the output, since one event goes to several outputs' subjects of the same stream.
    For a payload without its dict the id is read from the payload's end, where the pipeline
    stamps it last (``..., "event_id":"18c...-1f"}``); when it is not there (or has unusual
    characters), ``<output>:h<blake2b of the payload>`` is used: the same bytes give the same
    id, so a retried publish still deduplicates.
    """
    eid = event.get("event_id") if event is not None else _tail_event_id(payload)
    if isinstance(eid, str) and eid:
        return f"{output}:{eid}"
    return f"{output}:h{hashlib.blake2b(payload, digest_size=16).hexdigest()}"


def _tail_event_id(payload: bytes) -> str | None:
    """The top-level ``event_id`` when it is the payload's last member, else None."""
    if not payload.endswith(b'"}'):
        return None
    at = payload.rfind(_MARK)
    if at < 0:
        return None
    value = payload[at + len(_MARK) : -2]
    if not value or len(value) > 64 or not _ID_CHARS.issuperset(value):
        return None
    return value.decode("ascii")


class EventTooLarge(ValueError):
    """Events bigger than the servers' ``max_payload``: nothing of the batch was published.
    ``indexes`` are their positions in the batch."""

    def __init__(self, indexes: list[int], limit: int) -> None:
        super().__init__(f"{len(indexes)} events exceed the cluster's max_payload of {limit}")
        self.indexes, self.limit = indexes, limit


class PartlyStored(JetStreamError):
    """A publish failed after JetStream had stored some of the batch's events: a retry of
    the same batch stores only the others (same message ids)."""


def check_sizes(blobs: Sequence[bytes], ids: Sequence[str], limit: int) -> None:
    """:class:`EventTooLarge` unless every message fits in the servers' ``max_payload``."""
    if limit:
        big = [i for i, b in enumerate(blobs) if len(b) + len(ids[i]) + _HEADER_ROOM > limit]
        if big:
            raise EventTooLarge(big, limit)


def publish_outcome(results: list[Any], subject: str) -> int:
    """How many publishes JetStream took as duplicates; raises when one failed.

    :class:`QueueFull` when the stream's limits refused one (the stored rest are delivered
    anyway), the error itself when nothing was stored, else :class:`PartlyStored`."""
    stored, dups, first_error = 0, 0, None
    for res in results:
        if isinstance(res, BaseException):
            first_error = first_error or res
            continue
        ack = orjson.loads(res.data)
        if ack.get("error"):
            first_error = first_error or ApiError.of(ack["error"])
            continue
        stored += 1
        dups += bool(ack.get("duplicate"))
    if first_error is None:
        return dups
    if isinstance(first_error, ApiError) and first_error.stream_full:
        raise QueueFull(f"{subject}: stream full ({stored} of the batch stored)")
    if not stored:
        raise first_error
    raise PartlyStored(f"{subject}: {stored} of {len(results)} stored; {first_error}")


def ack_numbers(reply: str) -> tuple[int, int, int]:
    """(delivery count, stream sequence, stored time in ns) from a message's reply subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>``, or with
    ``<domain>.<account hash>`` after ``ACK`` and a random token at the end (servers 2.10+)."""
    t = reply.split(".")
    i = 4 if len(t) == 9 else 6
    return int(t[i]), int(t[i + 1]), int(t[i + 3])


def record_of(msg: Msg) -> Record:
    """A fetched message as a :class:`Record` (numbers from its ``$JS.ACK`` reply subject)."""
    delivered, seq, stamp = ack_numbers(msg.reply)
    data = msg.data
    return Record(seq, None, len(data), stamp / 1e9, delivered, pos=msg.reply, payload=data)


def parse_time(text: str) -> float:
    """JetStream's RFC 3339 time with nanoseconds as ``time.time()`` seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(head + "+00:00").timestamp()
    return whole + (float("0." + frac) if frac else 0.0)
