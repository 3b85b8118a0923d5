"""The UDP receiver: one datagram is one message; kernel drops and refused senders are counted."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import structlog

from dsrouter.ingest.limits import AllowList, PeerRates
from dsrouter.ingest.listener import Sink, _bind_error, _Listener, _peer_name

UDP_RCVBUF = 8 * 1024 * 1024
_LINUX = sys.platform.startswith("linux")
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; the socket module lacks it
_log = structlog.get_logger()
_PEER_CACHE_MAX = 4096


class UdpListener(_Listener):
    """One datagram is one message; one trailing LF (or CRLF) is dropped, empty ones too.

    On selector event loops (the Linux default, and uvloop) the listener reads the socket
    itself: each wake-up drains up to :attr:`BATCH` datagrams and hands consecutive ones from
    the same peer to the sink in one call. asyncio's own datagram transport reads one
    datagram per loop turn into a 256 KiB buffer, which measured ~37 µs per datagram here
    against ~3 µs this way. Other loops (Windows' proactor) use ``create_datagram_endpoint``.

    ``recv_buffer`` is the socket receive buffer asked for (0: the OS default);
    :attr:`recv_buffer` is what the kernel granted, known after :meth:`start`. On Linux
    :meth:`refresh_stats` reads the datagrams the kernel dropped for this socket (buffer
    full) from ``/proc/net/udp`` into ``stats["kernel_drops_total"]``: free per datagram,
    exact, and current even when no datagram came after the drops (``SO_RXQ_OVFL`` is not).
    """

    BATCH = 256

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sink: Sink,
        max_message: int = 65536,
        recv_buffer: int = UDP_RCVBUF,
        allow: AllowList | None = None,
        rates: PeerRates | None = None,
    ) -> None:
        super().__init__(name, host, port, sink, max_message)
        self.allow = allow
        self.rates = rates
        self.stats["refused_total"] = 0
        self.stats["rate_limited_total"] = 0
        self.requested_recv_buffer = recv_buffer
        self.recv_buffer = 0
        self.stats["kernel_drops_total"] = 0
        self.stats["recv_buffer_bytes"] = 0
        self._inode = 0  # of the open socket, for /proc/net/udp; 0 when unknown or closed
        self._family = socket.AF_INET
        # Any UDP payload fits (< 64 KiB), so nothing is truncated unseen, and the buffer stays
        # under malloc's mmap threshold (a 256 KiB one costs ~13 µs per read).
        self._bufsize = 65536
        self._peers: dict[object, str] = {}
        self.paused = False
        self.last_read = 0.0
        self._sock: socket.socket | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind the socket; raise StartupError when that is impossible."""
        loop = asyncio.get_running_loop()
        try:
            sock = _udp_socket(self.host, self.port, self.requested_recv_buffer)
        except OSError as exc:
            raise _bind_error(self.name, self.host, self.port, exc) from None
        self._bound(sock)
        self._track(sock)
        try:
            loop.add_reader(sock, self._read_ready)
        except NotImplementedError:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=sock
            )
            self._transport = transport
            self._loop, self.last_read = loop, loop.time()
            return
        self._sock, self._loop = sock, loop
        self.last_read = loop.time()

    def _track(self, sock: socket.socket) -> None:
        """Note the granted buffer (warn when capped) and what finds the socket in /proc."""
        self.recv_buffer = self.stats["recv_buffer_bytes"] = recv_buffer_size(sock)
        asked = self.requested_recv_buffer
        if 0 < self.recv_buffer < asked:
            _log.warning(
                "udp_recv_buffer_capped",
                input=self.name,
                asked=asked,
                got=self.recv_buffer,
                hint=f"raise the sysctl net.core.rmem_max to at least {asked}",
            )
        self._family = sock.family
        self._inode = os.fstat(sock.fileno()).st_ino if _LINUX else 0

    def refresh_stats(self) -> None:
        """Read the kernel's drop counter for this socket (Linux; elsewhere it stays 0)."""
        if self._inode:
            drops = _proc_udp_drops(self._inode, self._family)
            if drops is not None:
                self.stats["kernel_drops_total"] = drops

    def pause(self) -> None:
        """Stop reading: datagrams wait in the kernel buffer (and past it are counted drops)."""
        if self._sock is not None and self._loop is not None and not self.paused:
            self._loop.remove_reader(self._sock)
        elif self._transport is not None:
            # Python 3.11's proactor datagram transport cannot pause: it keeps reading
            getattr(self._transport, "pause_reading", lambda: None)()
        self.paused = True

    def resume(self) -> None:
        if self._sock is not None and self._loop is not None and self.paused:
            self._loop.add_reader(self._sock, self._read_ready)
        elif self._transport is not None:
            getattr(self._transport, "resume_reading", lambda: None)()
        self.paused = False

    def idle_for(self) -> float:
        """Seconds since the last datagram (what the kernel holds is read before stopping)."""
        if self._loop is None or self.paused:
            return float("inf")
        return self._loop.time() - self.last_read

    def close(self) -> None:
        """Stop receiving (the kernel drop count is read one last time first)."""
        self.refresh_stats()
        self._inode = 0  # a closed socket's inode number may be reused
        if self._sock is not None and self._loop is not None:
            if not self.paused:
                self._loop.remove_reader(self._sock)
            self._sock.close()
            self._sock = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _read_ready(self) -> None:
        """Drain the socket (bounded) and deliver per-peer runs of messages."""
        sock = self._sock
        if sock is None or self._loop is None:
            return
        self.last_read = self._loop.time()
        recvfrom, bufsize, take = sock.recvfrom, self._bufsize, self._take
        batch: list[bytes] = []
        last: object = None
        for _ in range(self.BATCH):
            try:
                data, addr = recvfrom(bufsize)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # e.g. a queued ICMP error; the next wake-up reads on
            if self.allow is not None and not self.allow(addr[0]):
                self.stats["refused_total"] += 1
                continue
            if self.rates is not None and self.rates.take(addr[0], 1, self.last_read) > 0:
                self.stats["rate_limited_total"] += 1
                continue
            message = take(data)
            if message is None:
                continue
            if addr != last and batch:
                self._deliver(batch, self._peer(last))
                batch = []
            last = addr
            batch.append(message)
        if batch:
            self._deliver(batch, self._peer(last))

    def _take(self, data: bytes) -> bytes | None:
        """Count a datagram and return its message, or None when it is empty or oversize."""
        self.stats["bytes_total"] += len(data)
        if data.endswith(b"\n"):
            data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
        if not data:
            return None
        if len(data) > self.max_message:
            self.stats["oversize_total"] += 1
            return None
        return data

    def _peer(self, addr: object) -> str:
        peer = self._peers.get(addr)
        if peer is None:
            if len(self._peers) >= _PEER_CACHE_MAX:
                self._peers.clear()
            peer = self._peers[addr] = _peer_name(addr)
        return peer


class _UdpProtocol(asyncio.DatagramProtocol):
    """The portable path: one datagram per callback."""

    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: object) -> None:
        lst = self.listener
        if lst._loop is not None:
            lst.last_read = lst._loop.time()  # the shutdown drain reads until the senders pause
        host = addr[0]  # type: ignore[index]
        if lst.allow is not None and not lst.allow(host):
            lst.stats["refused_total"] += 1
            return
        if lst.rates is not None and lst.rates.take(host, 1, time.monotonic()) > 0:
            lst.stats["rate_limited_total"] += 1
            return
        message = lst._take(data)
        if message is not None:
            lst._deliver([message], lst._peer(addr))

    def error_received(self, exc: Exception) -> None:  # ICMP errors: nothing to do
        pass


def _udp_socket(host: str, port: int, recv_buffer: int = UDP_RCVBUF) -> socket.socket:
    """A bound non-blocking UDP socket asking for a ``recv_buffer``-byte receive buffer."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # No SO_REUSEADDR: for UDP it lets a second socket silently share the port
        # (asyncio dropped reuse_address for UDP for that reason).
        _set_recv_buffer(sock, recv_buffer)
        sock.bind(addr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _set_recv_buffer(sock: socket.socket, size: int) -> None:
    """Ask for ``size`` bytes (0: keep the default); force past rmem_max where permitted."""
    if size <= 0:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        pass  # refused: keep the default
    if _LINUX and recv_buffer_size(sock) < size:
        try:  # SO_RCVBUFFORCE ignores net.core.rmem_max; needs root (CAP_NET_ADMIN)
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
        except OSError:
            pass  # not permitted: keep the capped size (the listener warns)


def recv_buffer_size(sock: socket.socket) -> int:
    """The socket's effective receive buffer in bytes (Linux reports double: halved here)."""
    size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return size // 2 if _LINUX else size


def _proc_udp_drops(inode: int, family: int) -> int | None:
    """The ``drops`` column of ``/proc/net/udp`` (or ``udp6``) for the socket ``inode``."""
    tables = ("udp6", "udp") if family == socket.AF_INET6 else ("udp", "udp6")
    key = str(inode).encode()
    for table in tables:
        try:
            with open(f"/proc/net/{table}", "rb") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:  # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref ptr drops
            fields = row.split()
            if len(fields) > 12 and fields[9] == key:
                return int(fields[12])
    return None
