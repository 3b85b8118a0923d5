"""Dispatcher: per-output delivery, retries with backoff, dead letters, isolation, counts."""

from __future__ import annotations

from typing import NamedTuple

import orjson

from dsrouter.api import Output, OutputContext, PermanentFailure, RetryLater
from dsrouter.dispatch import Dispatcher, RetryPolicy


class D(NamedTuple):
    routes: tuple
    outputs: tuple
    dropped: bool


class Recorder(Output):
    def __init__(self, name, failures=()):
        super().__init__(name, {}, OutputContext(data_dir=None, config_dir=None))
        self.failures = list(failures)  # exceptions to raise, in order
        self.got = []
        self.closed = False

    def send(self, events):
        if self.failures:
            raise self.failures.pop(0)
        self.got.extend(ev["n"] for ev in events)

    def close(self):
        self.closed = True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _events(n, start=0):
    return [{"n": i} for i in range(start, start + n)]


def _decide_all(*outputs):
    d = D(("r",), outputs, False)
    return lambda ev: d


def test_delivers_to_every_routed_output_in_order():
    a, b = Recorder("a"), Recorder("b")
    disp = Dispatcher(_decide_all("a", "b"), {"a": a, "b": b}, None)
    disp.process(_events(3))
    disp.process(_events(2, 3))
    assert a.got == b.got == [0, 1, 2, 3, 4]
    assert disp.stats()["output_delivered_total"] == {"a": 5, "b": 5}


def test_retry_later_keeps_order_and_delivers_after_backoff(tmp_path):
    clock = Clock()
    a = Recorder("a", failures=[RetryLater("busy")])
    disp = Dispatcher(_decide_all("a"), {"a": a}, tmp_path, RetryPolicy(attempts=3), clock)
    disp.process(_events(2))
    disp.process(_events(2, 2))  # queued behind the failed batch
    assert a.got == []
    disp.tick()  # not due yet
    assert a.got == []
    clock.now = 1.5
    disp.tick()
    assert a.got == [0, 1, 2, 3]
    assert not (tmp_path / "a.jsonl").exists()


def test_permanent_failure_goes_to_dead_letter_and_other_outputs_continue(tmp_path):
    a = Recorder("a", failures=[PermanentFailure("rejected")])
    b = Recorder("b")
    disp = Dispatcher(_decide_all("a", "b"), {"a": a, "b": b}, tmp_path)
    disp.process(_events(2))
    assert b.got == [0, 1]
    lines = (tmp_path / "a.jsonl").read_bytes().splitlines()
    recs = [orjson.loads(line) for line in lines]
    assert [r["event"]["n"] for r in recs] == [0, 1]
    assert "rejected" in recs[0]["reason"]
    assert disp.stats()["output_dead_lettered_total"]["a"] == 2


def test_retries_exhausted_then_dead_lettered(tmp_path):
    clock = Clock()
    a = Recorder("a", failures=[ConnectionError("down")] * 10)
    disp = Dispatcher(_decide_all("a"), {"a": a}, tmp_path, RetryPolicy(attempts=3, first=1), clock)
    disp.process(_events(1))
    for t in (1.1, 3.2, 10):
        clock.now = t
        disp.tick()
    recs = [orjson.loads(x) for x in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert len(recs) == 1 and "gave up after 3 attempts" in recs[0]["reason"]
    assert "ConnectionError" in recs[0]["reason"]


def test_close_dead_letters_pending_and_closes_outputs(tmp_path):
    a = Recorder("a", failures=[RetryLater("x"), RetryLater("still down")])
    disp = Dispatcher(_decide_all("a"), {"a": a}, tmp_path)
    disp.process(_events(2))
    disp.close()
    assert a.closed
    recs = [orjson.loads(x) for x in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert [r["event"]["n"] for r in recs] == [0, 1]
    assert "shutdown" in recs[0]["reason"]


def test_counts_dropped_and_unrouted():
    decisions = [D(("noise",), (), True), D(("x",), (), False), D(("r",), ("a",), False)]
    it = iter(decisions)
    a = Recorder("a")
    disp = Dispatcher(lambda ev: next(it), {"a": a}, None)
    disp.process(_events(3))
    s = disp.stats()
    assert s["events_dropped_total"] == 1
    assert s["events_unrouted_total"] == 1
    assert s["route_events_total"] == {"noise": 1, "x": 1, "r": 1}
    assert a.got == [2]
