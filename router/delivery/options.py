"""The delivery options every output block accepts, whatever its type.

``queue``, ``queue_max_events``, ``queue_max_bytes``, ``when_full``, ``batch`` and ``flush`` are
fixed by the user-facing contract; the retry, ``send_timeout``, fsync and ``raw`` options are
dsrouter's additions. They
are checked by ``dsrouter check`` like a type's own options and split off before the output's
factory sees its options.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dsrouter.options import Duration, Option, Size

WHEN_FULL = ("block", "drop_oldest", "drop_newest")
FSYNC = ("interval", "always", "never")


def delivery_options(default_queue: str = "memory") -> tuple[Option, ...]:
    """The option schema, with the ``queue`` default of the output type."""
    return (
        Option(
            "queue",
            "enum",
            default_queue,
            choices=("memory", "disk"),
            help="where queued events wait: RAM, or a checksummed log under data_dir/queues/",
        ),
        Option("queue_max_events", "int", 100_000, help="queue limit in events (0: none)"),
        Option("queue_max_bytes", "size", Size(256 * 1024 * 1024), help="queue limit in bytes"),
        Option(
            "when_full",
            "enum",
            "block",
            choices=WHEN_FULL,
            help="full queue: stop reading senders, or drop (counted) the oldest or newest events",
        ),
        Option("batch", "int", 500, help="most events handed to the output in one send()"),
        Option("flush", "duration", Duration(0.0), help="wait this long to fill a batch"),
        Option("retry_initial", "duration", Duration(1.0), help="first retry delay"),
        Option("retry_max", "duration", Duration(60.0), help="longest retry delay (backoff cap)"),
        Option(
            "max_attempts",
            "int",
            0,
            help="dead-letter an event after this many failed tries (0: retry transient "
            "failures for ever; the queue limit and when_full bound the backlog)",
        ),
        Option(
            "send_timeout",
            "duration",
            Duration(300.0),
            help="a send() running longer is cancelled and retried (async) or reported hung "
            "(blocking); 0: no limit",
        ),
        Option(
            "fsync",
            "enum",
            "interval",
            choices=FSYNC,
            help="disk queue: sync every fsync_interval, at every commit, or leave it to the OS",
        ),
        Option("fsync_interval", "duration", Duration(1.0), help="disk queue: group-commit window"),
        Option(
            "raw",
            "bool",
            True,
            help="false: the output's events leave out raw, the message as received (about a "
            "third of a DS event's JSON)",
        ),
    )


NAMES = frozenset(o.name for o in delivery_options())


@dataclass(frozen=True)
class DeliveryOptions:
    """The checked delivery options of one output block."""

    queue: str = "memory"
    queue_max_events: int = 100_000
    queue_max_bytes: int = 256 * 1024 * 1024
    when_full: str = "block"
    batch: int = 500
    flush: float = 0.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    max_attempts: int = 0
    send_timeout: float = 300.0
    fsync: str = "interval"
    fsync_interval: float = 1.0
    raw: bool = True

    @classmethod
    def split(cls, options: Mapping[str, Any]) -> tuple[DeliveryOptions, dict[str, Any]]:
        """``(delivery options, the output type's own options)`` from a block's options."""
        mine = {k: v for k, v in options.items() if k in NAMES}
        rest = {k: v for k, v in options.items() if k not in NAMES}
        values: dict[str, Any] = {
            k: (float(v) if isinstance(v, Duration) else v) for k, v in mine.items()
        }
        values["batch"] = max(1, int(values.get("batch", cls.batch)))
        return cls(**values), rest

    @property
    def fsync_policy(self) -> float | str:
        """What :class:`~dsrouter.delivery.diskqueue.DiskQueue` takes as ``fsync``."""
        return self.fsync_interval if self.fsync == "interval" else self.fsync

    def backoff(self, failures: int) -> float:
        """The delay before retry number ``failures`` (1-based), before jitter."""
        return min(self.retry_max, self.retry_initial * (2 ** min(failures - 1, 30)))


def without_raw(blocks: Iterable[Any]) -> frozenset[str]:
    """The names of the output blocks whose events leave ``raw`` out (``raw = false``)."""
    return frozenset(b.name for b in blocks if not DeliveryOptions.split(b.options)[0].raw)


def strip_raw(events: list[dict], copies: dict[int, dict]) -> list[dict]:
    """The events without ``raw``: shallow copies, made once per event however many outputs
    take them (``copies``, by ``id``), so the other outputs' events keep it."""
    out = []
    for ev in events:
        copy = copies.get(id(ev))
        if copy is None:
            copy = copies[id(ev)] = {k: v for k, v in ev.items() if k != "raw"}
        out.append(copy)
    return out


def raw_needed(options: Mapping[str, Any]) -> list[str]:
    """An output type's cross-option check (``OutputType.validate``) for types whose
    ``format = "raw"`` writes the message as received: ``raw = false`` contradicts it."""
    if options.get("format") == "raw" and options.get("raw", True) is False:
        return ['format = "raw" writes the message as received: it needs raw (drop raw = false)']
    return []
