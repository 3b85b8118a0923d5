"""Who may send and how much: sender allow-lists and per-peer connection accounting (pure).

Both are keyed by the peer's IP address (never its port) and bounded in memory whatever the
number of distinct senders: a flood of spoofed UDP sources or of connections costs at most a
fixed-size cache.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

_CACHE_MAX = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    """``allow = [10.0.0.0/8, 192.0.2.10]``: is this sender address on the list?

    An IPv4 address reached through an IPv6 socket (``::ffff:10.0.0.1``) is checked as the
    IPv4 address. Answers are cached per address (bounded).
    """

    __slots__ = ("networks", "_cache")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks: tuple[Network, ...] = tuple(networks)
        self._cache: dict[str, bool] = {}

    def __call__(self, host: str) -> bool:
        known = self._cache.get(host)
        if known is not None:
            return known
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[host] = answer = self._check(host)
        return answer

    def _check(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks if net.version == addr.version)


def allow_list(networks: Sequence[Network] | None) -> AllowList | None:
    """None (everyone may send) for an empty or missing ``allow`` option."""
    return AllowList(networks) if networks else None


class PeerSlots:
    """Open connections per peer IP, so that no single peer can take every slot.

    :meth:`admit` decides for a new connection from ``host``: ``"ok"``, ``"per_peer"`` (that
    peer already holds ``per_peer`` connections) or, when all ``total`` slots are taken,
    ``"evict"`` (the peer holding the most connections holds more than this one: the caller
    closes that peer's least recently active connection to make room) or ``"full"``.
    """

    __slots__ = ("total", "per_peer", "counts", "open")

    def __init__(self, total: int, per_peer: int) -> None:
        self.total = total
        self.per_peer = per_peer
        self.counts: dict[str, int] = {}
        self.open = 0

    def admit(self, host: str) -> str:
        mine = self.counts.get(host, 0)
        if self.per_peer and mine >= self.per_peer:
            return "per_peer"
        if self.open < self.total:
            return "ok"
        top = self.heaviest()
        if top is not None and self.counts[top] > mine + 1:
            return "evict"
        return "full"

    def heaviest(self) -> str | None:
        """The peer holding the most connections (None with none open)."""
        return max(self.counts, key=self.counts.__getitem__) if self.counts else None

    def add(self, host: str) -> None:
        self.counts[host] = self.counts.get(host, 0) + 1
        self.open += 1

    def remove(self, host: str) -> None:
        held = self.counts.get(host, 0)
        if held > 1:
            self.counts[host] = held - 1
        elif held:
            del self.counts[host]
        else:
            return
        self.open -= 1


def peer_host(peer: str) -> str:
    """``"10.0.0.1:514"`` → ``"10.0.0.1"``; ``"[::1]:514"`` → ``"::1"``."""
    if peer.startswith("["):
        return peer[1:].split("]", 1)[0]
    return peer.rsplit(":", 1)[0]


class PeerRates:
    """``rate_limit``: a token bucket of ``rate`` messages per second (a burst of one second's
    worth) per sender IP. :meth:`take` spends ``n`` tokens and returns how long the sender
    should wait before it sends more (0.0 while within its rate). Buckets are bounded in
    number; a forgotten sender starts again with a full bucket."""

    __slots__ = ("rate", "buckets")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.buckets: dict[str, tuple[float, float]] = {}  # host -> (tokens, at)

    def take(self, host: str, n: int, now: float) -> float:
        tokens, at = self.buckets.get(host, (self.rate, now))
        tokens = min(self.rate, tokens + (now - at) * self.rate) - n
        if host not in self.buckets and len(self.buckets) >= _CACHE_MAX:
            self.buckets.clear()
        self.buckets[host] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / self.rate


def peer_rates(rate: float) -> PeerRates | None:
    """None (no limit) for ``rate_limit = 0``."""
    return PeerRates(rate) if rate > 0 else None
