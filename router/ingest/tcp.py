"""The TCP receiver: framing per connection, sender limits, pausing.

Limits, each counted in :attr:`TcpListener.stats`: an ``allow`` list of sender addresses;
``max_connections`` in all and ``max_connections_per_peer`` per sender IP (when every slot is
taken, a newcomer evicts the least recently active connection of the peer holding the most,
so no peer can lock the others out); ``idle_timeout`` (no complete message for that long:
a 1-byte trickle does not count as activity) and ``partial_timeout`` (a message begun but
not finished for that long: a slow sender). A connection closed by a limit or by shutdown
hands its partial last message over marked truncated. A TLS ClientHello on a plain TCP input
is refused with one warning per peer.
"""

from __future__ import annotations

import asyncio
import os

import structlog

from dsrouter.ingest.framing import FRAMINGS, Framer
from dsrouter.ingest.limits import AllowList, PeerRates, PeerSlots, peer_host
from dsrouter.ingest.listener import Sink, _bind_error, _Listener, _peer_name

_log = structlog.get_logger()
_WARNED_MAX = 1024


#: SO_REUSEADDR lets a POSIX listener rebind past TIME_WAIT; on Windows it would let another
#: program bind the same port and take this listener's connections, and Windows needs no help.
_REUSE_ADDRESS = os.name == "posix"


class _TcpConnection(asyncio.Protocol):
    """One accepted connection: a framer, its peer name and when data last came."""

    __slots__ = (
        "listener",
        "transport",
        "framer",
        "peer",
        "host",
        "last",
        "partial_since",
        "rejected",
        "done",
        "fresh",
        "held",
        "throttled",
    )

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.framer = Framer(listener.max_message, listener.framing)
        self.peer = "unknown"
        self.host = ""
        self.last = 0.0  # when the last complete message came (or the connection opened)
        self.partial_since: float | None = None  # when the unfinished message began
        self.rejected = False
        self.done = False
        self.fresh = True  # nothing received yet
        self.held: list[bytes] | None = None  # data kept back until the peer is verified
        self.throttled = False  # reading paused by the sender's rate_limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.listener._opened(self)

    def data_received(self, data: bytes) -> None:
        if self.rejected:
            return
        if self.held is not None:
            self.held.append(data)
            return
        lst = self.listener
        lst.stats["bytes_total"] += len(data)
        if self.fresh:
            self.fresh = False
            if lst.refuse_tls and data[:1] == b"\x16" and data[1:2] == b"\x03":
                lst._tls_on_plain(self)
                return
        messages = self._frame(data)
        now = lst.now()
        if messages:
            self.last = now
            lst._deliver(messages, self.peer)
            if lst.rates is not None:
                lst._throttle(self, lst.rates.take(self.host, len(messages), now))
        if not self.framer.pending:
            self.partial_since = None
        elif messages or self.partial_since is None:
            self.partial_since = now

    def eof_received(self) -> bool:
        self.finish()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish()
        self.listener._closed(self)

    def finish(self, cut: bool = False) -> None:
        """Hand a partial last message to the sink (once), marked truncated when ``cut`` (we
        close the connection mid-message) or when it is an octet-counted frame left short.
        An unterminated last line at the sender's close counts as complete (naive senders
        end that way)."""
        if self.done or self.rejected:
            return
        self.done = True
        cut = cut or self.framer.in_frame
        messages = self._frame(None)
        if messages:
            if cut:
                self.listener.stats["truncated_total"] += len(messages)
            self.listener._deliver(messages, self.peer, truncated=cut)

    def _frame(self, data: bytes | None) -> list[bytes]:
        """Feed (or, for None, flush) the framer and count what it dropped."""
        framer = self.framer
        oversize, invalid = framer.oversize, framer.invalid
        messages = framer.flush() if data is None else framer.feed(data)
        if framer.oversize != oversize or framer.invalid != invalid:
            stats = self.listener.stats
            stats["oversize_total"] += framer.oversize - oversize
            stats["invalid_total"] += framer.invalid - invalid
        return messages


class TcpListener(_Listener):
    """A TCP syslog receiver: framing per connection and the limits in the module doc."""

    #: Refuse a TLS ClientHello (plain TCP only).
    refuse_tls = True

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sink: Sink,
        max_message: int = 65536,
        idle_timeout: float = 300.0,
        max_connections: int = 1024,
        framing: str = "auto",
        max_connections_per_peer: int = 0,
        partial_timeout: float = 0.0,
        allow: AllowList | None = None,
        rates: PeerRates | None = None,
    ) -> None:
        super().__init__(name, host, port, sink, max_message)
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing {framing!r}; expected one of {FRAMINGS}")
        self.framing = framing
        self.idle_timeout = idle_timeout
        self.partial_timeout = partial_timeout
        self.max_connections = max_connections
        self.allow = allow
        self.rates = rates
        self.slots = PeerSlots(max_connections, max_connections_per_peer)
        self._warned: set[str] = set()
        for key in (
            "refused_total",
            "rejected_per_peer_total",
            "evicted_total",
            "slow_closed_total",
            "tls_on_plain_total",
            "truncated_total",
            "throttled_total",
        ):
            self.stats[key] = 0
        self.connections: set[_TcpConnection] = set()
        self.paused = False
        self.accepting = True
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        """The event loop's clock (monotonic seconds)."""
        assert self._loop is not None
        return self._loop.time()

    async def start(self) -> None:
        """Bind and listen; raise StartupError when that is impossible."""
        self._loop = loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _TcpConnection(self), self.host, self.port, reuse_address=_REUSE_ADDRESS
            )
        except OSError as exc:
            raise _bind_error(self.name, self.host, self.port, exc) from None
        self._bound(self._server.sockets[0] if self._server.sockets else None)
        if self.idle_timeout > 0 or self.partial_timeout > 0:
            self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections keep being read (shutdown drain)."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
            self._server = None

    def idle_for(self) -> float:
        """Seconds since any open connection last sent data (infinite with none open)."""
        if not self.connections:
            return float("inf")
        return self.now() - max(c.last for c in self.connections)

    def pause(self) -> None:
        """Stop reading every connection: the kernel buffers fill and TCP pushes back."""
        self.paused = True
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.pause_reading()

    def resume(self) -> None:
        self.paused = False
        for conn in self.connections:
            if conn.transport is not None and not conn.transport.is_closing():
                if not conn.throttled:
                    conn.transport.resume_reading()
            conn.last = self.now()  # time spent paused is not the sender's silence

    def close(self) -> None:
        """Stop accepting; hand partial messages over as truncated; close every connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.stop_accepting()
        for conn in list(self.connections):
            conn.finish(cut=True)
            if conn.transport is not None:
                conn.transport.close()

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """After :meth:`close`: wait (bounded) until every connection is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)

    def _opened(self, conn: _TcpConnection) -> None:
        transport = conn.transport
        assert transport is not None
        conn.peer = _peer_name(transport.get_extra_info("peername"))
        conn.host = peer_host(conn.peer)
        refusal = self._refusal(conn.host)
        if refusal is not None:
            conn.rejected = True
            self.stats[refusal] += 1
            transport.close()
            return
        conn.last = self.now()
        self.connections.add(conn)
        self.slots.add(conn.host)
        self.stats["connections_total"] += 1
        self.stats["connections_active"] = len(self.connections)
        self._accepted(conn)

    def _accepted(self, conn: _TcpConnection) -> None:
        """A connection passed every limit: start reading it (pause it while paused)."""
        if self.paused and conn.transport is not None:
            conn.transport.pause_reading()

    def _refusal(self, host: str) -> str | None:
        """The stats key a new connection from ``host`` is refused under, or None."""
        if not self.accepting:
            return "rejected_connections_total"
        if self.allow is not None and not self.allow(host):
            return "refused_total"
        verdict = self.slots.admit(host)
        if verdict == "per_peer":
            return "rejected_per_peer_total"
        if verdict == "evict":
            self._evict(self.slots.heaviest())
        elif verdict == "full":
            return "rejected_connections_total"
        return None

    def _evict(self, host: str | None) -> None:
        """Close the least recently active connection of ``host`` to make room."""
        theirs = [c for c in self.connections if c.host == host]
        if theirs:
            victim = min(theirs, key=lambda c: c.last)
            self.stats["evicted_total"] += 1
            self._drop(victim, cut=True)

    def _drop(self, conn: _TcpConnection, cut: bool) -> None:
        conn.finish(cut=cut)
        self._closed(conn)
        if conn.transport is not None:
            conn.transport.close()

    def _throttle(self, conn: _TcpConnection, delay: float) -> None:
        """Stop reading a sender over its rate_limit for ``delay`` seconds (TCP pushes back)."""
        if delay <= 0 or conn.throttled or conn.transport is None:
            return
        conn.throttled = True
        self.stats["throttled_total"] += 1
        conn.transport.pause_reading()
        assert self._loop is not None
        self._loop.call_later(delay, self._unthrottle, conn)

    def _unthrottle(self, conn: _TcpConnection) -> None:
        conn.throttled = False
        transport = conn.transport
        if transport is not None and not transport.is_closing() and not self.paused:
            transport.resume_reading()

    def _tls_on_plain(self, conn: _TcpConnection) -> None:
        self.stats["tls_on_plain_total"] += 1
        if conn.host not in self._warned and len(self._warned) < _WARNED_MAX:
            self._warned.add(conn.host)
            _log.warning(
                "tls_on_plain_tcp",
                input=self.name,
                peer=conn.peer,
                hint="this looks like TLS; configure a tls input for this sender",
            )
        conn.rejected = True
        self._closed(conn)
        if conn.transport is not None:
            conn.transport.close()

    def _closed(self, conn: _TcpConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.slots.remove(conn.host)
        self.stats["connections_active"] = len(self.connections)

    def _sweep_interval(self) -> float:
        limits = [t for t in (self.idle_timeout, self.partial_timeout) if t > 0]
        return max(0.05, min(min(limits) / 4, 5.0))

    def _sweep(self) -> None:
        """Close idle and slow connections; runs every few seconds."""
        now = self.now()
        if not self.paused:
            idle, slow = now - self.idle_timeout, now - self.partial_timeout
            for conn in [c for c in self.connections if not c.done]:
                if self.partial_timeout > 0 and conn.partial_since is not None:
                    if conn.partial_since < slow:
                        self.stats["slow_closed_total"] += 1
                        self._drop(conn, cut=True)
                        continue
                if self.idle_timeout > 0 and conn.last < idle:
                    self.stats["idle_closed_total"] += 1
                    self._drop(conn, cut=conn.partial_since is not None)
        assert self._loop is not None
        self._sweeper = self._loop.call_later(self._sweep_interval(), self._sweep)
