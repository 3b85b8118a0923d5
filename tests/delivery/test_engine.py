"""The delivery engine: fan-out, when_full policies, held batches, reload, shutdown and spill.

Real lanes: worker threads, MemoryQueue / DiskQueue under tmp_path, and a recording output type
whose behaviour (``mode``) is one of its options: ``ok``, ``fail`` (RetryLater for 30 s),
``gated`` (each send waits for the hub's gate) or ``badopen`` (open() raises).
"""

from __future__ import annotations

import errno
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from dsrouter.api import Output, OutputType, RetryLater
from dsrouter.delivery.engine import Engine, queue_dir
from dsrouter.delivery.memqueue import MemoryQueue
from dsrouter.errors import StartupError

from .support import Log, wait_for


def make_events(n: int, start: int = 0) -> list[dict]:
    return [{"event_id": f"e{i:03d}", "n": i} for i in range(start, start + n)]


def ids(*numbers: int) -> list[str]:
    return [f"e{i:03d}" for i in numbers]


class Hub:
    """Every output the factory built, and the gate ``gated`` outputs wait for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instances: list[Recorder] = []
        self.gate = threading.Event()

    def factory(self, name, options, context):
        out = Recorder(name, options, context, self)
        with self.lock:
            self.instances.append(out)
        return out

    def built(self, name: str) -> list[Recorder]:
        with self.lock:
            return [o for o in self.instances if o.name == name]

    def accepted(self, name: str) -> list[str]:
        return [x for o in self.built(name) for x in o.accepted_ids()]


class Recorder(Output):
    def __init__(self, name, options, context, hub: Hub) -> None:
        super().__init__(name, options, context)
        self.hub = hub
        self.mode = options.get("mode", "ok")
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.in_send = threading.Event()
        self.opened = self.closed = self.reopened = self.calls = 0

    def open(self):
        self.opened += 1
        if self.mode == "badopen":
            raise RuntimeError("cannot connect")

    def send(self, events):
        with self.lock:
            self.calls += 1
        if self.mode == "fail":
            raise RetryLater("down", retry_after=30.0)
        if self.mode == "gated":
            self.in_send.set()
            if not self.hub.gate.wait(30.0):
                raise RetryLater("gate never opened")
        with self.lock:
            self.events.extend(events)

    def reopen(self):
        self.reopened += 1

    def close(self):
        self.closed += 1

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return [e["event_id"] for e in self.events]


@dataclass
class Block:
    name: str
    type: str = "rec"
    options: dict[str, Any] = field(default_factory=dict)


def block(name: str, **options) -> Block:
    options.setdefault("mode", "ok")
    return Block(name, "rec", options)


@pytest.fixture
def hub():
    h = Hub()
    yield h
    h.gate.set()


@pytest.fixture
def engines(tmp_path, hub):
    """``make(blocks, cls=Engine)`` → an open engine on tmp_path/data; ``shut(engine)``."""
    live: list[Engine] = []

    class Make:
        data_dir = tmp_path / "data"

        @staticmethod
        def make(blocks, cls=Engine, log=None):
            eng = cls(
                Make.data_dir, tmp_path, {"rec": OutputType("rec", hub.factory)}, log or Log()
            )
            live.append(eng)
            eng.open(blocks)
            return eng

        @staticmethod
        def shut(eng, deadline=None):
            live.remove(eng)
            return eng.close(deadline if deadline is not None else time.monotonic() + 5.0)

    yield Make
    hub.gate.set()
    for eng in live:
        eng.close(time.monotonic() + 5.0)


def queued(eng: Engine, name: str) -> int:
    return eng.lanes[name].queue.stats().events


# -- fan-out ----------------------------------------------------------------------------------
class Counted:
    """A value that is not JSON: the engine's serializer calls str() on it."""

    lock = threading.Lock()
    calls = 0

    def __str__(self) -> str:
        with Counted.lock:
            Counted.calls += 1
        return "counted"


def test_submit_fans_out_and_serializes_once_for_every_disk_lane(engines, hub):
    disk = {"queue": "disk", "fsync": "never"}
    eng = engines.make([block("mem"), block("d1", **disk), block("d2", **disk)])
    assert [lane.queue.durable for lane in eng.lanes.values()] == [False, True, True]

    Counted.calls = 0
    odd = [{"event_id": f"e{i:03d}", "n": i, "tag": Counted()} for i in range(4)]
    assert eng.submit({"mem": odd, "d1": odd, "d2": odd}) is True
    assert Counted.calls == 4  # one serialization per event for both disk lanes
    for name in ("mem", "d1", "d2"):
        wait_for(lambda name=name: len(hub.accepted(name)) == 4, what=f"{name} delivered")
    (d1,), (d2,), (mem,) = hub.built("d1"), hub.built("d2"), hub.built("mem")
    # events this process published come back from the disk queue's cache, not re-decoded
    assert all(a is b is c for a, b, c in zip(d1.events, d2.events, odd, strict=True))
    assert all(a is b for a, b in zip(mem.events, odd, strict=True))  # RAM keeps the dicts

    plain = make_events(5, start=10)
    assert eng.submit({"mem": plain, "d1": plain}) is True
    wait_for(lambda: len(hub.accepted("mem")) == 9 and len(hub.accepted("d1")) == 9)
    assert mem.events[4:] == d1.events[4:] == plain
    assert hub.accepted("d2") == ids(0, 1, 2, 3)  # not routed there
    snap = eng.snapshot()
    assert snap["d1"]["queue_type"] == "disk" and snap["mem"]["queue_type"] == "memory"
    assert all(snap[n]["delivered_total"] == c for n, c in (("mem", 9), ("d1", 9), ("d2", 4)))


# -- when the queue is full -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_block_holds_the_batch_and_tick_publishes_it_once_there_is_room(engines, hub, kind):
    log = Log()
    opts = {"queue": kind, "fsync": "never", "queue_max_events": 3, "when_full": "block"}
    eng = engines.make([block("a", mode="gated", **opts)], log=log)
    assert eng.submit({"a": make_events(3)}) is True
    (out,) = hub.built("a")
    wait_for(out.in_send.is_set, what="the first batch in flight")

    assert eng.submit({"a": make_events(2, start=3)}) is False
    assert eng.holding is True
    assert eng.submit({"a": make_events(1, start=5)}) is False  # queued behind the held one
    snap = eng.snapshot()["a"]
    assert snap["held_events"] == 3 and snap["hold_reason"] == "queue full"
    assert snap["queue_events"] == 6
    assert eng.tick() is False  # still no room
    assert log.events("warning").count("output_backpressure") == 1

    hub.gate.set()
    wait_for(lambda: queued(eng, "a") == 0, what="the first batch delivered")
    assert eng.tick() is True
    assert eng.holding is False and eng.snapshot()["a"]["hold_reason"] == ""
    wait_for(lambda: len(hub.accepted("a")) == 6, what="all 6 delivered")
    assert hub.accepted("a") == ids(*range(6))
    assert "output_backpressure_released" in log.events("info")
    assert eng.tick() is True


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_drop_oldest_keeps_the_newest_of_a_batch_larger_than_the_queue(engines, hub, kind):
    opts = {"queue": kind, "fsync": "never", "queue_max_events": 4, "when_full": "drop_oldest"}
    eng = engines.make([block("a", mode="gated", batch=1, **opts)])
    assert eng.submit({"a": make_events(3)}) is True
    (out,) = hub.built("a")
    wait_for(out.in_send.is_set, what="e000 in flight")
    assert eng.submit({"a": make_events(10, start=3)}) is True  # 10 events, room for 4
    hub.gate.set()
    wait_for(lambda: len(hub.accepted("a")) == 4, what="the survivors delivered")
    wait_for(lambda: queued(eng, "a") == 0, what="an empty queue")
    assert hub.accepted("a") == ids(0, 10, 11, 12)  # the one in flight, then the newest 3
    assert eng.snapshot()["a"]["dropped_total"] == {"queue_full_oldest": 9}


@pytest.mark.parametrize("kind", ["memory", "disk"])
@pytest.mark.parametrize(
    ("policy", "dropped", "survivors"),
    [
        ("drop_newest", {"queue_full_newest": 2}, [0, 1, 2, 3]),
        ("drop_oldest", {"queue_full_oldest": 2}, [0, 3, 4, 5]),
    ],
)
def test_drop_policies(engines, hub, kind, policy, dropped, survivors):
    opts = {"queue": kind, "fsync": "never", "queue_max_events": 4, "when_full": policy}
    eng = engines.make([block("a", mode="gated", batch=1, **opts)])
    assert eng.submit({"a": make_events(3)}) is True
    (out,) = hub.built("a")
    wait_for(out.in_send.is_set, what="e000 in flight")
    assert eng.lanes["a"].queue.stats().in_flight == 1

    assert eng.submit({"a": make_events(3, start=3)}) is True  # dropping never holds
    assert eng.holding is False
    snap = eng.snapshot()["a"]
    assert {k: v for k, v in snap["dropped_total"].items() if v} == dropped
    assert snap["queue_events"] == 4

    hub.gate.set()
    wait_for(lambda: len(hub.accepted("a")) == 4, what="the survivors delivered")
    wait_for(lambda: queued(eng, "a") == 0, what="an empty queue")
    assert hub.accepted("a") == ids(*survivors)


class Unwritable(MemoryQueue):
    """A queue whose backend cannot write (a full disk) until ``broken`` is cleared."""

    broken = True

    def publish(self, events, payloads=None):
        if self.broken:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().publish(events, payloads)


class UnwritableEngine(Engine):
    def _queue(self, name, opts):
        return Unwritable(name, opts.queue_max_events, opts.queue_max_bytes)


@pytest.mark.parametrize("policy", ["block", "drop_newest", "drop_oldest"])
def test_an_unwritable_queue_is_held_whatever_the_policy(engines, hub, policy):
    eng = engines.make([block("a", when_full=policy)], cls=UnwritableEngine)
    queue = eng.lanes["a"].queue
    assert isinstance(queue, Unwritable)
    assert eng.submit({"a": make_events(2)}) is False
    assert eng.submit({"a": make_events(1, start=2)}) is False
    snap = eng.snapshot()["a"]
    assert snap["hold_reason"].startswith("queue unwritable")
    assert snap["held_events"] == 3
    assert not any(snap["dropped_total"].values())  # nothing lost
    assert eng.tick() is False

    queue.broken = False
    assert eng.tick() is True and not eng.holding
    wait_for(lambda: len(hub.accepted("a")) == 3, what="the held events delivered")
    assert hub.accepted("a") == ids(0, 1, 2)


# -- reload -----------------------------------------------------------------------------------
def test_reconfigure_keeps_replaces_and_retires_lanes(engines, hub):
    eng = engines.make(
        [block("keep"), block("change", mode="fail", label=1), block("gone", mode="gated")]
    )
    keep, change, gone = (eng.lanes[n] for n in ("keep", "change", "gone"))
    keep_queue, keep_out = keep.queue, keep.output
    change_queue, old_out = change.queue, change.output
    eng.submit({"keep": make_events(2), "change": make_events(3), "gone": make_events(2)})
    wait_for(lambda: len(hub.accepted("keep")) == 2, what="keep delivered")
    wait_for(lambda: change.worker.snapshot()["retried_total"] == 3, what="change failing")
    wait_for(gone.output.in_send.is_set, what="gone in flight")

    eng.reconfigure([block("keep"), block("change", mode="ok", label=2)])

    # unchanged: the same lane, queue, output and worker, reopened
    assert eng.lanes["keep"] is keep and keep.queue is keep_queue and keep.output is keep_out
    wait_for(lambda: keep_out.reopened == 1, what="keep reopened")
    assert keep_out.closed == 0 and len(hub.built("keep")) == 1

    # changed: a new output on the same queue object; nothing queued is lost
    new = eng.lanes["change"]
    assert new is not change and new.queue is change_queue
    assert new.output is not old_out and new.output.options == {"mode": "ok", "label": 2}
    assert not any(t.is_alive() for t in change.worker.threads)
    wait_for(lambda: len(hub.accepted("change")) == 3, what="the queued events delivered")
    assert hub.accepted("change") == ids(0, 1, 2)
    assert old_out.accepted_ids() == []
    assert old_out.closed == 1  # the replaced instance released its resources
    assert eng.submit({"keep": make_events(1, start=5), "change": make_events(1, start=5)})
    wait_for(lambda: hub.accepted("change") == ids(0, 1, 2, 5), what="new events to the new one")

    # removed: retires, takes nothing new, drains, then reap() closes it
    assert "gone" not in eng.lanes and eng.retired == [gone]
    assert eng.snapshot()["gone"]["retiring"] is True
    eng.reap()
    assert eng.retired == [gone] and gone.output.closed == 0  # still 2 queued
    hub.gate.set()
    wait_for(lambda: gone.queue.stats().events == 0, what="gone drained")
    eng.reap()
    assert eng.retired == [] and gone.output.closed == 1
    assert hub.accepted("gone") == ids(0, 1)
    assert "gone" not in eng.snapshot()
    assert not any(t.is_alive() for t in gone.worker.threads)


def test_reconfigure_to_another_queue_type_keeps_the_backlog(engines, hub):
    eng = engines.make([block("a", mode="fail")])
    old = eng.lanes["a"]
    eng.submit({"a": make_events(3)})
    wait_for(lambda: old.worker.snapshot()["retried_total"] == 3, what="a failing")

    eng.reconfigure([block("a", queue="disk", fsync="never")])
    new = eng.lanes["a"]
    assert new.queue is not old.queue and new.queue.durable and not old.queue.durable
    assert old.output.closed == 1
    wait_for(lambda: len(hub.accepted("a")) == 3, what="the spilled backlog delivered")
    assert hub.accepted("a") == ids(0, 1, 2)
    wait_for(lambda: queued(eng, "a") == 0, what="an empty disk queue")


def test_a_replacement_that_fails_to_start_leaves_the_old_output_running(engines, hub):
    eng = engines.make([block("a", label=1, queue_max_events=50), block("b")])
    lane = eng.lanes["a"]
    eng.submit({"a": make_events(2)})
    wait_for(lambda: len(hub.accepted("a")) == 2, what="a delivered")

    with pytest.raises(StartupError, match="cannot connect"):  # and "b" would be removed
        eng.reconfigure([block("a", mode="badopen", queue_max_events=7)])

    restored = eng.lanes["a"]  # all or nothing: the running lanes were never touched
    assert restored is lane and restored.queue.max_events == 50
    assert restored.output.options == {"mode": "ok", "label": 1}
    assert [o.mode for o in hub.built("a")] == ["ok", "badopen"]
    assert "b" in eng.lanes and not eng.retired
    assert eng.submit({"a": make_events(2, start=2)}) is True
    wait_for(lambda: len(hub.accepted("a")) == 4, what="delivery after the failed reload")
    assert hub.accepted("a") == ids(0, 1, 2, 3)
    assert restored.worker.state == "ok"


# -- shutdown ---------------------------------------------------------------------------------
def test_close_returns_what_is_queued_and_the_next_engine_delivers_it_first(engines, hub):
    held = {"queue_max_events": 3, "when_full": "block"}
    disk = {"queue": "disk", "fsync": "never"}
    eng = engines.make([block("m", mode="fail", **held), block("d", mode="fail", **disk)])
    assert eng.submit({"m": make_events(3), "d": make_events(3)}) is True
    assert eng.submit({"m": make_events(2, start=3)}) is False  # held: the queue is full
    wait_for(lambda: all(o.calls for o in hub.instances), what="both outputs failing")

    left = engines.shut(eng)
    assert left == {"m": 5, "d": 3}  # the held batch was committed, limits lifted
    assert [o.closed for o in hub.instances] == [1, 1]
    assert eng.lanes["m"].queue.spilled == 5
    assert list(queue_dir(engines.data_dir, "m").glob("*.seg")), "the memory queue spilled"

    again = engines.make([block("m"), block("d", **disk)])
    assert again.submit({"m": make_events(2, start=10), "d": make_events(1, start=10)}) is True
    wait_for(lambda: len(hub.accepted("m")) == 7, what="m delivered after the restart")
    wait_for(lambda: len(hub.accepted("d")) == 4, what="d delivered after the restart")
    assert hub.accepted("m") == ids(0, 1, 2, 3, 4, 10, 11)  # the spilled backlog first
    assert hub.accepted("d") == ids(0, 1, 2, 10)
    assert engines.shut(again) == {"m": 0, "d": 0}


def test_a_hung_output_does_not_hold_up_close(engines, hub):
    log = Log()
    eng = engines.make([block("hung", mode="gated"), block("fine")], log=log)
    hung = eng.lanes["hung"]
    eng.submit({"hung": make_events(1), "fine": make_events(2)})
    wait_for(hung.output.in_send.is_set, what="the hung send")
    wait_for(lambda: len(hub.accepted("fine")) == 2, what="fine delivered")

    t0 = time.monotonic()
    left = engines.shut(eng, t0 + 0.5)
    assert time.monotonic() - t0 < 2.0
    assert left == {"hung": 1, "fine": 0}
    assert "output_stop_timeout" in log.events("error")
    assert hung.output.closed == 0  # never closed under a running send
    assert eng.lanes["fine"].output.closed == 1
    hub.gate.set()  # let the thread end before the test does
    assert hung.worker.stop(time.monotonic() + 5.0) is True
