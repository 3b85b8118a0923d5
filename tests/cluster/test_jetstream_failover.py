"""SIGKILL of a JetStream node mid-stream: nothing JetStream acknowledged is lost."""

from __future__ import annotations

import threading
import time
from collections import Counter

from dsrouter.delivery.jetstream import JetStreamQueue

from .conftest import Clients
from .natsrig import Rig
from .test_jetstream_queue import events, ids, stream_info

BATCH = 50


class Publisher(threading.Thread):
    """A receiving router: publishes batches, retrying a failed one (same ids) until it is
    acknowledged; ``acked`` are the events whose publish returned."""

    def __init__(self, q: JetStreamQueue) -> None:
        super().__init__(daemon=True)
        self.q, self.acked, self.failures = q, [], 0
        self.longest_stall = 0.0  # seconds between two acknowledged batches, at most
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            first, last = 0, time.monotonic()
            while not self.stop.is_set():
                self._commit(events(first, BATCH))
                now = time.monotonic()
                self.longest_stall, last = max(self.longest_stall, now - last), now
                self.acked += range(first, first + BATCH)
                first += BATCH
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _commit(self, batch: list[dict]) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.q.publish(batch)
                return
            except OSError:
                self.failures += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


class Deliverer(threading.Thread):
    """A delivery worker: fetch, "send" (record the ids), ack."""

    def __init__(self, q: JetStreamQueue) -> None:
        super().__init__(daemon=True)
        self.q, self.delivered = q, Counter[int]()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            got = self.q.fetch(100, 0.2)
            self.delivered.update(ids(got))
            self.q.ack(got)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_sigkill_of_the_stream_leader_loses_no_acknowledged_publish(
    fresh_cluster: Rig, clients: Clients
) -> None:
    receiver = clients(fresh_cluster, request_timeout=2.0)
    deliverer = clients(
        fresh_cluster, request_timeout=2.0, ack_wait=2.0, stream=receiver.options.stream
    )
    qin, qout = JetStreamQueue("siem", receiver), JetStreamQueue("siem", deliverer)
    assert qout.fetch(1, 0) == []  # the consumer exists, R3 like its stream
    pub, work = Publisher(qin), Deliverer(qout)
    pub.start()
    work.start()
    try:
        wait_until(lambda: len(pub.acked) >= 1000 or pub.error, 20, "1000 committed events")
        info = stream_info(receiver)
        assert info["config"]["num_replicas"] == 3
        victim = fresh_cluster.node(info["cluster"]["leader"])
        victim.kill()  # SIGKILL the stream's leader mid-stream
        killed_at = len(pub.acked)
        wait_until(
            lambda: len(pub.acked) >= killed_at + 1000 or pub.error, 30, "commits after the kill"
        )
    finally:
        pub.stop.set()
        pub.join(40)
    assert pub.error is None, pub.error
    acked = set(pub.acked)
    try:
        wait_until(lambda: acked <= work.delivered.keys(), 20, "every committed event delivered")
    finally:
        work.stop.set()
        work.join(10)
    # the cluster goes on with 2 of 3 nodes: a new leader, and the queue still works
    after = stream_info(receiver)
    assert after["cluster"]["leader"] != victim.name
    more = events(10**6, 10)
    qin.publish(more)
    got = []
    wait_until(lambda: got.extend(qout.fetch(20, 0.2)) or len(got) >= 10, 10, "the last batch")
    qout.ack(got)
    assert sorted(ids(got)) == [e["id"] for e in more]
    # duplicates: publishes none (retried batches deduplicate); deliveries only of records
    # whose ack the dying leader did not confirm (or had not replicated yet)
    stored = sum(work.delivered.values())
    dups = stored - len(work.delivered)
    assert work.delivered.keys() == acked  # and nothing that was never committed
    assert dups <= qout.unconfirmed + 2 * 100, (dups, qout.unconfirmed)
    print(
        f"failover: publishing stalled {pub.longest_stall:.2f}s at most, {pub.failures} failed "
        f"publishes retried, {dups} duplicate deliveries, "
        f"{qout.unconfirmed} unconfirmed acks"
    )
