"""The delivery engine on a real JetStream cluster: background commits, roles and policies.

A receive-only engine (``deliver=False``, as ``run --role receive``) publishes; a delivery
engine on another client (another "process") delivers through real worker threads. Every
submission runs on an event loop, as in the daemon; commits land in the background and the
submitter's callback says when they are committed.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from dsrouter.api import Output, OutputType
from dsrouter.delivery import spool
from dsrouter.delivery.engine import Engine
from dsrouter.delivery.jetstream_conn import ClusterOptions, JetStreamClient
from dsrouter.delivery.jetstream_dlq import JetStreamDeadLetters
from dsrouter.delivery.publishing import IN_FLIGHT

from ..delivery.support import Log, wait_for
from .conftest import Clients
from .natsrig import Rig


class Sink(Output):
    """Records what it was sent (shared by every instance through ``got``)."""

    got: list[str]
    opened: list[str]

    def open(self) -> None:
        self.opened.append(self.name)

    def send(self, events: list[dict]) -> None:
        self.got.extend(e["event_id"] for e in events)


def sink_type() -> tuple[OutputType, list[str], list[str]]:
    got: list[str] = []
    opened: list[str] = []

    class Recording(Sink):
        pass

    Recording.got, Recording.opened = got, opened
    return OutputType("sink", Recording), got, opened


class Block:
    def __init__(self, name: str, **options: Any) -> None:
        self.name, self.type, self.options = name, "sink", options


def batch(start: int, n: int, size: int = 0) -> list[dict]:
    return [{"event_id": f"e{i:05d}", "pad": "x" * size} for i in range(start, start + n)]


def depth(eng: Engine, output: str) -> int:
    """The output's events in the stream, read now (snapshots use a background reading)."""
    return eng.lanes[output].queue.stats().events


def engine(tmp: Path, client: JetStreamClient, kind: OutputType, *, deliver: bool) -> Engine:
    data = tmp / ("deliver" if deliver else "receive")
    return Engine(data, tmp, {"sink": kind}, Log(), cluster=client, deliver=deliver)


async def commit_all(eng: Engine, batches: list[dict[str, list[dict]]]) -> list[bool]:
    """Submit every batch as the pipeline does (retrying what is held on each tick) and
    wait for every commit callback."""
    results: list[bool] = []
    for b in batches:
        eng.submit(b, results.append)
    deadline = time.monotonic() + 30
    while len(results) < len(batches) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        eng.tick()
    return results


def test_a_receive_only_engine_publishes_and_a_delivery_engine_delivers(
    nats_cluster: Rig, clients: Clients, tmp_path: Path
) -> None:
    recv_client = clients(nats_cluster)
    deliv_client = clients(nats_cluster, stream=recv_client.options.stream)
    kind, got, opened = sink_type()
    receiver = engine(tmp_path, recv_client, kind, deliver=False)
    receiver.open([Block("siem", batch=100)])
    try:
        batches = [{"siem": batch(i * 50, 50)} for i in range(3 * IN_FLIGHT)]
        results = asyncio.run(commit_all(receiver, batches))
        assert results == [True] * len(batches)
        assert opened == [], "a receive-only router opens no output"
        snap = receiver.snapshot()["siem"]
        assert (snap["queue_type"], snap["state"]) == ("jetstream", "receive-only")
        wait_for(  # committed, nobody delivers yet (snapshots read the stream in the background)
            lambda: receiver.snapshot()["siem"]["queue_events"] == len(batches) * 50, 5, "depth"
        )
        deliverer = engine(tmp_path, deliv_client, kind, deliver=True)
        deliverer.open([Block("siem", batch=100)])
        try:
            wait_for(lambda: len(got) >= len(batches) * 50, 30, "delivery")
            assert sorted(got) == [e["event_id"] for b in batches for e in b["siem"]]
            assert opened == ["siem"]
            wait_for(lambda: depth(deliverer, "siem") == 0, 10, "acks")
        finally:
            deliverer.close(time.monotonic() + 10)
    finally:
        receiver.close(time.monotonic() + 10)


def test_publishes_in_flight_are_bounded_and_pause_the_receivers(
    nats_node: Rig, clients: Clients, tmp_path: Path
) -> None:
    kind, _, _ = sink_type()
    eng = engine(tmp_path, clients(nats_node), kind, deliver=False)
    eng.open([Block("siem")])

    async def flood() -> tuple[bool, bool, int, bool]:
        accepted = [eng.submit({"siem": batch(i * 10, 10)}) for i in range(IN_FLIGHT + 2)]
        held = eng.holding
        left = len(eng.lanes["siem"].held)
        deadline = time.monotonic() + 20
        settled = False
        while not settled and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            settled = eng.tick() and not eng.lanes["siem"].publishing
        return accepted[IN_FLIGHT - 1], held, left, settled

    try:
        last_free, held, left, settled = asyncio.run(flood())
        assert last_free and held and left == 2  # IN_FLIGHT publish at once, the rest wait
        assert settled
        assert depth(eng, "siem") == (IN_FLIGHT + 2) * 10
    finally:
        eng.close(time.monotonic() + 10)


def test_when_full_in_the_cluster(nats_node: Rig, clients: Clients, tmp_path: Path) -> None:
    kind, _, _ = sink_type()
    client = clients(nats_node)
    eng = engine(tmp_path, client, kind, deliver=False)
    eng.open(
        [
            Block("blocking", queue_max_events=20, when_full="block"),
            Block("newest", queue_max_events=20, when_full="drop_newest"),
            Block("oldest", queue_max_events=20, when_full="drop_oldest"),
        ]
    )

    async def run() -> list[bool]:
        done: list[bool] = []
        for i in range(3):
            events = batch(i * 15, 15)
            eng.submit({"blocking": events, "newest": events, "oldest": events}, done.append)
            for _ in range(100):  # one at a time: each sees the previous one's count
                await asyncio.sleep(0.02)
                eng.tick()
                landed = not any(eng.lanes[n].publishing for n in ("newest", "oldest"))
                if landed and (len(done) == i + 1 or eng.lanes["blocking"].held):
                    break  # the dropping lanes' publishes are settled: the next sees their count
        return done

    try:
        done = asyncio.run(run())
        snap = eng.snapshot()
        # 15 fit, then 5 of 15, then none: what does not fit is dropped, as with a local queue
        assert snap["newest"]["dropped_total"] == {"queue_full_newest": 25}
        assert depth(eng, "newest") == 20
        # each batch makes room for itself by deleting the oldest: 10, then 15
        assert snap["oldest"]["dropped_total"] == {"queue_full_oldest": 25}
        assert depth(eng, "oldest") == 20
        assert snap["blocking"]["hold_reason"] == "queue full" and eng.holding
        assert snap["blocking"]["held_events"] == 30  # the second, and the third behind it
        assert len(done) == 1, "the held batches' submitters wait"
    finally:
        left = eng.close(time.monotonic() + 10)  # at shutdown limits lift: the held batches fit
    assert left["blocking"] == 45


def test_too_large_events_become_dead_letters_and_the_rest_is_committed(
    nats_node: Rig, clients: Clients, tmp_path: Path
) -> None:
    kind, _, _ = sink_type()
    client = clients(nats_node)
    eng = engine(tmp_path, client, kind, deliver=False)
    eng.open([Block("siem")])
    limit = client.nc.max_payload  # type: ignore[union-attr]
    events = batch(0, 3) + batch(3, 1, size=limit + 10) + batch(4, 3)
    try:
        assert asyncio.run(commit_all(eng, [{"siem": events}])) == [True]
        assert depth(eng, "siem") == 6
        assert list(JetStreamDeadLetters(client).list("siem")) == []  # would not fit there
        letters = list(eng.local_dead_letters.list("siem"))
        assert [x.event["event_id"] for x in letters] == ["e00003"]
        assert "max_payload" in letters[0].reason
        assert "events_too_large_for_cluster" in eng.log.events("error")
    finally:
        eng.close(time.monotonic() + 10)


def test_a_cluster_that_goes_away_holds_the_batch_until_it_is_back(
    nats_binary: str, tmp_path: Path
) -> None:
    rig = Rig(nats_binary, tmp_path / "nats", 1)
    rig.start()
    client = JetStreamClient(ClusterOptions(tuple(rig.urls), replicas=1, stream="back")).start()
    kind, _, _ = sink_type()
    eng = engine(tmp_path, client, kind, deliver=False)
    try:
        assert client.wait_connected(10)
        eng.open([Block("siem")])
        rig.nodes[0].kill()
        done: list[bool] = []

        async def while_down() -> None:
            eng.submit({"siem": batch(0, 20)}, done.append)
            deadline = time.monotonic() + 20  # fails fast, or after the request timeout
            while not eng.lanes["siem"].held and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                eng.tick()

            lane = eng.lanes["siem"]
            assert done == [] and eng.holding and lane.hold_reason.startswith("queue unwritable")
            await asyncio.to_thread(rig.restart, rig.nodes[0])
            deadline = time.monotonic() + 30
            while not done and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                eng.tick()

        asyncio.run(while_down())
        assert done == [True] and not eng.holding
        assert depth(eng, "siem") == 20
    finally:
        eng.close(time.monotonic() + 10)
        client.close()
        rig.close()


def test_shutdown_waits_for_publishes_in_flight(
    nats_node: Rig, clients: Clients, tmp_path: Path
) -> None:
    kind, _, _ = sink_type()
    eng = engine(tmp_path, clients(nats_node), kind, deliver=False)
    eng.open([Block("siem")])
    done: list[bool] = []
    closed: dict[str, int] = {}

    async def submit_and_close() -> None:
        for i in range(IN_FLIGHT * 2):
            eng.submit({"siem": batch(i * 25, 25)}, done.append)
        closed.update(eng.close(time.monotonic() + 10))  # on the loop, as the daemon does

    thread = threading.Thread(target=lambda: asyncio.run(submit_and_close()))
    thread.start()
    thread.join(30)
    assert done == [True] * (IN_FLIGHT * 2)
    assert closed == {"siem": IN_FLIGHT * 2 * 25}


def test_what_the_cluster_did_not_take_by_shutdown_is_spooled_and_committed_at_start(
    nats_binary: str, tmp_path: Path
) -> None:
    rig = Rig(nats_binary, tmp_path / "nats", 1)
    rig.start()
    opts = ClusterOptions(tuple(rig.urls), replicas=1, stream="spool", request_timeout=1.0)
    kind, _, _ = sink_type()
    done: list[bool] = []
    try:
        client = JetStreamClient(opts).start()
        assert client.wait_connected(10)
        first = engine(tmp_path, client, kind, deliver=False)
        first.open([Block("siem")])
        rig.nodes[0].kill()

        async def down_then_stop() -> None:
            first.submit({"siem": batch(0, 20)}, done.append)
            first.submit({"siem": batch(20, 5)}, done.append)
            await asyncio.sleep(0.3)
            first.close(time.monotonic() + 5)

        asyncio.run(down_then_stop())
        client.close()
        assert done == [True, True]  # safe on disk: the sender may be told so
        assert "events_spooled" in first.log.events("warning")
        assert first.lost == {}
        assert _spooled_ids(first.data_dir, tmp_path / "copy") == [
            e["event_id"] for e in batch(0, 25)
        ]

        rig.restart(rig.nodes[0])
        client = JetStreamClient(opts).start()
        assert client.wait_connected(10)
        second = engine(tmp_path, client, kind, deliver=False)
        second.open([Block("siem")])

        async def start_again() -> int:
            deadline = time.monotonic() + 20
            while (second.holding or second.lanes["siem"].publishing) and (
                time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
                second.tick()
            return depth(second, "siem")

        assert asyncio.run(start_again()) == 25
        second.close(time.monotonic() + 5)
        client.close()
        assert spool.restore(second.data_dir, "siem", Log()) == []  # nothing spooled twice
    finally:
        rig.close()


def _spooled_ids(data_dir: Path, copy: Path) -> list[str]:
    """The event ids spooled for ``siem``, in the order a restart commits them (read from a
    copy, so the test's own restart still finds the spool)."""
    shutil.copytree(data_dir, copy)
    shares = spool.restore(copy, "siem", Log())
    ids = [orjson.loads(p)["event_id"] for share in shares for p in share.batch]
    for share in shares:
        share.settle(False)  # leaves the copy's spool closed
    return ids
