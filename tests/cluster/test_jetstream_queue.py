"""JetStreamQueue on a real 3-node JetStream cluster (R3) and a single server, on loopback."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from dsrouter.delivery.jetstream import EventTooLarge, JetStreamQueue
from dsrouter.delivery.jetstream_conn import (
    ClusterOptions,
    ClusterUnavailable,
    JetStreamClient,
    release_client,
    shared_client,
)
from dsrouter.delivery.queue import QueueFull, Record

from ..delivery.support import wait_for
from .conftest import Clients
from .natsrig import Rig


def events(first: int, n: int, raw: str = "x" * 100) -> list[dict]:
    """Events as the pipeline makes them: ``event_id`` stamped last."""
    return [
        {"id": i, "raw": raw, "event_id": f"18c0ffee0001-{i:x}"} for i in range(first, first + n)
    ]


def ids(records: list[Record]) -> list[int]:
    return [r.event["id"] for r in records]


def stream_info(client: JetStreamClient, subject: str | None = None) -> dict:
    body = {"subjects_filter": subject} if subject else None
    return client.call(client.api(f"STREAM.INFO.{client.options.stream}", body), 10)


def drain(q: JetStreamQueue, want: int, timeout: float = 10.0) -> list[Record]:
    """Fetch and ack until ``want`` records came (or the time is up)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        batch = q.fetch(200, 0.5)
        q.ack(batch)
        got += batch
    return got


def test_a_retried_publish_is_stored_once(nats_cluster: Rig, clients: Clients) -> None:
    client = clients(nats_cluster)
    q = JetStreamQueue("siem", client)
    batch = events(0, 50)
    q.publish(batch)
    q.publish(batch)  # the engine retrying a batch whose acknowledgement it never saw
    payloads = [orjson.dumps(e) for e in batch]
    q.publish(None, payloads)  # from a parser process: same ids, read from the payloads
    assert q.duplicates == 100
    info = stream_info(client, q.subject)
    assert info["config"]["num_replicas"] == 3 and info["cluster"]["replicas"]
    assert info["state"]["subjects"] == {q.subject: 50}
    got = drain(q, 50)
    assert sorted(ids(got)) == list(range(50))
    assert q.fetch(10, 0.2) == []
    # the same events for another output are other messages of the same stream
    other = JetStreamQueue("archive", client)
    other.publish(batch[:5])
    assert other.duplicates == 0 and other.stats().events == 5


def test_ack_nak_and_redelivery_count_attempts(nats_cluster: Rig, clients: Clients) -> None:
    q = JetStreamQueue("siem", clients(nats_cluster))
    q.publish(events(0, 3))
    first = q.fetch(10, 2.0)
    assert ids(first) == [0, 1, 2] and [r.attempts for r in first] == [1, 1, 1]
    assert first[0].seq < first[1].seq < first[2].seq
    assert all(abs(r.enqueued_at - time.time()) < 5 for r in first)
    q.ack(first[:1])
    q.nak(first[1:2], delay=0.0)
    q.nak(first[2:], delay=0.4)
    again = q.fetch(10, 2.0)
    assert ids(again) == [1] and again[0].attempts == 2 and again[0].seq == first[1].seq
    t = time.monotonic()
    later = q.fetch(10, 3.0)
    assert ids(later) == [2] and later[0].attempts == 2
    assert 0.2 < time.monotonic() - t < 2.5
    q.nak(again + later)
    third = q.fetch(10, 2.0)
    assert sorted((r.event["id"], r.attempts) for r in third) == [(1, 3), (2, 3)]
    assert q.stats().in_flight == 2
    q.ack(third)
    wait_for(lambda: q.stats().events == 0, 5, "acked messages leaving the work queue")
    assert q.stats().in_flight == 0


def test_two_processes_sharing_one_consumer_get_disjoint_records(
    nats_cluster: Rig, clients: Clients
) -> None:
    a = clients(nats_cluster)
    b = clients(nats_cluster, stream=a.options.stream)  # another process, same cluster config
    qa, qb = JetStreamQueue("siem", a), JetStreamQueue("siem", b)
    assert qa.fetch(1, 0) == qb.fetch(1, 0) == []  # both delivery processes are up
    total = 2000
    for i in range(0, total, 250):
        (qa if i % 500 else qb).publish(events(i, 250))
    seen: dict[str, list[int]] = {"a": [], "b": []}
    lock = threading.Lock()
    stop = time.monotonic() + 20

    def work(name: str, q: JetStreamQueue) -> None:
        while time.monotonic() < stop:
            with lock:
                if len(seen["a"]) + len(seen["b"]) >= total:
                    return
            got = q.fetch(50, 0.2)
            with lock:
                seen[name] += ids(got)
            time.sleep(0.002 * bool(got))  # the send
            q.ack(got)

    threads = [
        threading.Thread(target=work, args=(name, q))
        for name, q in (("a", qa), ("a", qa), ("b", qb), ("b", qb))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(25)
    assert not set(seen["a"]) & set(seen["b"]), (qa.last_error, qb.last_error)
    assert sorted(seen["a"] + seen["b"]) == list(range(total))
    assert seen["a"] and seen["b"], (len(seen["a"]), qa.last_error, qb.last_error)


def test_a_lease_renewed_while_held_and_redelivered_after_a_process_dies(
    nats_cluster: Rig, clients: Clients
) -> None:
    a = clients(nats_cluster, ack_wait=1.5)
    b = clients(nats_cluster, ack_wait=1.5, stream=a.options.stream)
    qa, qb = JetStreamQueue("siem", a), JetStreamQueue("siem", b)
    qa.publish(events(0, 2))
    held = qa.fetch(2, 2.0)
    assert ids(held) == [0, 1]
    # a long send: qa renews its leases (+WPI every ack_wait / 3), so nothing moves to b
    assert qb.fetch(10, 3.0) == []  # twice ack_wait
    qa.ack(held[:1])
    a.close()  # the process dies holding id 1: no nak, its lease just stops being renewed
    t = time.monotonic()
    again = qb.fetch(10, 5.0)
    assert ids(again) == [1] and again[0].attempts == 2
    assert time.monotonic() - t < 3.0
    qb.ack(again)


def test_queue_full_from_the_limits_and_from_the_stream(nats_node: Rig, clients: Clients) -> None:
    q = JetStreamQueue("siem", clients(nats_node), max_events=100)
    q.publish(events(0, 90))
    with pytest.raises(QueueFull):
        q.publish(events(90, 20))
    assert q.stats().events == 90 and q.room()[0] == 10
    assert q.evict_oldest(20, 0) == 10  # room for 20: the oldest 10 go
    assert q.stats().evicted == 10 and q.stats().events == 80
    q.publish(events(90, 20))
    assert sorted(ids(drain(q, 100))) == list(range(10, 110))
    # the stream's own cap (stream_max_bytes, discard new) refuses at the server
    capped = JetStreamQueue("siem", clients(nats_node, stream_max_bytes=4096))
    capped.publish(events(0, 10))
    with pytest.raises(QueueFull, match="full"):
        capped.publish(events(10, 40))


def test_too_large_events_publish_nothing(nats_node: Rig, clients: Clients) -> None:
    q = JetStreamQueue("siem", clients(nats_node))
    batch = events(0, 3)
    batch[1]["raw"] = "y" * (2 << 20)  # over the default max_payload of 1 MiB
    with pytest.raises(EventTooLarge) as caught:
        q.publish(batch)
    assert caught.value.indexes == [1]
    assert q.stats().events == 0


def test_a_deleted_consumer_is_made_again(nats_node: Rig, clients: Clients) -> None:
    client = clients(nats_node)
    q = JetStreamQueue("siem", client)
    q.publish(events(0, 2))
    q.ack(q.fetch(1, 1.0))
    client.call(client.api(f"CONSUMER.DELETE.{client.options.stream}.siem"), 10)
    got: list[Record] = []
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:  # unanswered pulls, then a new consumer
        got = q.fetch(10, 0.5)
    assert ids(got) == [1]
    q.ack(got)


def test_replicas_are_reduced_to_what_the_cluster_has(nats_node: Rig, clients: Clients) -> None:
    client = clients(nats_node, replicas=3)
    q = JetStreamQueue("siem", client)
    q.publish(events(0, 1))
    assert stream_info(client)["config"]["num_replicas"] == 1


def test_publish_fails_fast_while_the_cluster_is_down_then_works(
    nats_binary: str, tmp_path
) -> None:
    rig = Rig(nats_binary, tmp_path, 1)
    opts = ClusterOptions(tuple(n.url for n in rig.nodes), replicas=1)
    client = shared_client(opts)  # one per process: every queue of the process shares it
    assert shared_client(opts) is client
    release_client(client)
    try:
        q = JetStreamQueue("siem", client)
        t = time.monotonic()
        with pytest.raises(ClusterUnavailable):
            q.publish(events(0, 5))  # an OSError: the engine holds the batch (back-pressure)
        assert q.fetch(10, 0.2) == [] and time.monotonic() - t < 2.0
        assert "connect" in client.last_error.lower()
        rig.start()  # the cluster comes up after the router: the client connects by itself
        assert client.wait_connected(10)
        q.publish(events(0, 5))
        assert sorted(ids(drain(q, 5))) == list(range(5))
    finally:
        release_client(client)  # the last reference closes it
        rig.close()
    assert not client.connected


def test_batches_submitted_together_are_stored_in_the_order_they_came(
    nats_cluster: Rig, clients: Clients
) -> None:
    # with limits, every publish first asks the stream for its usage: answers that come back
    # in another order must not reorder the batches (docs/cluster.md)
    q = JetStreamQueue("siem", clients(nats_cluster), max_events=1_000_000)
    futures = [q.submit(events(i * 20, 20)) for i in range(60)]
    for future in futures:
        future.result(30)
    assert ids(drain(q, 1200)) == list(range(1200))
