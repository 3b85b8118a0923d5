"""``sink.submit(events, on_done)``: the pipeline tells the SNS input when its events are in
their queues — at once, after a held batch is released, or never (they could not be kept).

A real route table, a real Engine with a recording output (its ``send`` can wait on a gate).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from dsrouter.api import Output, OutputType
from dsrouter.delivery.engine import Engine
from dsrouter.ds.sns import events_from_message
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.pipeline import Pipeline
from dsrouter.plugin import Plugins

BLOCKING = """
output a { type = "stdout", queue_max_events = 2, when_full = "block" }
route everything { to a }
"""
SYSLOG = b"<134>Nov 27 23:18:32 h CEF:0|Trend Micro|Deep Security Agent|1|21|n|5|cn1=1 act=Deny"


class Log:
    def __getattr__(self, level):
        return lambda event, **kw: None


class Recorder(Output):
    gate = threading.Event()

    def __init__(self, name, options, context) -> None:
        super().__init__(name, options, context)
        self.events: list[dict] = []

    def send(self, events):
        self.gate.wait(30.0)
        self.events.extend(events)


@pytest.fixture
def rig(tmp_path):
    Recorder.gate = threading.Event()
    made: dict[str, Recorder] = {}

    def factory(name, options, context):
        made[name] = Recorder(name, options, context)
        return made[name]

    config = load_config_text(BLOCKING, "t.conf", Plugins(entry_points=False).option_specs())
    engine = Engine(tmp_path, tmp_path, {"stdout": OutputType("stdout", factory)}, Log())
    engine.open(config.outputs)
    pipeline = Pipeline(engine, compile_routes(config), tmp_path, Log())
    yield pipeline, made
    Recorder.gate.set()
    engine.close(time.monotonic() + 5.0)


def _events(n: int) -> list[dict]:
    text = "[" + ",".join('{"EventType": "PacketLog", "Action": 1}' for _ in range(n)) + "]"
    return events_from_message(text, {"message_id": "m"}, "sns_in", "192.0.2.1:1", "t")


def _submit(pipeline: Pipeline, events: list[dict], on_done) -> None:
    """``submit_events`` from the event loop, then the flush it schedules."""

    async def go():
        pipeline.submit_events(events, on_done)
        await asyncio.sleep(0)

    asyncio.run(go())


def _wait(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_submitted_events_are_stamped_routed_and_reported_committed_at_their_flush(rig):
    pipeline, outputs = rig
    seen: list[bool] = []

    async def go():
        sink = pipeline.sink_for("sns_in")
        sink.submit(_events(2), seen.append)
        sink([SYSLOG], "192.0.2.9:514")  # the syslog path shares the flush, unchanged
        assert seen == [] and pipeline.flush_scheduled
        await asyncio.sleep(0)

    asyncio.run(go())
    assert seen == [True] and pipeline.batches == 1 and pipeline.events_total == 3
    Recorder.gate.set()
    _wait(lambda: len(outputs["a"].events) == 3, "three events delivered")
    ids = [e["event_id"] for e in outputs["a"].events]
    assert len(set(ids)) == 3 and {e["format"] for e in outputs["a"].events} == {"cef", "sns"}


def test_a_held_batch_reports_committed_only_when_the_engine_releases_it(rig):
    pipeline, outputs = rig
    seen: list[bool] = []
    _submit(pipeline, _events(2), seen.append)  # fills the queue (two events)
    _wait(lambda: pipeline.engine.lanes["a"].queue.stats().in_flight == 2, "in flight")
    _submit(pipeline, _events(1), seen.append)
    assert pipeline.paused and seen == [True]  # the second is held: not committed yet
    pipeline.tick()
    assert seen == [True]  # still held
    Recorder.gate.set()
    _wait(lambda: len(outputs["a"].events) == 2, "the first two delivered")
    _wait(lambda: (pipeline.tick(), seen)[1] == [True, True], "committed after the release")
    assert not pipeline.paused


def test_events_dead_lettered_by_a_routing_bug_count_as_kept_and_lost_ones_do_not(rig, tmp_path):
    pipeline, _ = rig

    class Broken:
        def decide(self, event):
            raise RuntimeError("bug")

    pipeline.table = Broken()
    seen: list[bool] = []
    _submit(pipeline, _events(1), seen.append)
    assert seen == [True] and pipeline.pipeline_errors == 1
    assert (tmp_path / "deadletter" / "_pipeline.jsonl").exists()
    (tmp_path / "deadletter" / "_pipeline.jsonl").unlink()
    (tmp_path / "deadletter").rmdir()
    (tmp_path / "deadletter").write_text("not a directory")  # the store cannot be written
    _submit(pipeline, _events(1), seen.append)
    assert seen == [True, False]
