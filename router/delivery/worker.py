"""One output's worker: lease a batch from its queue, send it, settle every event.

Each output has its own worker with ``output.concurrency`` threads (1 for most), so a slow,
hanging or dead output holds up nothing but its own queue. A thread loops:

0. while the output is not open (its first ``open()`` raised), retry ``open()`` with the
   backoff and fetch nothing: the queue keeps what arrives, under its ``when_full`` policy;
1. ``fetch`` up to ``batch`` records (waiting up to ``flush`` to fill the batch);
2. ``send()`` them (``async def send`` runs on the thread's own event loop, cancelled after
   ``send_timeout``; a blocking one past it is reported hung by the engine's watchdog, see
   :mod:`~dsrouter.delivery.isolation`);
3. settle by outcome: delivered → ``ack``; :class:`PermanentFailure` or the rejected part of a
   :class:`PartialFailure` → dead letter, then ``ack``; transient → ``nak`` and the whole
   output pauses for the backoff delay (exponential with jitter, or the peer's
   ``retry_after``), so an outage costs one attempt per delay, not one per batch;
4. an event that failed ``max_attempts`` times (when set) is dead-lettered.

A dead letter that cannot be written (full disk) leaves its events queued: nothing is acked
before it is safely somewhere else.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from dsrouter.api import Output, PartialFailure, PermanentFailure, RetryLater
from dsrouter.delivery.deadletter import DeadLetters, Letter
from dsrouter.delivery.isolation import IDLE_WAIT, Guarded, Origin, Sends, SendTimedOut
from dsrouter.delivery.latency import LATENCY_BUCKETS, Latency
from dsrouter.delivery.options import DeliveryOptions
from dsrouter.delivery.queue import Queue, Record

if TYPE_CHECKING:
    from dsrouter.delivery.jetstream_dlq import JetStreamDeadLetters

__all__ = ["LATENCY_BUCKETS", "Latency", "Worker"]

_DUMPS = orjson.dumps
_IDLE_WAIT = IDLE_WAIT


class Worker(Guarded):
    """Delivers one output's queue; see the module docstring for the loop.

    ``opened=False``: the output's first ``open()`` failed (the engine calls
    :meth:`open_failed`); the worker retries it before fetching anything. ``origin`` names the
    plugin and distribution in every log event about this output.
    """

    def __init__(
        self,
        name: str,
        output: Output,
        queue: Queue,
        dead_letters: DeadLetters | JetStreamDeadLetters,
        options: DeliveryOptions,
        log: Any,
        on_progress: Callable[[], None] = lambda: None,
        *,
        origin: Origin | None = None,
        opened: bool = True,
    ) -> None:
        self.name, self.output, self.queue = name, output, queue
        self.dead_letters, self.options, self.log = dead_letters, options, log
        self.on_progress = on_progress
        self.origin = origin or Origin()
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # counters; never held while calling the output
        self.ops = threading.Lock()  # open and reopen never overlap a send
        self.sends = Sends()
        self.resume_at = 0.0  # monotonic; the output pauses after a transient failure
        self.failures = 0  # consecutive transient failures, for the backoff
        self.busy = 0  # sends in progress
        self.reopen_wanted = False
        self.is_open = opened
        self.open_failures = 0
        self.open_at = 0.0  # monotonic: the next open() attempt while not open
        self.delivered = self.retried = self.failed = self.dead = 0
        self.last_error = ""
        self.last_error_at = 0.0
        self.latency = Latency()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(_concurrency(self.output)):
            thread = threading.Thread(target=self._run, name=f"output-{self.name}-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self, deadline: float) -> bool:
        """Stop after the batches in progress; True when every thread ended by ``deadline``."""
        self.stopping.set()
        self.queue.wake()
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def request_reopen(self) -> None:
        """Ask the worker to call ``output.reopen()`` between batches (SIGHUP, logrotate); an
        output that never opened tries ``open()`` again at once instead."""
        self.reopen_wanted = True
        if not self.is_open:
            self.open_at = 0.0

    @property
    def state(self) -> str:
        """``ok``; ``retrying`` (paused after a transient failure); ``opening`` (its open()
        failed, retried with backoff); ``hung`` (a send ran past ``send_timeout``); ``stopped``."""
        if self.stopping.is_set():
            return "stopped"
        if self.sends.hung:
            return "hung"
        if not self.is_open:
            return "opening"
        return "retrying" if self.failures else "ok"

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop() if inspect.iscoroutinefunction(self.output.send) else None
        try:
            while not self.stopping.is_set():
                if self._paused() or not self._ensure_open() or self._maybe_reopen():
                    continue
                records = self._fetch()
                if records:
                    self._deliver(records, loop)
        finally:
            if loop is not None:
                loop.close()

    def _paused(self) -> bool:
        wait = self.resume_at - time.monotonic()
        if wait <= 0:
            return False
        self.stopping.wait(min(wait, _IDLE_WAIT))
        return True

    def _maybe_reopen(self) -> bool:
        if not self.reopen_wanted:
            return False
        with self.ops:
            if not self.reopen_wanted or self.busy:
                return False
            self.reopen_wanted = False
            try:
                self.output.reopen()
            except BaseException as exc:  # a failed reopen shows as the output's last error
                self._note_error(f"reopen failed: {exc}")
        return True

    def _fetch(self) -> list[Record]:
        opts = self.options
        records = self.queue.fetch(opts.batch, _IDLE_WAIT)
        if records and opts.flush > 0 and len(records) < opts.batch:
            deadline = time.monotonic() + opts.flush
            while len(records) < opts.batch and not self.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                records += self.queue.fetch(opts.batch - len(records), left)
        return records

    def _deliver(self, records: list[Record], loop: asyncio.AbstractEventLoop | None) -> None:
        with self.ops:
            self.busy += 1
        send = self.sends.begin(len(records), loop is not None)
        try:
            error = self._send(records, loop)
        finally:
            hung_for = self.sends.end(send)
            with self.ops:
                self.busy -= 1
        if hung_for is not None:
            self._returned(hung_for, error)
        self._settle(records, error)
        self.on_progress()

    def _send(
        self, records: list[Record], loop: asyncio.AbstractEventLoop | None
    ) -> BaseException | None:
        output = self.output
        try:
            if loop is not None:
                send: Any = output.send  # an ``async def send``
                loop.run_until_complete(self._bounded(send([r.event for r in records])))
            elif output.takes_payloads:
                output.send_payloads([r.payload or _DUMPS(r.data, default=str) for r in records])
            else:
                output.send([r.event for r in records])
            output.flush()
        except SendTimedOut as exc:
            self._cancelled()
            return exc
        except BaseException as exc:  # the output's failure is data, never a crash
            return exc
        return None

    # -- settling -------------------------------------------------------------------------
    def _settle(self, records: list[Record], error: BaseException | None) -> None:
        if error is None:
            self._delivered(records)
        elif isinstance(error, PartialFailure):
            self._partial(records, error)
        elif isinstance(error, PermanentFailure):
            self._reject(records, [error] * len(records))
        else:
            self._transient(records, error, getattr(error, "retry_after", None))

    def _delivered(self, records: Sequence[Record]) -> None:
        if not records:
            return
        self.queue.ack(records)
        with self.lock:
            self.delivered += len(records)
            self.failures = 0
            self.latency.observe(time.time(), records)

    def _partial(self, records: list[Record], error: PartialFailure) -> None:
        rejected = {i: f for i, f in error.rejected.items() if 0 <= i < len(records)}
        retry = {i for i in error.retry if 0 <= i < len(records)} - rejected.keys()
        done = [r for i, r in enumerate(records) if i not in rejected and i not in retry]
        self._delivered(done)
        if rejected:
            self._reject(
                [records[i] for i in sorted(rejected)], [rejected[i] for i in sorted(rejected)]
            )
        if retry:
            self._transient([records[i] for i in sorted(retry)], error, error.retry_after)

    def _failed(self, records: Sequence[Record]) -> None:
        """Count events whose delivery attempt failed, whatever happens to them next."""
        with self.lock:
            self.failed += len(records)

    def _reject(self, records: list[Record], errors: Sequence[PermanentFailure]) -> None:
        self._failed(records)
        letters = [
            Letter(r.event, f"permanent failure: {e}", r.attempts, e.response)
            for r, e in zip(records, errors, strict=True)
        ]
        self._dead_letter(records, letters)

    def _transient(self, records: list[Record], error: BaseException, retry_after: Any) -> None:
        kind = (
            "retry requested"
            if isinstance(error, RetryLater | PartialFailure)
            else type(error).__name__
        )
        reason = str(error) if isinstance(error, SendTimedOut) else f"{kind}: {error}"
        self._failed(records)
        limit = self.options.max_attempts
        spent = [r for r in records if limit and r.attempts >= limit]
        again = [r for r in records if not (limit and r.attempts >= limit)]
        if spent:
            msg = f"gave up after {limit} attempts; last error: {reason}"
            self._dead_letter(spent, [Letter(r.event, msg, r.attempts) for r in spent])
        if again:
            self._pause(again, reason, retry_after)

    def _pause(self, records: list[Record], reason: str, retry_after: Any) -> None:
        with self.lock:
            self.failures += 1
            self.retried += len(records)
            delay = self.options.backoff(self.failures) * (0.5 + random.random() / 2)
            if isinstance(retry_after, int | float) and retry_after >= 0:
                delay = min(float(retry_after), 3600.0)
            self.resume_at = max(self.resume_at, time.monotonic() + delay)
        # Local: first in line when this worker's pause ends, so order holds. Shared (the
        # cluster): held back for the backoff in every process, not only this one.
        self.queue.nak(records, delay if self.queue.shared else 0.0)
        self._note_error(reason)
        if self.failures == 1 or self.failures % 10 == 0:  # not once per retry: bounded logs
            self.log.warning(
                "delivery_failed",
                output=self.name,
                **self.origin.fields(),
                events=len(records),
                failures=self.failures,
                retry_in=round(delay, 3),
                reason=reason,
            )

    def _dead_letter(self, records: list[Record], letters: list[Letter]) -> None:
        try:
            self.dead_letters.add(self.name, letters)
        except OSError as exc:  # the store is full or unwritable: keep the events queued
            self._pause(records, f"dead-letter store unwritable: {exc}", None)
            return
        self.queue.ack(records)
        with self.lock:
            self.dead += len(records)
        self._note_error(letters[-1].reason)
        self.log.error(
            "events_dead_lettered",
            output=self.name,
            **self.origin.fields(),
            events=len(records),
            reason=letters[-1].reason,
        )

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics, stats lines and ``queue status``."""
        with self.lock:
            return {
                "delivered_total": self.delivered,
                "retried_total": self.retried,
                "failed_total": self.failed,
                "dead_lettered_total": self.dead,
                "send_timeouts_total": self.sends.timeouts,
                "open_failures_total": self.open_failures,
                "state": self.state,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "latency": self.latency.snapshot(),
            }


def _concurrency(output: Output) -> int:
    """``output.concurrency`` as a thread count; anything unusable counts as 1."""
    try:
        return max(1, int(getattr(output, "concurrency", 1) or 1))
    except (TypeError, ValueError):
        return 1
