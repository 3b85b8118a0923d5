"""A misbehaving output cannot take the engine or another output down.

Real worker threads, MemoryQueues, a DeadLetters store under tmp_path, the real Watchdog and
real Engines; small Output subclasses misbehave on purpose: ``open()`` raising until told
otherwise, sends that never return (blocking or async), ``SystemExit`` from ``send()``. Timing
checks are lower bounds (the worker can only be later) or upper bounds with seconds of slack.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dsrouter.api import Output, OutputContext, OutputType, PermanentFailure, RetryLater
from dsrouter.delivery.deadletter import DeadLetters
from dsrouter.delivery.engine import Engine
from dsrouter.delivery.isolation import CANCEL_GRACE, Origin, Watchdog
from dsrouter.delivery.memqueue import MemoryQueue
from dsrouter.delivery.options import DeliveryOptions
from dsrouter.delivery.worker import Worker
from dsrouter.errors import StartupError
from dsrouter.metrics import collect_families
from dsrouter.options import Duration

from .support import Log, wait_for

CTX = OutputContext(data_dir=Path("."), config_dir=Path("."))
ORIGIN = Origin("flaky", "dsr_flaky", "dsrouter-flaky 0.1.0")
PLUGIN = {"type": "flaky", "plugin": "dsr_flaky", "distribution": "dsrouter-flaky 0.1.0"}


def make_events(n: int, start: int = 0) -> list[dict]:
    return [{"event_id": f"e{i:03d}", "n": i} for i in range(start, start + n)]


def ids(n: int, start: int = 0) -> list[str]:
    return [f"e{i:03d}" for i in range(start, start + n)]


def logged(log: Log, event: str) -> list[dict]:
    with log.lock:
        return [kw for _, e, kw in log.records if e == event]


class Misbehaving(Output):
    """``open()`` raises ``ConnectionError`` until ``open_ok`` is set (or ``fail_opens`` calls
    have failed); ``send()`` waits for ``gate`` on the calls listed in ``hang_on`` (1-based),
    then raises ``then`` (or succeeds). Everything it is asked is recorded."""

    def __init__(self, name="out", options=None, context=CTX, *, fail_opens=0, hang_on=()):
        super().__init__(name, options or {}, context)
        self.lock = threading.Lock()
        self.fail_opens = fail_opens
        self.open_ok = threading.Event()
        self.opens: list[float] = []  # monotonic time of every open() call
        self.opened_at: float | None = None
        self.hang_on = set(hang_on)
        self.gate = threading.Event()
        self.then: BaseException | None = None
        self.calls: list[tuple[float, list[str]]] = []
        self.accepted: list[str] = []
        self.reopened = self.closed = 0

    def open(self):
        with self.lock:
            self.opens.append(time.monotonic())
            if len(self.opens) <= self.fail_opens and not self.open_ok.is_set():
                raise ConnectionError(f"refused #{len(self.opens)}")
            self.opened_at = time.monotonic()

    def send(self, events):
        got = [e["event_id"] for e in events]
        with self.lock:
            self.calls.append((time.monotonic(), got))
            n = len(self.calls)
        if n in self.hang_on:
            assert self.gate.wait(30.0), "the test never opened the gate"
            if self.then is not None:
                raise self.then
        with self.lock:
            self.accepted.extend(got)

    def reopen(self):
        self.reopened += 1

    def close(self):
        self.closed += 1


@pytest.fixture
def rig(tmp_path):
    """``make(output, opened=True, **delivery options)`` → (worker, queue, log); every worker
    is stopped (and must stop) at the end, its gates opened first."""
    made: list[tuple[Worker, MemoryQueue, Output]] = []

    def make(output, opened: bool = True, **opts):
        queue, log = MemoryQueue("out"), Log()
        store = DeadLetters(tmp_path / "deadletter")
        worker = Worker(
            "out", output, queue, store, DeliveryOptions(**opts), log, origin=ORIGIN, opened=opened
        )
        made.append((worker, queue, output))
        return worker, queue, log

    yield make
    for worker, queue, output in made:
        getattr(output, "gate", threading.Event()).set()
        assert worker.stop(time.monotonic() + 5.0), "a worker thread did not stop"
        queue.close()


# -- open() raising ---------------------------------------------------------------------------
def test_open_is_retried_with_backoff_and_nothing_is_sent_before_it_succeeds(rig):
    out = Misbehaving(fail_opens=3)
    with pytest.raises(ConnectionError):  # what the engine's first call saw
        out.open()
    worker, queue, log = rig(out, opened=False, retry_initial=0.1, retry_max=0.4)
    failed_at = time.monotonic()
    worker.open_failed("ConnectionError: refused #1")
    queue.publish(make_events(5))
    worker.start()

    snap = worker.snapshot()
    assert snap["state"] == "opening"
    assert snap["last_error"] == "open failed: ConnectionError: refused #1"
    wait_for(lambda: worker.snapshot()["delivered_total"] == 5, timeout=10.0, what="delivery")

    assert len(out.opens) == 4 and out.opened_at is not None  # 3 failures, then success
    gaps = [b - a for a, b in zip([failed_at, *out.opens[1:]], out.opens[1:], strict=False)]
    for n, gap in enumerate(gaps, 1):  # backoff(n) with jitter 0.5-1: never earlier
        assert gap >= 0.5 * min(0.4, 0.1 * 2 ** (n - 1)) - 0.01, (n, gaps)
    assert all(at >= out.opened_at for at, _ in out.calls)  # no send before open succeeded
    assert out.accepted == ids(5)
    snap = worker.snapshot()
    assert snap["state"] == "ok" and snap["open_failures_total"] == 3
    failures = logged(log, "output_open_failed")
    assert failures[0] == {
        "output": "out",
        **PLUGIN,
        "attempts": 1,
        "retry_in": failures[0]["retry_in"],
        "reason": "ConnectionError: refused #1",
        "help": failures[0]["help"],
    }
    assert [kw["attempts"] for kw in logged(log, "output_opened")] == [4]


def test_a_reload_retries_open_at_once_and_never_reopens_what_never_opened(rig):
    out = Misbehaving(fail_opens=99)
    worker, queue, _ = rig(out, opened=False, retry_initial=60.0, retry_max=60.0)
    worker.open_failed("ConnectionError: refused")  # next try in 30-60 s
    queue.publish(make_events(2))
    worker.start()
    time.sleep(0.3)
    assert out.opens == []  # still waiting for the backoff
    out.open_ok.set()
    worker.request_reopen()  # what a SIGHUP does to a lane that stays
    wait_for(lambda: worker.snapshot()["delivered_total"] == 2, what="delivery after the reload")
    assert len(out.opens) == 1 and out.reopened == 0


# -- sends that do not return -----------------------------------------------------------------
class AsyncHang(Output):
    """An ``async def send`` that sleeps for ever on its first call, then accepts; or raises
    its own TimeoutError when ``own_timeout`` is set."""

    def __init__(self, own_timeout: bool = False) -> None:
        super().__init__("out", {}, CTX)
        self.own_timeout = own_timeout
        self.calls = 0
        self.cancelled = False
        self.accepted: list[str] = []

    async def send(self, events):
        self.calls += 1
        if self.own_timeout and self.calls == 1:
            raise TimeoutError("peer read timed out")
        if self.calls == 1 and not self.own_timeout:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        self.accepted.extend(e["event_id"] for e in events)


def test_async_send_past_its_timeout_is_cancelled_retried_and_delivered_once(rig):
    out = AsyncHang()
    worker, queue, log = rig(out, send_timeout=0.3, retry_initial=0.05, retry_max=0.05)
    queue.publish(make_events(3))
    started = time.monotonic()
    worker.start()
    wait_for(lambda: out.cancelled, timeout=5.0, what="the cancellation")
    assert time.monotonic() - started >= 0.3
    worker.check_hung(time.monotonic())  # cancelled in time: never "hung"
    wait_for(lambda: worker.snapshot()["delivered_total"] == 3, what="the retry delivered")

    assert out.accepted == ids(3) and out.calls == 2
    snap = worker.snapshot()
    assert snap["send_timeouts_total"] == 1 and snap["retried_total"] == 3
    assert snap["last_error"] == "send timed out after 0.3s" and snap["state"] == "ok"
    assert [kw["plugin"] for kw in logged(log, "output_send_timeout")] == ["dsr_flaky"]
    reasons = [kw["reason"] for kw in logged(log, "delivery_failed")]
    assert reasons == ["send timed out after 0.3s"]
    assert logged(log, "output_send_hung") == []


def test_a_timeout_raised_by_the_send_itself_is_not_ours(rig):
    out = AsyncHang(own_timeout=True)
    worker, queue, _ = rig(out, send_timeout=5.0, retry_initial=0.05, retry_max=0.05)
    queue.publish(make_events(1))
    worker.start()
    wait_for(lambda: worker.snapshot()["delivered_total"] == 1, what="delivery")
    snap = worker.snapshot()
    assert snap["send_timeouts_total"] == 0
    assert snap["last_error"] == "TimeoutError: peer read timed out"


@pytest.mark.parametrize("then", [None, RetryLater("peer answered 503 at last")])
def test_blocking_send_past_its_timeout_is_reported_hung_once_then_settled(rig, then):
    out = Misbehaving(hang_on={1})
    out.then = then
    worker, queue, log = rig(out, send_timeout=0.2, retry_initial=0.05, retry_max=0.05)
    dog = Watchdog(lambda: [worker], log, interval=0.05)
    queue.publish(make_events(3))
    worker.start()
    dog.start()
    try:
        wait_for(lambda: worker.state == "hung", timeout=5.0, what="the hung state")
        time.sleep(0.3)  # several more watchdog rounds: still one report

        (report,) = logged(log, "output_send_hung")
        assert {k: report[k] for k in PLUGIN} == PLUGIN
        assert report["seconds"] >= 0.2 and report["events"] == 3
        snap = worker.snapshot()
        assert snap["state"] == "hung" and snap["send_timeouts_total"] == 1
        assert snap["last_error"].startswith("send hung: no return after ")
        assert queue.stats().in_flight == 3  # not given back: no second attempt meanwhile
        assert len(out.calls) == 1 and snap["retried_total"] == 0

        out.gate.set()
        wait_for(lambda: worker.snapshot()["delivered_total"] == 3, what="the batch settled")
    finally:
        dog.stop()
    assert out.accepted == ids(3)  # exactly once
    (back,) = logged(log, "output_send_returned")
    assert back["outcome"] == ("delivered" if then is None else "RetryLater: " + str(then))
    snap = worker.snapshot()
    assert snap["state"] == "ok" and snap["send_timeouts_total"] == 1
    assert snap["retried_total"] == (0 if then is None else 3)
    assert len(out.calls) == (1 if then is None else 2)


def test_an_async_send_that_blocks_its_thread_is_reported_hung_after_the_grace(rig):
    class Blocking(Output):
        def __init__(self) -> None:
            super().__init__("out", {}, CTX)
            self.gate = threading.Event()

        async def send(self, events):
            self.gate.wait(30.0)  # blocks the loop: cancellation cannot reach it

    out = Blocking()
    worker, queue, log = rig(out, send_timeout=0.1)
    queue.publish(make_events(1))
    worker.start()
    wait_for(lambda: worker.sends.running, what="the send")
    started = worker.sends.running[0].started
    worker.check_hung(started + 0.1 + CANCEL_GRACE / 2)
    assert worker.state != "hung"
    worker.check_hung(started + 0.1 + CANCEL_GRACE + 0.01)  # not on the float boundary
    assert worker.state == "hung" and len(logged(log, "output_send_hung")) == 1
    out.gate.set()


def test_system_exit_from_send_is_a_transient_failure_not_a_dead_thread(rig):
    out = Misbehaving()
    out.hang_on, out.then = {1}, SystemExit(3)
    out.gate.set()
    worker, queue, _ = rig(out, retry_initial=0.05, retry_max=0.05)
    queue.publish(make_events(2))
    worker.start()
    wait_for(lambda: worker.snapshot()["delivered_total"] == 2, what="delivery after SystemExit")
    assert all(t.is_alive() for t in worker.threads)
    assert worker.snapshot()["last_error"] == "SystemExit: 3"


# -- the engine -------------------------------------------------------------------------------
@dataclass
class Block:
    name: str
    type: str = "flaky"
    options: dict[str, Any] = field(default_factory=dict)


class Kinds:
    """A ``flaky`` output type from a pretend plugin; ``mode`` option: ``ok``, ``badopen``
    (open raises until ``ready`` is set), ``permanent`` (open raises PermanentFailure),
    ``badfactory`` (the factory raises), ``hang`` (every send waits for ``gate``)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.gate = threading.Event()
        self.built: list[Misbehaving] = []

    def factory(self, name, options, context):
        mode = options.get("mode", "ok")
        if mode == "badfactory":
            raise ValueError("url: not a URL")
        out = Misbehaving(name, options, context, hang_on=range(1, 99) if mode == "hang" else ())
        out.gate = self.gate
        if mode == "badopen":
            out.fail_opens, out.open_ok = 10**6, self.ready
        if mode == "permanent":
            out.open = _raise(PermanentFailure("source missing"))  # type: ignore[method-assign]
        self.built.append(out)
        return out

    def types(self) -> dict[str, OutputType]:
        kind = OutputType(
            "flaky", self.factory, plugin="dsr_flaky", distribution="dsrouter-flaky 0.1.0"
        )
        return {"flaky": kind}

    def named(self, name: str) -> list[Misbehaving]:
        return [o for o in self.built if o.name == name]


def _raise(exc: BaseException):
    def fail():
        raise exc

    return fail


@pytest.fixture
def engine(tmp_path):
    kinds, log, live = Kinds(), Log(), []

    def make(blocks):
        eng = Engine(tmp_path / "data", tmp_path, kinds.types(), log)
        live.append(eng)
        eng.open(blocks)
        return eng

    make.kinds, make.log, make.live = kinds, log, live  # type: ignore[attr-defined]
    yield make
    kinds.ready.set()
    kinds.gate.set()
    for eng in live:
        eng.close(time.monotonic() + 5.0)


def test_an_output_that_cannot_open_starts_opening_under_its_queue_policy(engine):
    fast = {"mode": "badopen", "retry_initial": 0.05, "retry_max": 0.1, "queue_max_events": 3}
    eng = engine(
        [
            Block("drops", options={**fast, "when_full": "drop_newest"}),
            Block("blocks", options={**fast, "when_full": "block"}),
            Block("fine"),
        ]
    )
    names = ("drops", "blocks", "fine")
    assert eng.submit({n: make_events(3) for n in names}) is True  # an empty queue takes it
    assert eng.submit({n: make_events(2, start=3) for n in names}) is False
    wait_for(lambda: engine.kinds.named("fine")[0].accepted == ids(5), what="fine delivered")
    snap = eng.snapshot()
    assert snap["drops"]["state"] == snap["blocks"]["state"] == "opening"
    assert snap["drops"]["dropped_total"] == {"queue_full_newest": 2}
    assert snap["blocks"]["held_events"] == 2 and snap["blocks"]["hold_reason"] == "queue full"
    assert snap["drops"]["plugin"] == "dsr_flaky"
    assert snap["drops"]["distribution"] == "dsrouter-flaky 0.1.0"
    assert snap["drops"]["last_error"].startswith("open failed: ConnectionError: refused #")
    first = [kw for kw in logged(engine.log, "output_open_failed") if kw["attempts"] == 1]
    assert sorted(kw["output"] for kw in first) == ["blocks", "drops"]
    assert {k: first[0][k] for k in PLUGIN} == PLUGIN
    assert all(not o.calls for n in ("drops", "blocks") for o in engine.kinds.named(n))

    engine.kinds.ready.set()
    wait_for(lambda: engine.kinds.named("drops")[0].accepted == ids(3), what="drops delivered")
    wait_for(
        lambda: eng.tick() and engine.kinds.named("blocks")[0].accepted == ids(5),
        what="the held batch delivered",
    )
    assert eng.snapshot()["blocks"]["state"] == "ok"


@pytest.mark.parametrize(
    ("mode", "reason"), [("permanent", "source missing"), ("badfactory", "url: not a URL")]
)
def test_a_refusing_open_or_a_raising_factory_stops_the_start_naming_the_plugin(
    engine, mode, reason
):
    with pytest.raises(StartupError) as info:
        engine([Block("x", options={"mode": mode})])
    assert str(info.value) == (
        f"output 'x' (flaky) failed to start: {reason} [plugin 'dsr_flaky' (dsrouter-flaky 0.1.0)]"
    )


def test_reload_with_an_output_that_never_opened(engine):
    slow = {"mode": "badopen", "retry_initial": 30.0, "retry_max": 30.0}
    eng = engine([Block("a", options=slow), Block("b", options=slow)])
    eng.submit({"a": make_events(2), "b": make_events(2)})
    old_a = eng.lanes["a"]

    # a new output whose open() raises: the reload is refused, naming the plugin
    with pytest.raises(StartupError, match=r"\[plugin 'dsr_flaky' \(dsrouter-flaky 0.1.0\)\]"):
        eng.reconfigure(
            [Block("a", options=slow), Block("b", options=slow), Block("c", options=slow)]
        )
    assert eng.lanes["a"] is old_a and "c" not in eng.lanes

    # "a" changes (it opens now), "b" stays; neither old output is closed: they never opened
    engine.kinds.ready.set()
    eng.reconfigure([Block("a", options={"mode": "ok"}), Block("b", options=slow)])
    assert eng.lanes["a"] is not old_a
    wait_for(lambda: engine.kinds.named("a")[-1].accepted == ids(2), what="a's backlog")
    wait_for(lambda: engine.kinds.named("b")[0].accepted == ids(2), what="b opened at once")
    first_a, first_b = engine.kinds.named("a")[0], engine.kinds.named("b")[0]
    assert first_a.closed == 0 and first_a.reopened == 0 and first_b.reopened == 0


def test_shutdown_waits_for_a_hung_send_only_until_its_deadline(engine):
    eng = engine([Block("hang", options={"mode": "hang", "send_timeout": 0.2}), Block("fine")])
    eng.submit({"hang": make_events(3), "fine": make_events(3)})
    wait_for(lambda: eng.snapshot()["hang"]["state"] == "hung", timeout=5.0, what="hung")
    assert engine.kinds.named("fine")[0].accepted == ids(3)  # the other output went on

    engine.live.remove(eng)
    started = time.monotonic()
    left = eng.close(started + 0.5)
    assert 0.4 <= time.monotonic() - started < 2.0
    assert left == {"hang": 3, "fine": 0}  # the hung batch counts as still queued
    (timeout,) = logged(engine.log, "output_stop_timeout")
    assert timeout["output"] == "hang" and timeout["plugin"] == "dsr_flaky"
    assert engine.kinds.named("hang")[0].closed == 0  # never closed under a running send
    assert len(logged(engine.log, "output_send_hung")) == 1


def test_a_reload_does_not_wait_for_a_send_already_reported_hung(engine):
    eng = engine([Block("hang", options={"mode": "hang", "send_timeout": 0.2})])
    eng.submit({"hang": make_events(2)})
    wait_for(lambda: eng.snapshot()["hang"]["state"] == "hung", timeout=5.0, what="hung")

    started = time.monotonic()
    eng.reconfigure([Block("hang", options={"mode": "ok"})])  # blocks the event loop meanwhile
    assert time.monotonic() - started < 1.0  # not the 10 s a busy worker gets
    eng.submit({"hang": make_events(2, start=2)})
    new = engine.kinds.named("hang")[-1]
    wait_for(lambda: new.accepted == ids(2, 2), what="the new output delivering")
    engine.kinds.gate.set()  # the old call returns at last: its batch is settled, once
    wait_for(lambda: engine.kinds.named("hang")[0].accepted == ids(2), what="the old batch")
    assert new.accepted == ids(2, 2)


# -- options and metrics ----------------------------------------------------------------------
def test_send_timeout_option_and_its_metrics():
    assert DeliveryOptions().send_timeout == 300.0
    assert DeliveryOptions.split({"send_timeout": Duration(0.0)})[0].send_timeout == 0.0
    outputs = {"o": {"send_timeouts_total": 2, "open_failures_total": 5}}
    samples = {s.name: s.value for f in collect_families({"outputs": outputs}) for s in f.samples}
    assert samples == {
        "dsrouter_output_send_timeouts_total": 2.0,
        "dsrouter_output_open_failures_total": 5.0,
    }
