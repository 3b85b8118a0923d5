"""JetStreamDeadLetters on the 3-node cluster, and an unchanged Worker over the cluster queue."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dsrouter.api import Output, OutputContext, PartialFailure, PermanentFailure
from dsrouter.delivery.deadletter import DeadLetterFull, Letter
from dsrouter.delivery.jetstream import JetStreamQueue
from dsrouter.delivery.jetstream_dlq import JetStreamDeadLetters, replay_ids
from dsrouter.delivery.options import DeliveryOptions
from dsrouter.delivery.worker import Worker

from ..delivery.support import Log, wait_for
from .conftest import Clients
from .natsrig import Rig
from .test_jetstream_queue import drain, events, ids


def letters(evs: list[dict], reason: str = "HTTP 400: bad") -> list[Letter]:
    return [Letter(e, reason, 3, {"status": 400, "body": "bad"}) for e in evs]


def test_add_list_get_replay_and_purge(nats_cluster: Rig, clients: Clients) -> None:
    client = clients(nats_cluster)
    store = JetStreamDeadLetters(client)
    assert store.outputs() == [] and list(store.list()) == []
    siem_ids = store.add("siem", letters(events(0, 3)))
    web_ids = store.add("webhook", letters(events(10, 2), "gave up after 3 attempts"))
    assert store.counts() == {"siem": 3, "webhook": 2}
    assert store.outputs() == ["siem", "webhook"]
    listed = list(store.list())
    assert [s.dlq_id for s in listed] == siem_ids + web_ids  # by output, oldest first
    assert [int(i) for i in siem_ids] == sorted(int(i) for i in siem_ids)
    first = listed[0]
    assert (first.output, first.reason, first.attempts) == ("siem", "HTTP 400: bad", 3)
    assert first.response == {"status": 400, "body": "bad"} and first.event == events(0, 1)[0]
    assert store.get(web_ids[1]) == listed[-1] and store.get("999999") is None
    assert [s.event["id"] for s in store.select("siem", siem_ids[1:])] == [1, 2]

    # replay: back on the work stream although the originals were published moments ago
    # (inside the duplicate window): the replay has message ids of its own
    q = JetStreamQueue("siem", client)
    q.publish(events(0, 3))
    assert len(drain(q, 3)) == 3 and q.unconfirmed == 0
    # the consumer leader confirms an ack before the stream's replicas delete the message
    wait_for(lambda: q.stats().events == 0, 10, "acked messages leaving the work queue")
    replayed = []

    def publish(output: str, evs: list[dict], msg_ids: list[str]) -> bool:
        if output != "siem":
            return False
        q.publish(evs, msg_ids=msg_ids)
        replayed.extend(msg_ids)
        return True

    done, skipped = store.replay(store.select(None, None), publish)
    assert (done, skipped) == (3, ["webhook"])
    assert q.duplicates == 0 and sorted(ids(drain(q, 3))) == [0, 1, 2]
    assert replayed == replay_ids(listed[:3])
    assert store.counts() == {"webhook": 2}

    assert store.remove("webhook", {web_ids[0], siem_ids[0]}) == 1  # another output's id: kept
    assert store.purge("webhook") == 1 and store.counts() == {}
    store.add("siem", letters(events(20, 2)))
    assert store.purge() == 2 and list(store.list()) == []


def test_a_full_dead_letter_stream_refuses_and_keeps_nothing(
    nats_node: Rig, clients: Clients
) -> None:
    store = JetStreamDeadLetters(clients(nats_node, dlq_max_bytes=2048))
    store.add("siem", letters(events(0, 2)))
    with pytest.raises(DeadLetterFull):
        store.add("siem", letters(events(2, 20)))
    assert store.counts() == {"siem": 2} and store.refused_full == 1


class Picky(Output):
    """Fails the first send (the peer is not up); then rejects for good every event whose id
    is a multiple of 5 (a ``PartialFailure``) and takes the rest."""

    def __init__(self) -> None:
        super().__init__("siem", {}, OutputContext(data_dir=Path("."), config_dir=Path(".")))
        self.lock = threading.Lock()
        self.sends = 0
        self.accepted: list[int] = []

    def send(self, evs: list[dict]) -> None:
        with self.lock:
            self.sends += 1
            if self.sends == 1:
                raise ConnectionError("peer not up yet")
            self.accepted += [e["id"] for e in evs if e["id"] % 5]
        rejected = {i: PermanentFailure("rejected") for i, e in enumerate(evs) if e["id"] % 5 == 0}
        if rejected:
            raise PartialFailure(rejected=rejected)


def test_an_unchanged_worker_delivers_retries_and_dead_letters_through_the_cluster(
    nats_cluster: Rig, clients: Clients
) -> None:
    client = clients(nats_cluster)
    q, store, out = JetStreamQueue("siem", client), JetStreamDeadLetters(client), Picky()
    options = DeliveryOptions(batch=20, retry_initial=0.05, retry_max=0.1)
    worker = Worker("siem", out, q, store, options, Log())
    q.publish(events(0, 50))
    worker.start()
    try:
        wait_for(lambda: len(out.accepted) == 40, 15, "40 delivered")
        wait_for(lambda: store.counts().get("siem") == 10, 10, "10 dead letters")
        wait_for(lambda: q.stats().events == 0, 10, "an empty work queue")
    finally:
        assert worker.stop(time.monotonic() + 5)
        q.close()
    assert sorted(out.accepted) == [i for i in range(50) if i % 5]
    dead = list(store.list("siem"))
    assert sorted(s.event["id"] for s in dead) == list(range(0, 50, 5))
    assert {s.attempts for s in dead} <= {1, 2}  # JetStream's delivery count
    assert 2 in {s.attempts for s in dead}  # the first batch was delivered twice
