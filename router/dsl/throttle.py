"""Per-key event budgets for ``throttle N per WINDOW [by FIELD, ...]``.

Windows are fixed and per key: a key's window opens with its first event and lasts WINDOW
seconds; the first N events in it are admitted, the rest are throttled (they do not match the
route and fall through to later routes). Memory is bounded: at most :data:`MAX_KEYS` keys per
route; when a new key arrives at the cap, the key whose window opened longest ago is removed
(counted in ``evicted`` unless its window had already ended). A key never holds a long value:
a string over :data:`MAX_KEY_TEXT` characters (and any list or object) is kept as its BLAKE2b
digest, so 20,000 keys from 60 KB host names cost kilobytes each, not the host names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

MAX_KEYS = 100_000
MAX_KEY_TEXT = 256

Clock = Callable[[], float]


class Deferred(Exception):
    """Raised by a :class:`DeferredGate`: the event must be routed where the budgets live."""


class DeferredGate:
    """The throttle of a parser process: budgets live in the daemon's main process (one
    state for every process), so an event that reaches a throttle is routed there."""

    throttled = evicted = 0

    def admit(self, event: dict) -> bool:
        raise Deferred

    def describe(self, event: dict, admitted: bool) -> str:
        return "decided by the main process"


class Throttle:
    """The budget state of one route."""

    def __init__(
        self,
        count: int,
        window: float,
        by: Sequence[Callable[[dict], Any]],
        clock: Clock,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.count = count
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self.windows: dict[Any, list] = {}  # key -> [window start, events seen]; oldest first
        self.throttled = 0
        self.evicted = 0
        self._key = _key_function(tuple(by))

    def admit(self, event: dict) -> bool:
        """Count ``event`` against its key's window; True while within the budget."""
        return self.hit(self._key(event))

    def hit(self, key: Any) -> bool:
        now = self.clock()
        windows = self.windows
        slot = windows.get(key)
        if slot is None or now - slot[0] >= self.window:
            if slot is not None:
                del windows[key]  # re-inserted at the end: oldest windows stay first
            elif len(windows) >= self.max_keys:
                self._evict(now)
            windows[key] = [now, 1]
            return True
        slot[1] += 1
        if slot[1] <= self.count:
            return True
        self.throttled += 1
        return False

    def _evict(self, now: float) -> None:
        oldest = next(iter(self.windows))
        start = self.windows.pop(oldest)[0]
        if now - start < self.window:
            self.evicted += 1

    def describe(self, event: dict, admitted: bool) -> str:
        """After :meth:`admit`: ``"2 of 1 per 5m for key ('web-01',): over the limit"``."""
        key = self._key(event)
        slot = self.windows.get(key)
        seen = slot[1] if slot is not None else 1
        where = f" for key {key!r}" if key != () else ""
        verdict = "within the limit" if admitted else "over the limit"
        return f"{seen} of {self.count} per {format_duration(self.window)}{where}: {verdict}"


class Digest(bytes):
    """A long key value as its 16-byte BLAKE2b digest (never equal to a str or a number)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<blake2b {self.hex()}>"


_PLAIN = frozenset({int, float, type(None)})


def key_part(value: Any) -> Any:
    """A field value as a bounded, hashable part of a key.

    Short strings and numbers are themselves; ``true`` and ``1`` (equal as dict keys in Python)
    stay apart; a string longer than :data:`MAX_KEY_TEXT`, a list or an object becomes its
    digest (of its text, for a list or an object).
    """
    cls = value.__class__
    if cls is str:
        return value if len(value) <= MAX_KEY_TEXT else _digest(value)
    if cls in _PLAIN:
        return value
    if cls is bool:
        return (bool, value)
    return _digest(repr(value))


def _digest(text: str) -> Digest:
    data = text.encode("utf-8", "surrogatepass")
    return Digest(hashlib.blake2b(data, digest_size=16).digest())


def _key_function(by: tuple) -> Callable[[dict], Any]:
    if not by:
        return lambda e: ()
    if len(by) == 1:
        (get,) = by
        return lambda e: (key_part(get(e)),)
    return lambda e: tuple([key_part(g(e)) for g in by])


def format_duration(seconds: float) -> str:
    """``300`` → ``"5m"``: the largest unit that divides the value exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"
