"""The Amazon SNS HTTPS receiver: HTTP/1.1 (h11) over TLS, one POST per SNS message.

HTTP parsing is the ``h11`` state machine; this module only moves bytes and applies limits:
``max_body`` (a bigger body gets 413 at once; what the client still sends is read
and dropped, within bounds, so that it sees the answer), ``read_timeout`` (a request's head and
body, from its first byte: 408), ``idle_timeout`` (a keep-alive connection without a request),
request heads of at most 16 KiB (431), ``max_connections`` and an ``allow`` list. Only ``POST``
to ``path`` is served (404, 405 otherwise). What a body means is :mod:`sns_message`'s
business; its JSON work runs on a small thread pool. TLS uses the ``tls`` input's server
context (TLS 1.2+); plain HTTP only when the configuration allows it (behind a proxy).

``pause()`` (the pipeline's back-pressure) makes new messages get 503 at once, so SNS keeps
them and retries. Counters are in :attr:`SnsListener.stats`, outcomes in ``stats["sns"]``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import h11
import structlog

from dsrouter.ingest.limits import AllowList, peer_host
from dsrouter.ingest.listener import _bind_error, _peer_name
from dsrouter.ingest.sns_message import STATUS, Reply, SnsHandler, SnsSettings, Submit, ToEvents

_log = structlog.get_logger()
MAX_HEAD = 16 * 1024
_HANDSHAKE = 10.0
_ANSWER = 12.0  # seconds from a request's first byte to its answer (SNS waits 15 s)
_CHUNK = 65536
_DISCARD_MAX = 64 << 20  # bytes of a refused body read (and dropped) before closing
_REUSE_ADDRESS = os.name == "posix"


class _Closed(Exception):
    """The peer went away or stayed silent: close without an answer."""


class SnsListener:
    """An HTTPS endpoint for SNS subscription deliveries; see the module docstring."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        settings: SnsSettings,
        submit: Submit,
        to_events: ToEvents,
        *,
        path: str = "/sns",
        tls: ssl.SSLContext | None = None,
        max_body: int = 1 << 20,
        read_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        max_connections: int = 256,
        allow: AllowList | None = None,
    ) -> None:
        self.name, self.host, self.port = name, host, port
        self.address: tuple[str, int] = (host, port)
        self.path = path.encode()
        self.tls = tls
        self.max_body, self.read_timeout, self.idle_timeout = max_body, read_timeout, idle_timeout
        self.max_connections, self.allow = max_connections, allow
        keys = (
            "messages_total",
            "bytes_total",
            "requests_total",
            "oversize_total",
            "invalid_total",
            "connections_total",
            "connections_active",
            "idle_closed_total",
            "refused_total",
            "rejected_connections_total",
            "tls_failed_total",
            "sink_errors_total",
        )
        self.stats: dict[str, Any] = dict.fromkeys(keys, 0)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"sns-{name}")
        self.handler = SnsHandler(
            name, settings, submit, to_events, self._run, self._busy, self.stats
        )
        self.connections: set[asyncio.Task[Any]] = set()
        self.in_flight = 0
        self.paused = False
        self.accepting = True
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = f"[{self.address[0]}]" if ":" in self.address[0] else self.address[0]
        return f"{scheme}://{host}:{self.address[1]}{self.path.decode()}"

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _busy(self) -> bool:
        return self.paused or not self.accepting

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and listen; StartupError when that is impossible."""
        try:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=_REUSE_ADDRESS
            )
        except OSError as exc:
            raise _bind_error(self.name, self.host, self.port, exc) from None
        if self._server.sockets:
            name = self._server.sockets[0].getsockname()
            self.address = (name[0], name[1])
        _log.info("sns_listening", input=self.name, url=self.url)

    def pause(self) -> None:
        """Back-pressure: answer new messages 503 (SNS keeps and retries them)."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def stop_accepting(self) -> None:
        """Close the listening socket; requests in progress still get their answer."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
            self._server = None

    def idle_for(self) -> float:
        """0 while a request is being answered, else infinite (the shutdown drain waits)."""
        return 0.0 if self.in_flight else float("inf")

    def close(self) -> None:
        """Stop accepting, drop every connection, stop the worker threads."""
        self.stop_accepting()
        for task in list(self.connections):
            task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- connections ----------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_name(writer.get_extra_info("peername"))
        refusal = self._refusal(peer_host(peer))
        if refusal is not None:
            self.stats[refusal] += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        self.stats["connections_total"] += 1
        self.stats["connections_active"] = len(self.connections)
        try:
            if self.tls is not None and not await self._handshake(writer, peer):
                return
            await self._serve(reader, writer, peer)
        except (_Closed, ConnectionError, OSError, TimeoutError):
            pass
        finally:
            self.connections.discard(task)
            self.stats["connections_active"] = len(self.connections)
            writer.close()

    def _refusal(self, host: str) -> str | None:
        if not self.accepting:
            return "rejected_connections_total"
        if self.allow is not None and not self.allow(host):
            return "refused_total"
        if len(self.connections) >= self.max_connections:
            return "rejected_connections_total"
        return None

    async def _handshake(self, writer: asyncio.StreamWriter, peer: str) -> bool:
        assert self.tls is not None
        try:
            await writer.start_tls(self.tls, ssl_handshake_timeout=_HANDSHAKE)
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self.stats["tls_failed_total"] += 1
            _log.debug("sns_tls_failed", input=self.name, peer=peer, error=str(exc)[:200])
            return False
        return True

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        while True:
            close = True
            try:
                request, started = await self._request(conn, reader)
                answer, close = await self._exchange(conn, reader, writer, request, peer, started)
            except h11.RemoteProtocolError as exc:
                outcome = "head_too_large" if exc.error_status_hint == 431 else "bad_request"
                answer = self._http_refusal(outcome, peer, str(exc)[:200])
            except TimeoutError:
                answer = self._http_refusal("timeout", peer, "the request was not sent in time")
            if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                return
            unread = conn.their_state is h11.SEND_BODY
            await self._respond(conn, writer, answer, close or not self.accepting)
            if unread:  # a refused body: let the client finish sending so it reads the answer
                await self._discard(reader)
            if close or not self.accepting or conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    async def _discard(self, reader: asyncio.StreamReader) -> None:
        """Read and drop what the client still sends (bounded in bytes and time)."""
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        dropped = 0
        while dropped < _DISCARD_MAX:
            data = await self._read(reader, deadline)
            if not data:
                return
            dropped += len(data)

    async def _request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request, float]:
        """The next request's head, and the loop time its first byte came."""
        loop = asyncio.get_running_loop()
        started: float | None = None
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                return event, started if started is not None else loop.time()
            if event is not h11.NEED_DATA:
                raise _Closed
            if started is None:
                try:
                    data = await asyncio.wait_for(reader.read(_CHUNK), self.idle_timeout)
                except TimeoutError:
                    self.stats["idle_closed_total"] += 1
                    raise _Closed from None
                if not data:
                    raise _Closed
                started = loop.time()
            else:
                data = await self._read(reader, started + self.read_timeout)
            conn.receive_data(data)

    async def _read(self, reader: asyncio.StreamReader, deadline: float) -> bytes:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        return await asyncio.wait_for(reader.read(_CHUNK), remaining)

    async def _exchange(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        peer: str,
        started: float,
    ) -> tuple[Reply, bool]:
        """Read the body and have it handled: ``(answer, close the connection after it)``."""
        self.stats["requests_total"] += 1
        early = self._early_refusal(request, peer)
        if early is not None:
            return early, True
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = await self._body(conn, reader, started + self.read_timeout)
        if body is None:
            self.stats["oversize_total"] += 1
            return self._http_refusal("oversize", peer, f"over {self.max_body} bytes"), True
        self.stats["bytes_total"] += len(body)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers}
        self.in_flight += 1
        try:
            answer = await self.handler.handle(body, headers, peer, started + _ANSWER)
        finally:
            self.in_flight -= 1
        if answer.outcome in ("malformed", "raw_delivery"):
            self.stats["invalid_total"] += 1
        return answer, False

    def _early_refusal(self, request: h11.Request, peer: str) -> Reply | None:
        """Method, path and a declared length over ``max_body``: answered before the body."""
        head = len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        if head > MAX_HEAD:
            return self._http_refusal("head_too_large", peer, f"request head over {MAX_HEAD} bytes")
        if request.target.split(b"?", 1)[0] != self.path:
            return self._http_refusal("not_found", peer, "no SNS endpoint here")
        if request.method != b"POST":
            return self._http_refusal("method", peer, "SNS messages are POSTed")
        for name, value in request.headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                self.stats["oversize_total"] += 1
                return self._http_refusal("oversize", peer, f"over {self.max_body} bytes")
        return None

    def _http_refusal(self, outcome: str, peer: str, text: str) -> Reply:
        answer = Reply(STATUS[outcome], outcome, text)
        if outcome in ("bad_request", "head_too_large"):
            self.stats["invalid_total"] += 1
        self.handler.count(answer, peer)
        return answer

    async def _body(
        self, conn: h11.Connection, reader: asyncio.StreamReader, deadline: float
    ) -> bytes | None:
        """The request body; None as soon as it grows over ``max_body``."""
        parts: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    return None
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            elif event is h11.NEED_DATA:
                conn.receive_data(await self._read(reader, deadline))
            else:
                raise _Closed

    async def _respond(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, answer: Reply, close: bool
    ) -> None:
        data = (answer.text + "\n").encode()
        headers = [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(data))),
        ]
        if close:
            headers.append(("connection", "close"))
        reason = HTTPStatus(answer.status).phrase.encode()
        out = conn.send(h11.Response(status_code=answer.status, headers=headers, reason=reason))
        writer.write(out + conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
        await asyncio.wait_for(writer.drain(), self.read_timeout)
