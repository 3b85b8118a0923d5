"""Containing a misbehaving output: who made it, its first ``open()``, and sends that hang.

* :class:`Origin` names the plugin and distribution that registered an output's type, for every
  message about that output's failures.
* :func:`open_output` builds and opens an output. The factory raising, or ``open()`` raising
  :class:`~dsrouter.api.PermanentFailure`, is a start-up refusal (:class:`StartupError`); any
  other exception from ``open()`` is returned, and the lane starts with the output closed: its
  worker retries ``open()`` with the output's backoff.
* :class:`Guarded`, mixed into the worker, retries that ``open()`` and bounds sends.
* :class:`Sends` records the sends in progress of one worker and :class:`Watchdog` (one thread
  per engine) looks for sends older than their output's ``send_timeout``. An ``async def send``
  is cancelled by the worker itself when its time is up (:class:`SendTimedOut`); a blocking
  ``send()`` cannot be interrupted in Python, so the watchdog reports it (``output_send_hung``)
  and its batch stays in flight until the call returns: a nak would let another attempt
  deliver the same events while the first may still succeed.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dsrouter.api import Output, OutputContext, PermanentFailure
from dsrouter.delivery.options import DeliveryOptions
from dsrouter.errors import StartupError

#: How long an idle worker waits before it looks again (seconds).
IDLE_WAIT = 0.25

#: How often the watchdog looks at the sends in progress (seconds).
INTERVAL = 0.5
#: An async send is cancelled at ``send_timeout``; it counts as hung only if it is still
#: running this much later (a coroutine that blocks its thread cannot be cancelled).
CANCEL_GRACE = 1.0


@dataclass(frozen=True)
class Origin:
    """The output type of a lane and the plugin and distribution that registered it."""

    type: str = ""
    plugin: str = ""
    distribution: str = ""

    @classmethod
    def of(cls, kind: Any) -> Origin:
        """From an :class:`~dsrouter.api.OutputType` (tolerates the fields being absent)."""
        return cls(
            str(getattr(kind, "name", "") or ""),
            str(getattr(kind, "plugin", "") or ""),
            str(getattr(kind, "distribution", "") or ""),
        )

    @property
    def label(self) -> str:
        """``plugin 'assets' (dsrouter-assets 0.1.0)``, as plugin problems are worded."""
        if not self.plugin:
            return f"distribution {self.distribution}" if self.distribution else ""
        dist = f" ({self.distribution})" if self.distribution else ""
        return f"plugin '{self.plugin}'{dist}"

    def fields(self) -> dict[str, str]:
        """Keyword arguments for log events."""
        return {"type": self.type, "plugin": self.plugin, "distribution": self.distribution}


class SendTimedOut(Exception):
    """An ``async def send`` ran past ``send_timeout`` and was cancelled: a transient failure."""


def describe_error(exc: BaseException) -> str:
    """``ConnectionError: refused`` (just the type name when the message is empty)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_output(
    kind: Any, name: str, options: Mapping[str, Any], context: OutputContext
) -> tuple[Output, str | None]:
    """``(output, None)`` when it opened, ``(output, reason)`` when ``open()`` raised something
    other than PermanentFailure; StartupError when the factory raised or open() refused."""
    origin = Origin.of(kind)
    try:
        output = kind.factory(name, options, context)
    except Exception as exc:  # a configuration problem: refuse to start
        raise refusal(name, origin, exc) from exc
    try:
        output.open()
    except PermanentFailure as exc:  # the output knows it can never work
        raise refusal(name, origin, exc) from exc
    except Exception as exc:  # maybe later: the worker retries
        return output, describe_error(exc)
    return output, None


def refusal(name: str, origin: Origin, reason: object) -> StartupError:
    """``output 'x' (type) failed to start: reason [plugin 'p' (dist 1.0)]``."""
    where = f" [{origin.label}]" if origin.label else ""
    return StartupError(f"output '{name}' ({origin.type}) failed to start: {reason}{where}")


@dataclass(eq=False)
class Send:
    """One send in progress."""

    started: float  # time.monotonic()
    events: int
    is_async: bool
    hung: bool = False


class Sends:
    """The sends in progress of one worker, and how many ran past ``send_timeout``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: list[Send] = []
        self.timeouts = 0

    def begin(self, events: int, is_async: bool) -> Send:
        send = Send(time.monotonic(), events, is_async)
        with self.lock:
            self.running.append(send)
        return send

    def end(self, send: Send) -> float | None:
        """Forget a send; its duration in seconds when it had been reported hung, else None."""
        with self.lock:
            self.running.remove(send)
        return time.monotonic() - send.started if send.hung else None

    def cancelled(self) -> None:
        """An async send was cancelled at its timeout."""
        with self.lock:
            self.timeouts += 1

    def overdue(self, now: float, timeout: float) -> list[Send]:
        """Sends that just became hung (each is returned once)."""
        if timeout <= 0:
            return []
        with self.lock:
            new = [
                s
                for s in self.running
                if not s.hung and now - s.started >= timeout + (CANCEL_GRACE if s.is_async else 0)
            ]
            for send in new:
                send.hung = True
            self.timeouts += len(new)
        return new

    @property
    def hung(self) -> int:
        """How many sends in progress are past their timeout."""
        with self.lock:
            return sum(1 for s in self.running if s.hung)


class Guarded:
    """The worker's defences against its output, mixed into
    :class:`~dsrouter.delivery.worker.Worker`: ``open()`` retried with backoff while it fails,
    async sends cancelled at ``send_timeout``, blocking ones past it reported hung."""

    name: str
    output: Output
    options: DeliveryOptions
    log: Any
    origin: Origin
    lock: threading.Lock
    ops: threading.Lock
    stopping: threading.Event
    sends: Sends
    is_open: bool
    reopen_wanted: bool
    open_failures: int
    open_at: float
    last_error: str
    last_error_at: float

    def _note_error(self, reason: str) -> None:
        """What ``queue status`` and ``/healthz`` show as the output's last error."""
        self.last_error, self.last_error_at = reason[:500], time.time()

    def open_failed(self, reason: str) -> None:
        """Note a failed ``open()``; the next try waits ``retry_initial`` doubling to
        ``retry_max`` (with jitter). Logged the first time and every tenth."""
        with self.lock:
            self.open_failures += 1
            attempts = self.open_failures
        delay = self.options.backoff(attempts) * (0.5 + random.random() / 2)
        self.open_at = time.monotonic() + delay
        self._note_error(f"open failed: {reason}")
        if attempts == 1 or attempts % 10 == 0:
            self.log.error(
                "output_open_failed",
                output=self.name,
                **self.origin.fields(),
                attempts=attempts,
                retry_in=round(delay, 3),
                reason=reason,
                help="events queue under the output's when_full policy until open() succeeds",
            )

    def _ensure_open(self) -> bool:
        """True when the output is open; else one ``open()`` attempt once its backoff ended."""
        if self.is_open:
            return True
        wait = self.open_at - time.monotonic()
        if wait > 0 or not self.ops.acquire(blocking=False):  # not yet, or another thread is
            self.stopping.wait(min(wait, IDLE_WAIT) if wait > 0 else IDLE_WAIT)
            return False
        try:
            if not self.is_open and not self.stopping.is_set():
                self._try_open()
        finally:
            self.ops.release()
        return self.is_open

    def _try_open(self) -> None:
        try:
            self.output.open()
        except BaseException as exc:  # even SystemExit: a plugin must not end the thread
            self.open_failed(describe_error(exc))
            return
        self.is_open, self.reopen_wanted = True, False
        self.log.info(
            "output_opened",
            output=self.name,
            **self.origin.fields(),
            attempts=self.open_failures + 1,
        )

    async def _bounded(self, coro: Any) -> None:
        """Await an async send; past ``send_timeout`` it is cancelled (SendTimedOut)."""
        timeout = self.options.send_timeout
        scope = asyncio.timeout(timeout if timeout > 0 else None)
        try:
            async with scope:
                await coro
        except TimeoutError:
            if scope.expired():
                raise SendTimedOut(f"send timed out after {timeout:g}s") from None
            raise

    def _cancelled(self) -> None:
        self.sends.cancelled()
        self.log.warning(
            "output_send_timeout",
            output=self.name,
            **self.origin.fields(),
            seconds=self.options.send_timeout,
            help="the async send was cancelled; its batch is retried",
        )

    def check_hung(self, now: float) -> None:
        """Report each send running past ``send_timeout``, once (the watchdog calls this).

        Its batch is not given back to the queue: the call may still deliver it."""
        timeout = self.options.send_timeout
        for send in self.sends.overdue(now, timeout):
            seconds = round(now - send.started, 1)
            self._note_error(
                f"send hung: no return after {seconds:g}s (send_timeout {timeout:g}s); "
                "a blocking send cannot be interrupted"
            )
            self.log.error(
                "output_send_hung",
                output=self.name,
                **self.origin.fields(),
                seconds=seconds,
                events=send.events,
                help="its batch stays in flight (not retried: it may still be delivered) and "
                "settles when the call returns; other outputs are not held up",
            )

    def _returned(self, seconds: float, error: BaseException | None) -> None:
        """A send reported hung has returned; its outcome is settled as usual."""
        self.log.warning(
            "output_send_returned",
            output=self.name,
            **self.origin.fields(),
            seconds=round(seconds, 1),
            outcome="delivered" if error is None else describe_error(error),
        )


class Watchdog:
    """A thread that calls ``check_hung(now)`` on every worker every ``interval`` seconds."""

    def __init__(
        self, workers: Callable[[], Iterable[Any]], log: Any, interval: float = INTERVAL
    ) -> None:
        self.workers, self.log, self.interval = workers, log, interval
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="output-watchdog", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(2.0)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        """One look at every worker; a failure is logged, never raised (the watchdog goes on)."""
        try:
            workers = list(self.workers())
        except RuntimeError:  # the lanes changed while being listed (a reload): next time
            return
        for worker in workers:
            try:
                worker.check_hung(now)
            except Exception as exc:
                self.log.error("watchdog_failed", output=worker.name, error=describe_error(exc))
