"""The worker: settling by outcome, backoff, dead letters, order, concurrency, reopen, stop.

Everything is real: worker threads, a MemoryQueue or DiskQueue, a DeadLetters store in
tmp_path, and small Output subclasses that record what they were given. Timing checks are
lower bounds (a pause can only make the worker later) or upper bounds with seconds of slack.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from dsrouter.api import Output, OutputContext, PartialFailure, PermanentFailure, RetryLater
from dsrouter.delivery.deadletter import DeadLetters
from dsrouter.delivery.diskqueue import DiskQueue
from dsrouter.delivery.latency import LATENCY_BUCKETS, Latency
from dsrouter.delivery.memqueue import MemoryQueue
from dsrouter.delivery.options import DeliveryOptions
from dsrouter.delivery.queue import Record
from dsrouter.delivery.worker import Worker

from .support import Log, wait_for

CTX = OutputContext(data_dir=Path("."), config_dir=Path("."))


def make_events(n: int, start: int = 0) -> list[dict]:
    return [{"event_id": f"e{i:03d}", "n": i} for i in range(start, start + n)]


def ids(n: int, start: int = 0) -> list[str]:
    return [f"e{i:03d}" for i in range(start, start + n)]


class Scripted(Output):
    """Plays one outcome per send() from ``script`` (None: success), then ``fallback``.

    ``calls`` holds (monotonic start time, ids) of every send; ``accepted`` the ids the output
    took (all of a successful batch, those not named by a PartialFailure).
    """

    def __init__(self, script=(), fallback: BaseException | None = None) -> None:
        super().__init__("out", {}, CTX)
        self.script = list(script)
        self.fallback = fallback
        self.lock = threading.Lock()
        self.calls: list[tuple[float, list[str]]] = []
        self.accepted: list[str] = []

    def send(self, events):
        got = [e["event_id"] for e in events]
        with self.lock:
            self.calls.append((time.monotonic(), got))
            step = self.script.pop(0) if self.script else self.fallback
            if step is None:
                self.accepted.extend(got)
            elif isinstance(step, PartialFailure):
                named = set(step.rejected) | set(step.retry)
                self.accepted.extend(x for i, x in enumerate(got) if i not in named)
        if step is not None:
            raise step

    def n_calls(self) -> int:
        with self.lock:
            return len(self.calls)


@pytest.fixture
def rig(tmp_path):
    """``make(output, queue=None, dead_letters=None, **delivery options)`` → worker parts."""
    made: list[tuple[Worker, object]] = []

    def make(output, queue=None, dead_letters=None, **opts):
        queue = queue if queue is not None else MemoryQueue("out")
        store = dead_letters if dead_letters is not None else DeadLetters(tmp_path / "deadletter")
        log = Log()
        worker = Worker("out", output, queue, store, DeliveryOptions(**opts), log)
        made.append((worker, queue))
        return worker, queue, store, log

    yield make
    for worker, queue in made:
        assert worker.stop(time.monotonic() + 5.0), "a worker thread did not stop"
        queue.close()


def delivered(worker: Worker) -> int:
    return worker.snapshot()["delivered_total"]


def test_the_latency_histogram_counts_each_record_by_its_own_commit_time():
    now = 1000.0
    ages = [0.0005, 0.02, 0.0005, 2.0, 0.02, 0.02, 400.0]  # equal times need not be adjacent
    lat = Latency()
    lat.observe(now, [Record(i, None, 1, now - a) for i, a in enumerate(ages)])
    lat.observe(now, [])
    snap = lat.snapshot()
    want = [sum(1 for a in ages if a <= le) for le in LATENCY_BUCKETS]
    assert snap["counts"] == want and want[:4] == [2, 2, 2, 5]
    assert snap["count"] == 7 and snap["sum"] == pytest.approx(sum(ages))


# -- outcomes ---------------------------------------------------------------------------------
def test_success_acks_everything(rig):
    out = Scripted()
    worker, queue, store, _ = rig(out, batch=4)
    queue.publish(make_events(10))
    worker.start()
    wait_for(lambda: delivered(worker) == 10, what="10 delivered")
    wait_for(lambda: queue.stats().events == 0, what="an empty queue")
    snap = worker.snapshot()
    assert out.accepted == ids(10)
    assert [len(c[1]) for c in out.calls] == [4, 4, 2]
    assert snap["latency"]["count"] == 10 and snap["latency"]["counts"][-1] == 10
    assert snap["dead_lettered_total"] == snap["retried_total"] == snap["failed_total"] == 0
    assert snap["state"] == "ok" and snap["last_error"] == ""
    assert queue.stats().in_flight == 0 and store.outputs() == []


def test_permanent_failure_dead_letters_the_whole_batch_without_pausing(rig):
    response = {"status": 403, "body": "forbidden"}
    out = Scripted(fallback=PermanentFailure("HTTP 403", response=response))
    # a pause would be 30-60 s: the second batch must be dead-lettered long before that
    worker, queue, store, log = rig(out, retry_initial=60.0, retry_max=60.0)
    queue.publish(make_events(3))
    worker.start()
    wait_for(lambda: worker.snapshot()["dead_lettered_total"] == 3, what="3 dead letters")
    assert worker.state == "ok"
    queue.publish(make_events(2, start=3))
    wait_for(lambda: worker.snapshot()["dead_lettered_total"] == 5, timeout=5.0)
    wait_for(lambda: queue.stats().events == 0, what="an empty queue")

    assert [c[1] for c in out.calls] == [ids(3), ids(2, 3)]  # once each: no retry
    letters = list(store.list("out"))
    assert [x.event["event_id"] for x in letters] == ids(5)
    assert {x.reason for x in letters} == {"permanent failure: HTTP 403"}
    assert {x.attempts for x in letters} == {1}
    assert all(x.response == response for x in letters)
    snap = worker.snapshot()
    assert snap["delivered_total"] == 0 and snap["retried_total"] == 0
    assert snap["failed_total"] == 5  # every event of a failed attempt, dead-lettered or not
    assert snap["last_error"] == "permanent failure: HTTP 403"
    assert "events_dead_lettered" in log.events("error")


def test_partial_failure_splits_the_batch(rig):
    partial = PartialFailure(
        "some failed",
        rejected={1: PermanentFailure("too long", response={"status": 400}), 4: "bad value"},
        retry=[2, 5],
        retry_after=0.2,
    )
    out = Scripted([partial])
    worker, queue, store, _ = rig(out, retry_initial=60.0, retry_max=60.0)
    queue.publish(make_events(7))
    worker.start()
    wait_for(lambda: delivered(worker) == 5, what="the rest and the retried delivered")
    wait_for(lambda: queue.stats().events == 0, what="an empty queue")

    assert [c[1] for c in out.calls] == [ids(7), ["e002", "e005"]]
    # every event ends in exactly one place: delivered once, or dead-lettered once
    assert Counter(out.accepted) == Counter(["e000", "e003", "e006", "e002", "e005"])
    letters = list(store.list("out"))
    assert [x.event["event_id"] for x in letters] == ["e001", "e004"]
    assert [x.reason for x in letters] == [
        "permanent failure: too long",
        "permanent failure: bad value",
    ]
    assert [x.response for x in letters] == [{"status": 400}, None]
    assert set(out.accepted).isdisjoint(x.event["event_id"] for x in letters)
    snap = worker.snapshot()
    assert snap["dead_lettered_total"] == 2 and snap["retried_total"] == 2
    # retry_after (0.2 s) replaced the 30-60 s backoff
    assert out.calls[1][0] - out.calls[0][0] >= 0.19


def test_retry_later_pauses_the_whole_output_for_retry_after(rig):
    out = Scripted([RetryLater("busy", retry_after=1.0)])
    worker, queue, _, log = rig(out, retry_initial=60.0, retry_max=60.0)
    queue.publish(make_events(2))
    worker.start()
    wait_for(lambda: out.n_calls() == 1 and worker.state == "retrying", what="the failure")
    failed_at = out.calls[0][0]
    queue.publish(make_events(1, start=2))  # arrives during the pause: must wait too
    wait_for(lambda: out.n_calls() >= 2, timeout=10.0, what="the retry")
    gap = out.calls[1][0] - failed_at
    assert 0.99 <= gap < 5.0  # retry_after (1 s), not the 30-60 s backoff
    wait_for(lambda: delivered(worker) == 3, what="3 delivered")
    assert [c[1] for c in out.calls] == [ids(2), ids(3)]  # nothing was sent in between
    snap = worker.snapshot()
    assert snap["state"] == "ok" and snap["retried_total"] == 2 and snap["failed_total"] == 2
    assert snap["last_error"] == "retry requested: busy"
    assert "delivery_failed" in log.events("warning")


def test_backoff_delay_without_retry_after(rig):
    # retry_initial 0.5 s: the first delay is 0.25-0.5 s (jitter), the second 0.5-1 s
    out = Scripted([RetryLater("down"), RetryLater("down")])
    worker, queue, _, _ = rig(out, retry_initial=0.5, retry_max=10.0)
    queue.publish(make_events(1))
    worker.start()
    wait_for(lambda: delivered(worker) == 1, timeout=10.0, what="delivery after two failures")
    times = [c[0] for c in out.calls]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.25
    assert times[2] - times[1] >= 0.5
    assert times[2] - times[0] < 6.0


def test_any_other_exception_is_transient(rig):
    out = Scripted([ValueError("kaboom"), ConnectionRefusedError("refused")])
    worker, queue, store, log = rig(out, retry_initial=0.05, retry_max=0.05)
    queue.publish(make_events(2))
    worker.start()
    wait_for(lambda: delivered(worker) == 2, what="delivery after two exceptions")
    assert [c[1] for c in out.calls] == [ids(2)] * 3
    snap = worker.snapshot()
    assert snap["dead_lettered_total"] == 0 and snap["retried_total"] == 4
    assert snap["state"] == "ok"
    assert store.outputs() == []
    reasons = [kw["reason"] for lv, e, kw in log.records if e == "delivery_failed"]
    assert reasons[0] == "ValueError: kaboom"


def test_max_attempts_dead_letters_after_n_tries(rig):
    out = Scripted(fallback=RetryLater("peer down"))
    worker, queue, store, _ = rig(out, max_attempts=3, retry_initial=0.01, retry_max=0.01)
    queue.publish(make_events(2))
    worker.start()
    wait_for(lambda: worker.snapshot()["dead_lettered_total"] == 2, what="2 dead letters")
    wait_for(lambda: queue.stats().events == 0, what="an empty queue")
    assert [c[1] for c in out.calls] == [ids(2)] * 3
    letters = list(store.list("out"))
    assert [x.event["event_id"] for x in letters] == ids(2)
    for letter in letters:
        assert letter.reason.startswith("gave up after 3 attempts")
        assert "peer down" in letter.reason
        assert letter.attempts == 3
    assert delivered(worker) == 0


@pytest.mark.parametrize("broken", ["not_a_directory", "full"])
def test_unwritable_dead_letter_store_keeps_events_queued(rig, tmp_path, broken):
    where = tmp_path / "deadletter"
    if broken == "not_a_directory":
        where.write_text("a file where the directory should be")
        store = DeadLetters(where)

        def fix():
            where.unlink()
    else:
        store = DeadLetters(where, max_bytes=1)

        def fix():
            store.max_bytes = 0

    out = Scripted(fallback=PermanentFailure("rejected", response={"status": 400}))
    worker, queue, _, _ = rig(out, dead_letters=store, retry_initial=0.05, retry_max=0.05)
    queue.publish(make_events(3))
    worker.start()
    wait_for(lambda: out.n_calls() >= 3, what="retries while the store is broken")
    snap = worker.snapshot()
    assert snap["dead_lettered_total"] == 0 and snap["delivered_total"] == 0
    assert snap["retried_total"] >= 6  # 3 events, settled at least twice
    assert snap["last_error"].startswith("dead-letter store unwritable")
    assert queue.stats().events == 3  # nothing acked
    assert all(c[1] == ids(3) for c in out.calls)
    if broken == "full":
        assert store.refused_full >= 2

    fix()
    wait_for(lambda: worker.snapshot()["dead_lettered_total"] == 3, what="dead letters stored")
    wait_for(lambda: queue.stats().events == 0, what="an empty queue")
    letters = list(store.list("out"))
    assert [x.event["event_id"] for x in letters] == ids(3)
    assert all(x.reason == "permanent failure: rejected" and x.attempts >= 2 for x in letters)
    assert delivered(worker) == 0


# -- order, concurrency, async ------------------------------------------------------------
@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_order_is_kept_across_transient_failures(rig, tmp_path, kind):
    if kind == "memory":
        queue = MemoryQueue("out")
    else:
        queue = DiskQueue("out", tmp_path / "queue", fsync="never")
    script = [
        None,
        RetryLater("blip", retry_after=0.05),
        None,
        ConnectionResetError("reset"),
        None,
        RetryLater("again", retry_after=0.05),
    ]
    out = Scripted(script)
    worker, _, _, _ = rig(out, queue=queue, batch=3, retry_initial=0.05, retry_max=0.05)
    queue.publish(make_events(10))
    worker.start()
    for start in range(10, 30, 4):  # more arrive while it fails and retries
        queue.publish(make_events(4, start=start))
        time.sleep(0.02)
    wait_for(lambda: delivered(worker) == 30, what="30 delivered")
    assert out.accepted == ids(30)
    assert worker.snapshot()["retried_total"] > 0
    assert not out.script  # every failure was played


class Gathering(Output):
    """concurrency 3: every send waits at a barrier for two others."""

    concurrency = 3

    def __init__(self) -> None:
        super().__init__("out", {}, CTX)
        self.barrier = threading.Barrier(3, timeout=5.0)
        self.lock = threading.Lock()
        self.active = self.peak = 0
        self.accepted: list[str] = []
        self.threads: set[int] = set()

    def send(self, events):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads.add(threading.get_ident())
        try:
            self.barrier.wait()
        finally:
            with self.lock:
                self.active -= 1
        with self.lock:
            self.accepted.extend(e["event_id"] for e in events)


def test_concurrency_runs_sends_at_once(rig):
    out = Gathering()
    worker, queue, _, _ = rig(out, batch=1, retry_initial=0.05, retry_max=0.05)
    queue.publish(make_events(6))
    worker.start()
    assert len(worker.threads) == 3
    wait_for(lambda: delivered(worker) == 6, timeout=10.0, what="6 delivered by 3 threads")
    assert out.peak == 3 and len(out.threads) == 3
    assert sorted(out.accepted) == ids(6)
    assert worker.snapshot()["retried_total"] == 0  # the barrier never broke


class AsyncOut(Output):
    def __init__(self) -> None:
        super().__init__("out", {}, CTX)
        self.accepted: list[str] = []
        self.loops: set[int] = set()
        self.calls = 0

    async def send(self, events):
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.001)
        self.loops.add(id(loop))
        self.calls += 1
        if self.calls == 1:
            raise RetryLater("warming up", retry_after=0.05)
        self.accepted.extend(e["event_id"] for e in events)


def test_async_send(rig):
    out = AsyncOut()
    worker, queue, _, _ = rig(out)
    queue.publish(make_events(3))
    worker.start()
    wait_for(lambda: delivered(worker) == 3, what="3 delivered by an async send")
    queue.publish(make_events(2, start=3))
    wait_for(lambda: delivered(worker) == 5, what="5 delivered")
    assert out.accepted == ids(5)
    assert out.calls == 3 and len(out.loops) == 1  # one loop per worker thread, reused
    assert worker.snapshot()["retried_total"] == 3


# -- reopen, stop, flush ----------------------------------------------------------------------
class Gated(Output):
    """Each send() waits for ``gate``; reopen() notes whether a send was running."""

    concurrency = 2

    def __init__(self) -> None:
        super().__init__("out", {}, CTX)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.log: list[str] = []
        self.overlaps = 0

    def send(self, events):
        with self.lock:
            self.active += 1
            self.log.append("send")
        self.started.set()
        try:
            self.gate.wait(20.0)
        finally:
            with self.lock:
                self.active -= 1
                self.log.append("sent")

    def reopen(self):
        with self.lock:
            self.overlaps += self.active
            self.log.append("reopen")


def test_reopen_happens_between_batches_never_during_a_send(rig):
    out = Gated()
    worker, queue, _, _ = rig(out, batch=10)
    try:
        queue.publish(make_events(1))
        worker.start()
        wait_for(out.started.is_set, what="the first send")
        worker.request_reopen()
        time.sleep(0.6)  # the idle second thread loops a few times meanwhile
        assert "reopen" not in out.log
        out.gate.set()
        wait_for(lambda: "reopen" in out.log, what="the reopen")
        queue.publish(make_events(1, start=1))
        wait_for(lambda: delivered(worker) == 2, what="2 delivered")
    finally:
        out.gate.set()
    assert out.log == ["send", "sent", "reopen", "send", "sent"]
    assert out.overlaps == 0 and not worker.reopen_wanted


def test_stop_returns_false_for_a_hung_send(rig):
    out = Gated()
    out.concurrency = 1
    worker, queue, _, _ = rig(out)
    try:
        queue.publish(make_events(1))
        worker.start()
        wait_for(out.started.is_set, what="the send")
        t0 = time.monotonic()
        assert worker.stop(t0 + 0.5) is False
        assert time.monotonic() - t0 < 2.0
        assert worker.state == "stopped"
        assert queue.stats().events == 1  # the hung batch stays queued
    finally:
        out.gate.set()
    assert worker.stop(time.monotonic() + 5.0) is True


def test_stop_returns_true_when_idle_or_done(rig):
    out = Scripted()
    worker, queue, _, _ = rig(out)
    queue.publish(make_events(2))
    worker.start()
    wait_for(lambda: delivered(worker) == 2, what="2 delivered")
    t0 = time.monotonic()
    assert worker.stop(t0 + 5.0) is True
    assert time.monotonic() - t0 < 2.0  # wake() ends the idle fetch at once
    assert not any(t.is_alive() for t in worker.threads)
    queue.publish(make_events(1, start=2))
    time.sleep(0.3)
    assert out.n_calls() == 1  # a stopped worker sends nothing more


@pytest.mark.parametrize("flush", [0.0, 2.0])
def test_flush_waits_to_fill_a_batch(rig, flush):
    out = Scripted()
    worker, queue, _, _ = rig(out, batch=5, flush=flush)
    worker.start()
    queue.publish(make_events(2))
    time.sleep(0.3)
    queue.publish(make_events(3, start=2))
    wait_for(lambda: delivered(worker) == 5, what="5 delivered")
    batches = [c[1] for c in out.calls]
    if flush:
        assert batches == [ids(5)]  # waited for the batch to fill
    else:
        assert batches == [ids(2), ids(3, 2)]


def test_flush_sends_a_short_batch_when_the_wait_ends(rig):
    out = Scripted()
    worker, queue, _, _ = rig(out, batch=5, flush=0.5)
    worker.start()
    published = time.monotonic()
    queue.publish(make_events(2))
    wait_for(lambda: delivered(worker) == 2, what="the short batch")
    assert [c[1] for c in out.calls] == [ids(2)]
    assert out.calls[0][0] - published >= 0.45
