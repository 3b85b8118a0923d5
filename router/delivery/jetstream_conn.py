"""The process's connection to the NATS cluster: one thread, one asyncio loop, one client.

nats-py is asyncio, while the :class:`~dsrouter.delivery.queue.Queue` verbs are called from
worker threads and from the daemon's own event loop. A :class:`JetStreamClient` runs a
private loop in a daemon thread, connects there (retrying with backoff until it succeeds, and
reconnecting for ever after a loss), and the queues bridge into it with
:meth:`JetStreamClient.call` (``run_coroutine_threadsafe`` plus a timeout). Every queue and the
dead-letter store of a process share one client (:func:`shared_client`).

Failures reach callers as :class:`JetStreamError` (an ``OSError``): the engine treats them as a
queue it cannot write (it holds the batch, whatever ``when_full`` says).
``ClusterUnavailable`` means "not now" (not connected, a timeout, no stream leader);
:class:`ApiError` carries JetStream's own error code. Secrets never appear in a ``repr``, a log
event or an error message: :func:`redact` strips user information from server URLs.

Start clients after the parser processes are forked (a thread does not survive ``fork``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import nats
import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from .jetstream_options import (
    ApiError,
    ClusterOptions,
    ClusterUnavailable,
    JetStreamError,
    redact,
    tls_context,
)

__all__ = [
    "ApiError",
    "ClusterOptions",
    "ClusterUnavailable",
    "JetStreamClient",
    "JetStreamError",
    "gather_all",
    "redact",
    "release_client",
    "shared_client",
]

T = TypeVar("T")

_API = "$JS.API."
_RELOG = 60.0  # seconds before the same connection error is logged again


class JetStreamClient:
    """A nats connection on a private loop thread; see the module docstring."""

    def __init__(self, options: ClusterOptions, log: Any = None) -> None:
        self.options = options
        self.log = log if log is not None else structlog.get_logger()
        self.loop = asyncio.new_event_loop()
        self.nc: NATS | None = None
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="dsrouter-nats", daemon=True)
        self._connected = threading.Event()
        self._stopping = False
        self._main: concurrent.futures.Future[None] | None = None
        self._tickers: dict[int, Callable[[], Awaitable[None]]] = {}
        self._logged: dict[str, float] = {}  # reason -> when it was last logged
        self._refs = 0

    # -- life ----------------------------------------------------------------------------
    def start(self) -> JetStreamClient:
        """Start the thread and the connection attempts (returns at once)."""
        if not self._thread.is_alive() and not self._stopping:
            self._thread.start()
            self._main = asyncio.run_coroutine_threadsafe(self._keep_connected(), self.loop)
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Whether the first connection is up within ``timeout`` seconds."""
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        nc = self.nc
        return nc is not None and nc.is_connected

    def close(self, timeout: float = 5.0) -> None:
        """Drop the connection and stop the thread (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
            try:
                future.result(timeout)
            except (concurrent.futures.TimeoutError, NatsError, OSError):
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self.loop.is_running():
            self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _shutdown(self) -> None:
        nc, self.nc = self.nc, None
        if self._main is not None:
            self._main.cancel()
        if nc is not None and not nc.is_closed:
            await nc.close()

    async def _keep_connected(self) -> None:
        """Connect (backoff 0.2 s doubling to 5 s), then run the tickers every 0.5 s."""
        delay = 0.2
        while self.nc is None and not self._stopping:
            try:
                self.nc = await self._connect()
            except (TimeoutError, NatsError, OSError) as exc:
                self._note(f"connect failed: {_describe(exc)}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._connected.set()
        self._logged.clear()
        self.log.info("cluster_connected", servers=self.options.display_servers)
        while not self._stopping:
            await asyncio.sleep(0.5)
            for tick in list(self._tickers.values()):
                try:
                    await tick()
                except (TimeoutError, NatsError, OSError) as exc:
                    self.last_error = _describe(exc)

    def _note(self, error: str) -> None:
        """Remember the error; log each reason at most once a minute (reconnect attempts
        come every half second)."""
        self.last_error = error
        now = time.monotonic()
        if now - self._logged.get(error, -_RELOG) < _RELOG:
            return
        self._logged[error] = now
        event = "cluster_error" if self._connected.is_set() else "cluster_unreachable"
        self.log.warning(event, servers=self.options.display_servers, reason=error)

    async def _connect(self) -> NATS:
        o = self.options
        return await nats.connect(
            servers=list(o.servers),
            name=o.name,
            connect_timeout=max(1, int(o.connect_timeout)),
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py annotates int
            ping_interval=5,
            max_outstanding_pings=2,
            tls=tls_context(o),
            user_credentials=o.creds or None,
            user=o.user or None,
            password=o.password or None,
            token=o.token or None,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )

    async def _on_error(self, exc: Exception) -> None:
        self._note(_describe(exc))

    async def _on_disconnected(self) -> None:
        if not self._stopping:
            self.log.warning("cluster_disconnected", reason=self.last_error or "connection lost")

    async def _on_reconnected(self) -> None:
        self._logged.clear()
        nc = self.nc
        url = nc.connected_url if nc is not None else None
        server = redact(url.geturl()) if url is not None else "?"
        self.log.info("cluster_reconnected", server=server)

    # -- sharing -------------------------------------------------------------------------
    def every_half_second(self, key: int, tick: Callable[[], Awaitable[None]] | None) -> None:
        """Run ``tick()`` on the loop every 0.5 s while connected (None: stop)."""
        if tick is None:
            self._tickers.pop(key, None)
        else:
            self._tickers[key] = tick

    # -- bridging ------------------------------------------------------------------------
    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the client's loop and wait up to ``timeout`` seconds for it."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("JetStreamClient.call from its own loop would deadlock")
        if self._stopping or not self._thread.is_alive():
            coro.close()
            raise ClusterUnavailable("the cluster client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ClusterUnavailable(f"no answer from the cluster within {timeout:g}s") from None
        except concurrent.futures.CancelledError:
            raise ClusterUnavailable("cancelled") from None

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; await it elsewhere with ``asyncio.wrap_future``."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def require(self) -> NATS:
        """The connection (on the loop), or :class:`ClusterUnavailable` when it is down."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            raise ClusterUnavailable(self.last_error or "not connected to the cluster")
        return nc

    async def api(self, what: str, body: Any = None, timeout: float | None = None) -> Any:
        """One JetStream API request (``what``: ``"STREAM.INFO.name"``...), on the loop."""
        payload = b"" if body is None else orjson.dumps(body)
        msg = await self.request(_API + what, payload, timeout)
        resp = orjson.loads(msg.data) if msg.data else {}
        err = resp.get("error") if isinstance(resp, dict) else None
        if err:
            raise ApiError.of(err)
        return resp

    async def request(
        self,
        subject: str,
        payload: bytes,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """``nc.request`` with nats-py's errors as :class:`JetStreamError`."""
        nc = self.require()
        wait = self.options.request_timeout if timeout is None else timeout
        try:
            return await nc.request(subject, payload, timeout=wait, headers=headers)
        except (TimeoutError, NatsError) as exc:
            raise ClusterUnavailable(_describe(exc)) from None

    async def request_many(
        self,
        requests: Sequence[tuple[str, bytes, dict[str, str] | None]],
        timeout: float | None = None,
        sent: Callable[[], None] | None = None,
    ) -> list[Msg | JetStreamError]:
        """Send every ``(subject, payload, headers)`` request at once and collect the replies
        on one inbox (``<inbox>.<index>``); a request without an answer within ``timeout``
        (or answered "no responders") gets a :class:`ClusterUnavailable` in its place.
        ``sent()`` runs once every request is in the connection's buffer, before the wait.

        One subscription and one wait for the batch instead of a future and a timer per
        request: a 500-event publish costs a fraction of 500 ``nc.request`` calls."""
        nc = self.require()
        wait = self.options.request_timeout if timeout is None else timeout
        results: list[Msg | JetStreamError | None] = [None] * len(requests)
        left = [len(requests)]
        done = asyncio.Event()

        async def on_reply(msg: Msg) -> None:
            i = int(msg.subject.rpartition(".")[2])
            if results[i] is None:
                no_one = msg.headers is not None and msg.headers.get("Status") == "503"
                results[i] = ClusterUnavailable("no responders") if no_one else msg
                left[0] -= 1
                if not left[0]:
                    done.set()

        inbox = nc.new_inbox()
        try:
            sub = await nc.subscribe(inbox + ".*", cb=on_reply)
            try:
                for i, (subject, payload, headers) in enumerate(requests):
                    await nc.publish(subject, payload, reply=f"{inbox}.{i}", headers=headers)
                if sent is not None:
                    sent()
                if requests:
                    await asyncio.wait_for(done.wait(), wait)
            except TimeoutError:
                pass
            finally:
                await sub.unsubscribe()
        except NatsError as exc:
            failed = ClusterUnavailable(_describe(exc))
            return [r if r is not None else failed for r in results]
        late = ClusterUnavailable(f"no answer within {wait:g}s")
        return [r if r is not None else late for r in results]


class Turns:
    """Coroutines take turns in the order their numbers were taken (:meth:`take`, on any
    thread) for the part of their work that must keep that order — a queue's publishes, so
    that batches submitted together are stored in the order they came, although each first
    awaits checks of its own. :meth:`wait` and :meth:`finish` run on the client's loop; a
    turn finished early (its publish failed before sending) is skipped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = self._now = 0
        self._finished: set[int] = set()
        self._waiting: dict[int, asyncio.Future[None]] = {}

    def take(self) -> int:
        with self._lock:
            turn, self._next = self._next, self._next + 1
        return turn

    async def wait(self, turn: int) -> None:
        """Until every earlier turn is finished."""
        if self._now == turn:
            return
        future = self._waiting[turn] = asyncio.get_running_loop().create_future()
        try:
            await future
        finally:
            self._waiting.pop(turn, None)

    def finish(self, turn: int) -> None:
        """``turn`` is done (again: nothing); wake the next one."""
        if turn < self._now or turn in self._finished:
            return
        self._finished.add(turn)
        while self._now in self._finished:
            self._finished.discard(self._now)
            self._now += 1
        future = self._waiting.get(self._now)
        if future is not None and not future.done():
            future.set_result(None)


async def gather_all(coros: Iterable[Awaitable[T]]) -> list[T | BaseException]:
    """Run ``coros`` together; every result or exception, in order."""
    return await asyncio.gather(*coros, return_exceptions=True)


def _describe(exc: BaseException) -> str:
    """An error in words, for logs and ``last_error`` (nats-py's carry no secrets)."""
    text = str(exc).strip() or type(exc).__name__
    return redact(text)


_shared: dict[ClusterOptions, JetStreamClient] = {}
_shared_lock = threading.Lock()


def shared_client(options: ClusterOptions, log: Any = None) -> JetStreamClient:
    """The process's started client for ``options``; pair with :func:`release_client`."""
    with _shared_lock:
        client = _shared.get(options)
        if client is None:
            client = _shared[options] = JetStreamClient(options, log).start()
        client._refs += 1
        return client


def release_client(client: JetStreamClient) -> None:
    """Drop one reference; the last one closes the client."""
    with _shared_lock:
        client._refs -= 1
        if client._refs > 0:
            return
        if _shared.get(client.options) is client:
            del _shared[client.options]
    client.close()
