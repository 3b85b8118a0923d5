"""The ``siem`` output's transport: one TCP or TLS connection, or one UDP socket.

A stream batch counts as delivered when the receiver's TCP stack has acknowledged every byte
of it while the connection is still up: ``sendall`` returning only means the bytes reached
this machine's socket buffer. Linux tells how many written bytes are still unacknowledged
(``SIOCOUTQ``); :meth:`Stream.write` waits for that count to reach zero, so a connection that
breaks first fails the whole batch (RetryLater) and it is sent again on a new connection: at
most that batch is duplicated per broken connection. Where the count cannot be read (Windows,
macOS) a written batch counts as delivered and is kept: after a reconnect it is sent again
before the next one, so at most two batches are duplicated.

Every failure raises :class:`RetryLater` with a reason that names the endpoint, never a file
content or secret.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import struct
import time
from pathlib import Path
from typing import Any, NamedTuple

from dsrouter.api import RetryLater

_TIOCOUTQ: int | None
try:
    import fcntl
    from termios import TIOCOUTQ as _TIOCOUTQ
except ImportError:  # Windows
    _TIOCOUTQ = None

EOF = "the receiver closed the connection"
_SSL_WHERE = re.compile(r" ?\(_ssl\.c:\d+\)")
_POLL = (0.0005, 0.05)  # first and longest pause while waiting for the receiver's ACKs
_CLIENT_CERT_HINT = " (if the receiver requires a client certificate, set cert and key)"
_ABRUPT = (ssl.SSLEOFError, BrokenPipeError, ConnectionResetError)


class Endpoint(NamedTuple):
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``"tls://host:6514"`` → Endpoint; ValueError saying what is wrong."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("udp", "tcp", "tls"):
        raise ValueError('expected "udp://HOST:PORT", "tcp://HOST:PORT" or "tls://HOST:PORT"')
    host, colon, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected a port (1-65535) after the host in {scheme}://HOST:PORT")
    if not host or any(c in host for c in "/ []@?#"):
        raise ValueError(f"expected a host name or IP address in {scheme}://HOST:PORT")
    return Endpoint(scheme, host, int(port))


def why(exc: BaseException) -> str:
    """A short reason for a socket or TLS error, without OpenSSL's source locations."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return _SSL_WHERE.sub("", text)


def unacked(sock: socket.socket) -> int | None:
    """Bytes written to ``sock`` that the peer has not acknowledged (Linux); None: unknown."""
    if _TIOCOUTQ is None:
        return None
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return None


def readable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` has something to read (data, EOF or an error) within ``timeout``.

    ``poll`` where there is one: ``select`` fails on descriptors above 1023, which a daemon
    with many connections reaches.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    return bool(select.select([sock], [], [], timeout)[0])


def closed(sock: socket.socket, timeout: float) -> str | None:
    """Why the receiver's side of ``sock`` is closed (EOF, reset, TLS alert); None while open.

    Whatever the receiver sent (syslog receivers send nothing) is read and discarded.
    """
    try:
        if not readable(sock, 0):
            return None
    except (OSError, ValueError):
        return "the connection is closed"
    sock.settimeout(0)
    try:
        data = sock.recv(4096)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
        return None
    except (OSError, ValueError) as exc:
        return why(exc)
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)
    return EOF if not data else None


def send_all(sock: socket.socket, data: bytes) -> None:
    """``sendall`` whose timeout applies to each write, not the whole batch (progress counts)."""
    view = memoryview(data)
    while view:
        view = view[sock.send(view) :]


def tls_context(
    verify: bool, ca: Path | None, cert: Path | None, key: Path | None
) -> ssl.SSLContext:
    """The client context: ``ca`` or the system's trust store, and the client certificate."""
    if key is not None and cert is None:
        raise ValueError("key: set cert too (the client certificate)")
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca: cannot load {ca}: {why(exc)}") from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cert/key: cannot load {cert}: {why(exc)}") from None
    return ctx


class Stream:
    """One TCP or TLS connection, opened on demand and replaced when it breaks."""

    def __init__(
        self,
        endpoint: Endpoint,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        client_cert: bool = False,
        log: Any = None,
        name: str = "",
    ) -> None:
        self.endpoint, self.timeout, self.tls = endpoint, timeout, tls
        self.server_name = server_name or endpoint.host
        self.client_cert, self.log, self.name = client_cert, log, name
        self.sock: socket.socket | None = None
        self.held: bytes | None = None  # the last batch, kept where ACKs cannot be read
        self.fresh = False  # no batch confirmed on this connection yet

    def write(self, data: bytes) -> None:
        """Send one batch and wait for the receiver's ACKs; RetryLater when that fails."""
        sock = self._open()
        try:
            send_all(sock, data)
            confirmed = self._confirm(sock)
        except (OSError, ValueError) as exc:
            self.drop(why(exc))
            raise RetryLater(f"sending to {self.endpoint} failed: {self._why(exc)}") from None
        self.held = None if confirmed else data
        self.fresh = False

    def _why(self, exc: BaseException) -> str:
        """The reason, with a hint when a TLS receiver hung up on the first batch unasked."""
        abrupt = isinstance(exc, _ABRUPT) or EOF in str(exc)
        if abrupt and self.fresh and self.tls is not None and not self.client_cert:
            return why(exc) + _CLIENT_CERT_HINT
        return why(exc)

    def _confirm(self, sock: socket.socket) -> bool:
        """Wait until the receiver's TCP acknowledged every byte; False when that is unknowable.

        Raises ConnectionError when the connection broke first, TimeoutError when nothing more
        was acknowledged for ``timeout``. A clean close after the last ACK still counts.
        """
        left = unacked(sock)
        if left is None:
            return False
        last, deadline, pause = left, time.monotonic() + self.timeout, _POLL[0]
        while left:
            reason = closed(sock, self.timeout)
            if reason is not None:
                raise ConnectionError(f"{reason} ({left} bytes not acknowledged)")
            now = time.monotonic()
            if left < last:
                last, deadline = left, now + self.timeout
            elif now >= deadline:
                raise TimeoutError(f"{left} bytes not acknowledged for {self.timeout:g}s")
            readable(sock, pause)  # wakes at once on a reset or close
            pause = min(pause * 2, _POLL[1])
            left = unacked(sock) or 0
        reason = closed(sock, self.timeout)
        if reason is not None and reason != EOF:
            raise ConnectionError(reason)
        if reason == EOF:
            self.drop(reason)
        return True

    def _open(self) -> socket.socket:
        """The open connection, or a new one (after resending a batch held unconfirmed)."""
        if self.sock is not None:
            reason = closed(self.sock, self.timeout)
            if reason is None:
                return self.sock
            self.drop(reason)
        sock = self._connect()
        if self.held is not None:
            try:
                send_all(sock, self.held)
            except OSError as exc:
                sock.close()
                raise RetryLater(f"sending to {self.endpoint} failed: {why(exc)}") from None
        self.sock, self.fresh = sock, True
        if self.log is not None:
            self.log.info("siem_connected", output=self.name, endpoint=str(self.endpoint))
        return sock

    def _connect(self) -> socket.socket:
        ep = self.endpoint
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=self.timeout)
        except OSError as exc:
            raise RetryLater(f"cannot connect to {ep}: {why(exc)}") from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # a batch goes out in one write: Nagle would only hold its tail until the receiver's
        # (possibly delayed) ACK, which the confirmation then waits for
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            return sock
        try:
            return self.tls.wrap_socket(sock, server_hostname=self.server_name)
        except (OSError, ValueError) as exc:
            sock.close()
            raise RetryLater(f"TLS handshake with {ep} failed: {why(exc)}") from None

    def drop(self, reason: str | None = None) -> None:
        """Forget the connection (the next write opens a new one); log why when it broke."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.close()
        if reason is not None and self.log is not None:
            self.log.warning("siem_connection_lost", output=self.name, reason=reason)

    def close(self) -> None:
        """Close politely: TLS sends close_notify, so the receiver sees a clean end."""
        sock, self.sock = self.sock, None
        if isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                sock.settimeout(min(1.0, self.timeout))
                sock = sock.unwrap()
        if sock is not None:
            sock.close()


class Datagrams:
    """A connected UDP socket: one datagram per message, no acknowledgement."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self.sock: socket.socket | None = None

    def send(self, messages: list[bytes]) -> tuple[int, str]:
        """Send in order: how many went out, and why the rest did not ("" when all did)."""
        sent = 0
        try:
            sock = self.sock or self._open()
            for message in messages:
                sock.send(message)
                sent += 1
        except OSError as exc:  # e.g. ECONNREFUSED: an ICMP "port unreachable" came back
            self.close()
            return sent, f"sending to {self.endpoint} failed: {why(exc)}"
        return sent, ""

    def _open(self) -> socket.socket:
        ep = self.endpoint
        family, kind, proto, _, address = socket.getaddrinfo(
            ep.host, ep.port, type=socket.SOCK_DGRAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.settimeout(self.timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        return sock

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
