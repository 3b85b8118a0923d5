"""``/metrics`` (Prometheus text format) and ``/healthz`` over plain HTTP on ``settings.metrics``.

A deliberately small asyncio server: GET only, no keep-alive, requests bounded in size and time.
It reads the daemon's counters when asked; nothing on the event path knows it exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dsrouter.errors import StartupError

_MAX_REQUEST = 8192
_TIMEOUT = 5.0


def render(stats: dict[str, Any]) -> str:
    """The daemon stats as Prometheus samples: ``dsrouter_<name>{label="..."} value``."""
    lines: list[str] = []
    for name, value in sorted(stats.items()):
        metric = "dsrouter_" + name
        if isinstance(value, int | float) and not isinstance(value, bool):
            lines.append(f"{metric} {value}")
        elif isinstance(value, dict):
            lines.extend(_labelled(metric, value))
    return "\n".join(lines) + "\n"


def _labelled(metric: str, table: dict) -> list[str]:
    name = metric.removeprefix("dsrouter_")
    label = "input" if name == "inputs" else "route" if name.startswith("route") else "output"
    out = []
    for key, value in sorted(table.items()):
        if isinstance(value, dict):  # per-input counters: dsrouter_input_<counter>{input="..."}
            for sub, n in sorted(value.items()):
                out.append(f'dsrouter_input_{sub}{{input="{_escape(key)}"}} {n}')
        else:
            out.append(f'{metric}{{{label}="{_escape(key)}"}} {value}')
    return out


def _escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` from ``stats()``."""

    def __init__(self, host: str, port: int, stats: Callable[[], dict[str, Any]]) -> None:
        self.host, self.port, self.stats = host, port, stats
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        try:
            self.server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            raise StartupError(f"metrics: cannot listen on {where}: {exc.strerror}") from exc

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None, "start() first"
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _TIMEOUT)
            status, body = self._respond(head[:_MAX_REQUEST])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, body = "400 Bad Request", "bad request\n"
        data = body.encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    def _respond(self, head: bytes) -> tuple[str, str]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) < 2 or parts[0] != b"GET":
            return "405 Method Not Allowed", "GET only\n"
        path = parts[1].split(b"?", 1)[0]
        if path == b"/healthz":
            return "200 OK", "ok\n"
        if path == b"/metrics":
            return "200 OK", render(self.stats())
        return "404 Not Found", "try /metrics or /healthz\n"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
