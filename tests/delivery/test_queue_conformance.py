"""One suite for every queue backend: the semantics of dsrouter.delivery.queue.Queue."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from dsrouter.delivery.diskqueue import DiskQueue
from dsrouter.delivery.jetstream import JetStreamQueue
from dsrouter.delivery.jetstream_conn import ApiError, ClusterOptions, JetStreamClient
from dsrouter.delivery.memqueue import MemoryQueue, estimate_size
from dsrouter.delivery.queue import UNLIMITED, Queue, QueueFull

from ..cluster.natsrig import Rig, nats_server_path

Make = Callable[..., Queue]

BACKENDS = ["memory", "memory-spill", "disk-never", "disk-interval", "disk-always", "jetstream"]
_streams = itertools.count(1)


def event(i: int, raw_len: int = 40) -> dict:
    return {"id": i, "raw": "x" * raw_len, "host": "h"}


def size_of(q: Queue, ev: dict) -> int:
    return estimate_size(ev) if isinstance(q, MemoryQueue) else len(orjson.dumps(ev))


def stored_of(q: Queue, ev: dict | bytes) -> int:
    """What an event (or a payload) counts in ``stats().bytes`` and against ``max_bytes``:
    its record size, except on JetStream, which counts what its stream stores for the
    message — the payload plus the subject, the ``Nats-Msg-Id`` header and the file store's
    record framing, a constant per message here (every queue of this suite has a subject and
    message ids of the same length), measured once on a probe stream."""
    size = len(ev) if isinstance(ev, bytes) else size_of(q, ev)
    return size + _js_overhead(q) if isinstance(q, JetStreamQueue) else size


_overheads: dict[int, int] = {}


def _js_overhead(q: JetStreamQueue) -> int:
    key = len(q.subject)
    if key not in _overheads:
        probe = _js_queue(q.client.options.servers, "p" + q.stream[1:])
        try:
            ev = event(0)
            probe.publish([ev])
            _overheads[key] = probe.stats().bytes - size_of(probe, ev)
        finally:
            _drop_js_queue(probe)
    return _overheads[key]


def _js_queue(
    servers: tuple[str, ...], stream: str, max_events: int = 0, max_bytes: int = 0
) -> JetStreamQueue:
    client = JetStreamClient(ClusterOptions(servers, stream=stream, replicas=1)).start()
    assert client.wait_connected(10)
    return JetStreamQueue("m", client, max_events, max_bytes)


def _drop_js_queue(q: JetStreamQueue) -> None:
    q.close()
    try:
        q.client.call(q.client.api(f"STREAM.DELETE.{q.stream}"), 10)
    except ApiError as exc:  # a queue never used has no stream
        assert exc.not_found
    q.client.close()


@pytest.fixture(scope="session")
def nats_single(tmp_path_factory) -> Iterator[Rig]:
    """One JetStream server for the whole session (each queue gets its own stream)."""
    rig = Rig(nats_server_path(), tmp_path_factory.mktemp("nats"), 1)
    try:
        rig.start()
        yield rig
    finally:
        rig.close()


@pytest.fixture(params=BACKENDS)
def make(request, tmp_path: Path) -> Iterator[Make]:
    made: list[Queue] = []

    def factory(max_events: int = 0, max_bytes: int = 0) -> Queue:
        kind = request.param
        d = tmp_path / f"q{len(made)}"
        q: Queue
        if kind == "jetstream":
            rig = request.getfixturevalue("nats_single")
            q = _js_queue(tuple(rig.urls), f"c{next(_streams):06d}", max_events, max_bytes)
        elif kind == "memory":
            q = MemoryQueue("m", max_events, max_bytes)
        elif kind == "memory-spill":
            q = MemoryQueue("m", max_events, max_bytes, spill_dir=d)
        else:
            fsync: dict[str, float | str] = {
                "disk-never": "never",
                "disk-interval": 0.02,
                "disk-always": "always",
            }
            q = DiskQueue("d", d, max_events, max_bytes, fsync=fsync[kind])
        made.append(q)
        return q

    yield factory
    for q in made:
        if isinstance(q, JetStreamQueue):
            _drop_js_queue(q)
        else:
            q.close()


def seqs(records) -> list[int]:
    return [r.seq for r in records]


def ids(records) -> list[int]:
    return [r.event["id"] for r in records]


def test_fetch_returns_records_oldest_first_with_increasing_seqs(make: Make) -> None:
    q = make()
    q.publish([event(i) for i in range(5)])
    q.publish([event(i) for i in range(5, 8)])
    got = q.fetch(10, 0)
    assert ids(got) == list(range(8))
    assert seqs(got) == sorted(set(seqs(got)))
    assert all(r.attempts == 1 for r in got)
    assert all(r.enqueued_at <= time.time() for r in got)
    assert got[0].size == size_of(q, event(0))


def test_fetch_respects_max_events_and_leases_each_record_once(make: Make) -> None:
    q = make()
    q.publish([event(i) for i in range(5)])
    first, second, third = q.fetch(2, 0), q.fetch(2, 0), q.fetch(2, 0)
    assert (ids(first), ids(second), ids(third)) == ([0, 1], [2, 3], [4])
    assert q.fetch(2, 0) == []
    assert q.stats().in_flight == 5


def test_payload_sizes_count_when_given(make: Make) -> None:
    q = make()
    evs = [event(1), event(2)]
    payloads = [orjson.dumps(e) + b"  " for e in evs]  # sizes differ from a fresh dumps
    q.publish(evs, payloads)
    assert q.stats().bytes == sum(stored_of(q, p) for p in payloads)
    assert [r.size for r in q.fetch(5, 0)] == [len(p) for p in payloads]


def test_mismatched_payloads_commit_nothing(make: Make) -> None:
    q = make()
    with pytest.raises(ValueError):
        q.publish([event(1), event(2)], [b"{}"])
    assert q.stats().events == 0 and q.fetch(5, 0) == []


def test_fetch_times_out_with_an_empty_list(make: Make) -> None:
    q = make()
    t = time.monotonic()
    assert q.fetch(5, 0.1) == []
    assert time.monotonic() - t >= 0.09


def test_fetch_waits_for_a_publish(make: Make) -> None:
    q = make()
    threading.Timer(0.05, lambda: q.publish([event(7)])).start()
    t = time.monotonic()
    got = q.fetch(5, 5.0)
    assert ids(got) == [7]
    assert time.monotonic() - t < 2.0


@pytest.mark.parametrize("how", ["wake", "close"])
def test_wake_and_close_release_a_waiting_fetch(make: Make, how: str) -> None:
    q = make()
    out: list = []
    t = threading.Thread(target=lambda: out.append(q.fetch(5, 10.0)))
    t.start()
    time.sleep(0.05)
    start = time.monotonic()
    getattr(q, how)()
    t.join(5)
    assert not t.is_alive() and out == [[]]
    assert time.monotonic() - start < 2.0


def test_ack_removes_for_good_even_out_of_order(make: Make) -> None:
    q = make()
    q.publish([event(i) for i in range(6)])
    got = q.fetch(6, 0)
    q.ack([got[4], got[1]])
    q.ack([got[5]])
    assert q.stats().events == 3
    q.nak([got[0], got[2], got[3]])
    again = q.fetch(10, 0)
    assert ids(again) == [0, 2, 3]
    q.ack(again)
    q.ack(again)  # acking twice is harmless
    st = q.stats()
    assert (st.events, st.bytes, st.in_flight, st.oldest_enqueued_at) == (0, 0, 0, None)


def test_nak_offers_again_before_new_records_in_seq_order(make: Make) -> None:
    q = make()
    q.publish([event(i) for i in range(4)])
    got = q.fetch(3, 0)
    q.nak([got[2], got[0]])
    q.publish([event(9)])
    again = q.fetch(10, 0)
    assert ids(again) == [0, 2, 3, 9]
    assert [r.attempts for r in again] == [2, 2, 1, 1]
    assert seqs(again)[:2] == [got[0].seq, got[2].seq]


def test_nak_delay_holds_records_back(make: Make) -> None:
    q = make()
    q.publish([event(1), event(2)])
    got = q.fetch(2, 0)
    q.nak([got[0]], delay=0.3)
    q.nak([got[1]], delay=0.0)
    assert ids(q.fetch(5, 0)) == [2]
    assert q.fetch(5, 0) == []
    t = time.monotonic()
    later = q.fetch(5, 5.0)  # wakes by itself when the delay ends
    assert ids(later) == [1] and later[0].attempts == 2
    assert 0.1 < time.monotonic() - t < 2.0


def test_nak_of_records_not_in_flight_is_ignored(make: Make) -> None:
    q = make()
    q.publish([event(1)])
    got = q.fetch(1, 0)
    q.nak(got)
    q.nak(got)  # second nak: not leased any more
    assert ids(q.fetch(5, 0)) == [1]
    assert q.fetch(5, 0) == []


def test_queue_full_commits_nothing(make: Make) -> None:
    q = make(max_events=3)
    q.publish([event(1), event(2)])
    with pytest.raises(QueueFull):
        q.publish([event(3), event(4)])
    assert q.stats().events == 2
    q.publish([event(3)])
    assert ids(q.fetch(10, 0)) == [1, 2, 3]


def test_max_bytes_limit(make: Make) -> None:
    q = make()
    one = stored_of(q, event(1))
    q = make(max_bytes=2 * one + 1)
    q.publish([event(1), event(2)])
    assert q.room()[1] == 1
    with pytest.raises(QueueFull):
        q.publish([event(3)])
    assert q.stats().bytes == 2 * one


def test_an_oversize_batch_is_accepted_into_an_empty_queue(make: Make) -> None:
    q = make(max_events=2, max_bytes=10)
    q.publish([event(i) for i in range(5)])
    assert q.stats().events == 5
    assert q.room() == (0, 0)  # never negative
    with pytest.raises(QueueFull):
        q.publish([event(9)])


def test_room(make: Make) -> None:
    assert make().room() == (UNLIMITED, UNLIMITED)
    q = make(max_events=10)
    q.publish([event(1), event(2)])
    assert q.room() == (8, UNLIMITED)
    q.ack(q.fetch(1, 0))
    assert q.room() == (9, UNLIMITED)


def test_evict_oldest_skips_records_in_flight(make: Make) -> None:
    q = make(max_events=5)
    q.publish([event(i) for i in range(5)])
    leased = q.fetch(2, 0)  # ids 0, 1
    q.nak([leased[1]])  # id 1 is back, waiting
    assert q.evict_oldest(2, 0) == 2  # ids 1 and 2: the oldest not in flight
    assert q.room()[0] == 2
    st = q.stats()
    assert (st.events, st.in_flight, st.evicted) == (3, 1, 2)
    q.ack(leased[:1])
    assert ids(q.fetch(10, 0)) == [3, 4]


def test_evict_oldest_frees_bytes_and_stops_when_nothing_is_left(make: Make) -> None:
    q = make()
    one = stored_of(q, event(0))
    q = make(max_bytes=4 * one)
    q.publish([event(i) for i in range(4)])
    assert q.evict_oldest(0, one + 1) == 2
    assert q.room()[1] >= one + 1
    assert ids(q.fetch(10, 0)) == [2, 3]
    assert q.evict_oldest(10, 0) == 0  # everything is in flight
    assert q.stats().evicted == 2


def test_evict_is_a_no_op_without_limits(make: Make) -> None:
    q = make()
    q.publish([event(1)])
    assert q.evict_oldest(100, 100) == 0 and q.stats().events == 1


def test_stats(make: Make) -> None:
    q = make()
    assert q.stats().oldest_enqueued_at is None
    before = time.time()
    q.publish([event(1), event(2, raw_len=100)])
    time.sleep(0.01)
    q.publish([event(3)])
    got = q.fetch(1, 0)
    st = q.stats()
    assert st.events == 3 and st.in_flight == 1
    assert st.bytes == sum(stored_of(q, event(i, 100 if i == 2 else 40)) for i in (1, 2, 3))
    assert st.oldest_enqueued_at is not None and before <= st.oldest_enqueued_at <= time.time()
    q.ack(got)
    st2 = q.stats()
    assert st2.oldest_enqueued_at is not None and st2.oldest_enqueued_at >= st.oldest_enqueued_at
    assert (st2.evicted, st2.corrupt, st2.recovered) == (0, 0, 0)


def test_after_close(make: Make) -> None:
    q = make()
    q.publish([event(1)])
    q.close()
    assert q.fetch(5, 0.5) == []
    with pytest.raises(RuntimeError):
        q.publish([event(2)])
    q.close()  # idempotent


def test_concurrent_fetchers_get_every_record_exactly_once(make: Make) -> None:
    q = make()
    total, batch = 3000, 50
    delivered: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def worker() -> None:
        while True:
            got = q.fetch(37, 0.05)
            if not got and done.is_set():
                return
            if got and got[0].seq % 3 == 0 and got[0].attempts == 1:
                q.nak(got[:5])  # some go round again
                got = got[5:]
            with lock:
                delivered.extend(r.seq for r in got)
            q.ack(got)

    def publisher() -> None:
        for i in range(0, total, batch):
            q.publish([event(j) for j in range(i, i + batch)])
        done.set()

    workers = [threading.Thread(target=worker) for _ in range(3)]
    for t in [*workers, threading.Thread(target=publisher)]:
        t.start()
    for t in workers:
        t.join(30)
    assert not any(t.is_alive() for t in workers)
    assert len(delivered) == total and len(set(delivered)) == total
    assert q.stats().events == 0


# -- memory queue: spilling at close ------------------------------------------------------


def test_memory_spill_keeps_the_backlog_across_an_orderly_restart(tmp_path: Path) -> None:
    q = MemoryQueue("m", spill_dir=tmp_path)
    q.publish([event(i) for i in range(5)])
    got = q.fetch(3, 0)
    q.ack(got[:1])  # id 0 is done; ids 1, 2 stay in flight
    q.close()
    assert q.spilled == 4
    q2 = MemoryQueue("m", max_events=2, spill_dir=tmp_path)
    try:
        st = q2.stats()
        assert (st.events, st.recovered) == (4, 4)
        q2.publish([event(10), event(11)])  # spilled records do not count against the limit
        assert q2.room()[0] == 0 and q2.stats().events == 6
        first = q2.fetch(3, 0)
        assert ids(first) == [1, 2, 3] and all(r.attempts == 1 for r in first)
        assert q2.evict_oldest(1, 0) == 1  # id 10: the memory queue's own, not spilled id 4
        rest = q2.fetch(10, 0)
        assert ids(rest) == [4, 11]  # the spill drains before newer records
        assert max(seqs(first)) < min(seqs(rest))
        q2.ack(first[:2])
        q2.nak(first[2:] + rest[1:])
        assert q2.stats().in_flight == 1
    finally:
        q2.close()
    assert q2.spilled == 1
    q3 = MemoryQueue("m", spill_dir=tmp_path)
    try:  # 3 (nak'ed), 4 (in flight at close), then 11 (memory, spilled at close)
        assert ids(q3.fetch(10, 0)) == [3, 4, 11]
        assert q3.stats().recovered == 3
    finally:
        q3.close()


def test_memory_spill_keeps_enqueue_times(tmp_path: Path) -> None:
    q = MemoryQueue("m", spill_dir=tmp_path)
    q.publish([event(1)])
    t0 = q.stats().oldest_enqueued_at
    time.sleep(0.02)
    q.close()
    q2 = MemoryQueue("m", spill_dir=tmp_path)
    try:
        assert q2.stats().oldest_enqueued_at == t0
        assert q2.fetch(1, 0)[0].enqueued_at == t0
    finally:
        q2.close()


def test_memory_queue_without_spill_loses_its_backlog_at_close(tmp_path: Path) -> None:
    q = MemoryQueue("m")
    q.publish([event(1)])
    q.close()
    assert q.spilled == 0 and q.stats().events == 0
    assert not any(tmp_path.iterdir())


def test_memory_eviction_lets_go_of_the_evicted_events() -> None:
    q = MemoryQueue("m", max_events=10)
    for i in range(1000):  # drop_oldest with a stalled consumer
        q.evict_oldest(1, 0)
        q.publish([event(i)])
    assert q.stats().evicted == 990
    assert len(q._new) == 10  # nothing evicted is still referenced
    assert ids(q.fetch(100, 0)) == list(range(990, 1000))
