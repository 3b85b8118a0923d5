"""What every listener shares: name, sink, counters and error isolation around the sink.

Listeners hand raw messages to a ``sink(messages, peer)`` callable, synchronously and once per
received datagram or TCP chunk, with every complete message in it; ``peer`` is ``"ip:port"``.
A message cut by the shutdown of its connection is handed over with ``truncated=True``.
They are protocol-based (no task per connection or per event) and never log per event: they
count in :attr:`stats`. A sink that raises is counted in ``sink_errors_total``; the listener
keeps going, because a bad message must never stop a receiver. ``pause()`` / ``resume()``
stop and restart reading (back-pressure from the delivery engine).
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable

import structlog

from dsrouter.errors import StartupError

Sink = Callable[..., None]

_log = structlog.get_logger()


def _new_stats() -> dict[str, int]:
    keys = (
        "messages_total",
        "bytes_total",
        "oversize_total",
        "invalid_total",
        "connections_total",
        "connections_active",
        "idle_closed_total",
        "rejected_connections_total",
        "sink_errors_total",
    )
    return dict.fromkeys(keys, 0)


def _peer_name(addr: object) -> str:
    """``("10.0.0.1", 514)`` → ``"10.0.0.1:514"``; IPv6 as ``"[::1]:514"``."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr) if addr else "unknown"


def _bind_error(name: str, host: str, port: int, exc: OSError) -> StartupError:
    if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
        reason = exc.strerror or str(exc)
    else:  # asyncio rewrites the message; the errno's own text reads better
        reason = os.strerror(exc.errno)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return StartupError(f"input '{name}': cannot listen on {where}: {reason}")


class _Listener:
    """What both listeners share: name, sink, stats, error isolation around the sink."""

    def __init__(self, name: str, host: str, port: int, sink: Sink, max_message: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.sink = sink
        self.max_message = max_message
        self.address: tuple[str, int] = (host, port)
        self.stats = _new_stats()

    def refresh_stats(self) -> None:
        """Bring counters kept outside the process (the kernel's) into :attr:`stats`."""

    def _deliver(self, messages: list[bytes], peer: str, truncated: bool = False) -> None:
        self.stats["messages_total"] += len(messages)
        try:
            if truncated:
                self.sink(messages, peer, truncated=True)
            else:
                self.sink(messages, peer)
        except Exception as exc:
            self.stats["sink_errors_total"] += 1
            if self.stats["sink_errors_total"] == 1:  # once per listener, not per event
                _log.error(
                    "sink_failed",
                    input=self.name,
                    error=repr(exc),
                    traceback=traceback.format_exc(),
                )

    def _bound(self, sock: socket.socket | None) -> None:
        if sock is not None:
            name = sock.getsockname()
            self.address = (name[0], name[1])
