"""The TCP receiver: framing per connection, idle timeout, a connection limit, pausing."""

from __future__ import annotations

import asyncio

from dsrouter.ingest.framing import FRAMINGS, Framer
from dsrouter.ingest.listener import Sink, _bind_error, _Listener, _peer_name


class _TcpConnection(asyncio.Protocol):
    """One accepted connection: a framer, its peer name and when data last came."""

    __slots__ = ("listener", "transport", "framer", "peer", "last", "rejected", "done")

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.framer = Framer(listener.max_message, listener.framing)
        self.peer = "unknown"
        self.last = 0.0
        self.rejected = False
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.listener._opened(self)

    def data_received(self, data: bytes) -> None:
        if self.rejected:
            return
        lst = self.listener
        self.last = lst.now()
        lst.stats["bytes_total"] += len(data)
        messages = self._frame(data)
        if messages:
            lst._deliver(messages, self.peer)

    def eof_received(self) -> bool:
        self.finish()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish()
        self.listener._closed(self)

    def finish(self, cut: bool = False) -> None:
        """Hand a partial last message to the sink (once); ``cut`` marks it truncated (the
        connection is being closed by us, mid-message)."""
        if self.done or self.rejected:
            return
        self.done = True
        messages = self._frame(None)
        if messages:
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
    """A TCP syslog receiver: framing per connection, idle timeout, a connection limit."""

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
    ) -> None:
        super().__init__(name, host, port, sink, max_message)
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing {framing!r}; expected one of {FRAMINGS}")
        self.framing = framing
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
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
                lambda: _TcpConnection(self), self.host, self.port, reuse_address=True
            )
        except OSError as exc:
            raise _bind_error(self.name, self.host, self.port, exc) from None
        self._bound(self._server.sockets[0] if self._server.sockets else None)
        if self.idle_timeout > 0:
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
        stats = self.stats
        transport = conn.transport
        assert transport is not None
        if len(self.connections) >= self.max_connections or not self.accepting:
            conn.rejected = True
            stats["rejected_connections_total"] += 1
            transport.close()
            return
        conn.peer = _peer_name(transport.get_extra_info("peername"))
        conn.last = self.now()
        self.connections.add(conn)
        if self.paused:
            transport.pause_reading()  # type: ignore[attr-defined]
        stats["connections_total"] += 1
        stats["connections_active"] = len(self.connections)

    def _closed(self, conn: _TcpConnection) -> None:
        self.connections.discard(conn)
        self.stats["connections_active"] = len(self.connections)

    def _sweep_interval(self) -> float:
        return max(0.05, min(self.idle_timeout / 4, 5.0))

    def _sweep(self) -> None:
        """Close connections silent for longer than idle_timeout; runs every few seconds."""
        cutoff = self.now() - self.idle_timeout
        idle = [] if self.paused else [c for c in self.connections if c.last < cutoff]
        for conn in [c for c in idle if not c.done]:
            self.stats["idle_closed_total"] += 1
            conn.finish()
            if conn.transport is not None:
                conn.transport.close()
        assert self._loop is not None
        self._sweeper = self._loop.call_later(self._sweep_interval(), self._sweep)
