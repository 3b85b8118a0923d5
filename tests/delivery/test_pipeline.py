"""The receive pipeline: sink → parse → event_id → route → engine, and pausing receivers.

A real route table compiled from configuration text (with the built-in plugins' option
schema), a real Engine whose ``stdout`` type is replaced by a recording output, real threads.
"""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest

from dsrouter.api import Output, OutputType
from dsrouter.delivery.engine import Engine
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.pipeline import Pipeline
from dsrouter.plugin import Plugins
from dsrouter.samples import sample_lines

from .support import Log, wait_for

CONFIG = """
output a { type = "stdout" }
output b { type = "stdout", queue = "disk", fsync = "never" }
route everything { to a, b }
"""

BLOCKING = """
output a { type = "stdout", queue_max_events = 2, when_full = "block" }
route everything { to a }
"""


class Recorder(Output):
    """Records every event; waits for ``gate`` first when one is given."""

    gate: threading.Event | None = None

    def __init__(self, name, options, context) -> None:
        super().__init__(name, options, context)
        self.lock = threading.Lock()
        self.events: list[dict] = []

    def send(self, events):
        if self.gate is not None:
            self.gate.wait(30.0)
        with self.lock:
            self.events.extend(events)

    def got(self) -> list[dict]:
        with self.lock:
            return list(self.events)


class Listener:
    def __init__(self) -> None:
        self.paused = self.resumed = 0

    def pause(self) -> None:
        self.paused += 1

    def resume(self) -> None:
        self.resumed += 1


class Rig:
    def __init__(self, tmp_path, text: str, gate: threading.Event | None = None) -> None:
        config = load_config_text(text, "t.conf", Plugins(entry_points=False).option_specs())
        self.outputs: dict[str, Recorder] = {}

        def factory(name, options, context):
            out = Recorder(name, options, context)
            out.gate = gate
            self.outputs[name] = out
            return out

        self.log = Log()
        self.data_dir = tmp_path / "data"
        self.engine = Engine(
            self.data_dir, tmp_path, {"stdout": OutputType("stdout", factory)}, self.log
        )
        self.engine.open(config.outputs)
        self.pipeline = Pipeline(self.engine, compile_routes(config), self.data_dir, self.log)

    def receive(self, messages: list[bytes], peer: str = "192.0.2.9", truncated: bool = False):
        """What a sink does, then the flush it would schedule."""
        self.pipeline.pending.append(("in", peer, messages, truncated))
        self.pipeline.flush()

    def got(self, name: str) -> list[dict]:
        return self.outputs[name].got()


@pytest.fixture
def rigs(tmp_path):
    made: list[Rig] = []
    gates: list[threading.Event] = []

    def make(text: str = CONFIG, gate: threading.Event | None = None) -> Rig:
        if gate is not None:
            gates.append(gate)
        rig = Rig(tmp_path, text, gate)
        made.append(rig)
        return rig

    yield make
    for gate in gates:
        gate.set()
    for rig in made:
        rig.engine.close(time.monotonic() + 5.0)


def lines(n: int, tag: str = "m") -> list[bytes]:
    samples = sample_lines()
    return [f"{samples[i % len(samples)]} {tag}{i}".encode() for i in range(n)]


def test_sink_marks_truncated_messages_and_flushes_once_per_loop_iteration(rigs):
    rig = rigs()
    first, second = lines(2, "t"), lines(1, "u")

    async def receive():
        sink = rig.pipeline.sink_for("tcp_in")
        sink(first, "192.0.2.7", truncated=True)
        sink(second, "192.0.2.8")
        assert rig.pipeline.flush_scheduled and len(rig.pipeline.pending) == 2
        await asyncio.sleep(0)  # the call_soon'd flush runs
        await asyncio.sleep(0)

    asyncio.run(receive())
    assert rig.pipeline.batches == 1 and rig.pipeline.pending == []
    assert not rig.pipeline.flush_scheduled
    wait_for(lambda: len(rig.got("a")) == 3 and len(rig.got("b")) == 3, what="3 events each")
    by_raw = {ev["raw"]: ev for ev in rig.got("a")}
    assert [by_raw[m.decode()].get("truncated") for m in first] == [True, True]
    assert "truncated" not in by_raw[second[0].decode()]
    assert {ev["peer"] for ev in by_raw.values()} == {"192.0.2.7", "192.0.2.8"}
    assert {ev["input"] for ev in by_raw.values()} == {"tcp_in"}
    # the disk lane got the same events (through JSON)
    assert [ev["event_id"] for ev in rig.got("b")] == [ev["event_id"] for ev in rig.got("a")]
    assert [ev.get("truncated") for ev in rig.got("b")] == [True, True, None]


def test_every_event_gets_a_unique_event_id(rigs):
    rig = rigs()
    for round_ in range(4):
        rig.receive(lines(15, f"r{round_}-") + [b"not a DS event at all"])
    wait_for(lambda: len(rig.got("a")) == 64 and len(rig.got("b")) == 64, what="64 each")
    got = [ev["event_id"] for ev in rig.got("a")]
    assert len(set(got)) == 64 and all(isinstance(x, str) and x for x in got)
    assert [ev["event_id"] for ev in rig.got("b")] == got
    assert rig.pipeline.events_total == 64 and rig.pipeline.batches == 4
    assert rig.pipeline.unparsed == 4


class Exploding:
    """A route table that fails (a bug) on one event and routes the others normally."""

    def __init__(self, table, trigger: str) -> None:
        self.table, self.trigger = table, trigger

    def decide(self, event):
        if self.trigger in event.get("raw", ""):
            raise RuntimeError("routing bug")
        return self.table.decide(event)


def test_a_routing_exception_dead_letters_the_whole_batch(rigs):
    rig = rigs()
    rig.pipeline.table = Exploding(rig.pipeline.table, "BOOM")
    batch = lines(2, "ok") + [b"<134>Dec  1 00:00:00 h BOOM"] + lines(1, "ok-after")
    rig.receive(batch)
    assert rig.pipeline.pipeline_errors == 1
    path = rig.data_dir / "deadletter" / "_pipeline.jsonl"
    kept = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert [k["event"]["raw"] for k in kept] == [m.decode() for m in batch]
    assert {k["reason"] for k in kept} == {"routing failed: RuntimeError('routing bug')"}
    assert all(k["output"] == "_pipeline" and k["dlq_id"] for k in kept)
    assert all(k["event"]["event_id"] for k in kept)
    assert "pipeline_failed" in rig.log.events("error")

    rig.receive(lines(2, "next"))  # the next batch flows as usual
    wait_for(lambda: len(rig.got("a")) == 2 and len(rig.got("b")) == 2, what="the next batch")
    assert all("next" in ev["raw"] for ev in rig.got("a") + rig.got("b"))
    assert rig.pipeline.pipeline_errors == 1
    assert len(path.read_bytes().splitlines()) == 4


def test_a_held_batch_pauses_every_listener_and_tick_resumes_them(rigs):
    gate = threading.Event()
    rig = rigs(BLOCKING, gate=gate)
    listeners = [Listener(), Listener()]
    rig.pipeline.listeners.extend([*listeners, object()])  # one input cannot be paused
    queue = rig.engine.lanes["a"].queue

    rig.receive(lines(2, "first"))
    wait_for(lambda: queue.stats().in_flight == 2, what="the first batch in flight")
    assert not rig.pipeline.paused
    rig.receive(lines(1, "second"))  # the queue is full: the engine holds it
    assert rig.pipeline.paused and rig.engine.holding
    assert [(x.paused, x.resumed) for x in listeners] == [(1, 0), (1, 0)]
    rig.receive(lines(1, "third"))  # still paused: no second pause() call
    assert [(x.paused, x.resumed) for x in listeners] == [(1, 0), (1, 0)]
    rig.pipeline.tick()  # no room yet
    assert rig.pipeline.paused and [x.resumed for x in listeners] == [0, 0]

    gate.set()
    wait_for(lambda: queue.stats().events == 0, what="the first batch delivered")
    rig.pipeline.tick()
    assert not rig.pipeline.paused and not rig.engine.holding
    assert [(x.paused, x.resumed) for x in listeners] == [(1, 1), (1, 1)]
    wait_for(lambda: len(rig.got("a")) == 4, what="all 4 delivered")
    tags = [ev["raw"].rsplit(" ", 1)[1] for ev in rig.got("a")]
    assert tags == ["first0", "first1", "second0", "third0"]
    rig.pipeline.tick()
    assert [x.resumed for x in listeners] == [1, 1]  # resume() only once


def test_a_parser_batch_is_cut_at_its_byte_bound_and_holds_one_message_at_least():
    from dsrouter.pipeline_pool import _take

    big, small = b"x" * 700, b"y" * 100
    pending = [("in", "p", [small] * 3, False), ("in", "q", [big, big], True)]
    items, count, nbytes = _take(pending, 500, max_bytes=1000)
    # 3 small (300 bytes) and one big (700) fit; the second big one waits
    assert [(peer, len(m)) for _, peer, m, _ in items] == [("p", 3), ("q", 1)]
    assert (count, nbytes) == (4, 1000)
    assert pending == [("in", "q", [big], True)]
    items, count, nbytes = _take(pending, 500, max_bytes=10)  # bigger than the bound: taken
    assert [m for _, _, m, _ in items] == [[big]] and (count, nbytes) == (1, 700)
    assert pending == []
    pending = [("in", "p", [small] * 10, False)]
    items, count, nbytes = _take(pending, 4, max_bytes=1 << 20)  # the message bound applies
    assert [len(m) for _, _, m, _ in items] == [4] and (count, nbytes) == (4, 400)
    assert [len(m) for _, _, m, _ in pending] == [6]
