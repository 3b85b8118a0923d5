"""Stateful property tests: each backend against a tiny reference model of the queue.

The model knows, per unacked event id, whether it is leased, nak'ed (due now), parked (nak'ed
with a long delay) or fresh, and for the memory queue with a spill directory whether it came
back from the spill. Event ids grow with publish order, as seqs must. "crash" (disk) drops the
queue without closing it; "restart" closes and reopens it.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dsrouter.delivery import disklog
from dsrouter.delivery.diskqueue import DiskQueue, read_records
from dsrouter.delivery.memqueue import MemoryQueue, estimate_size
from dsrouter.delivery.queue import UNLIMITED, Queue, QueueFull, Record

# Hypothesis imports libcst to print a patch for a failing example; its DeprecationWarning
# would turn into an INTERNALERROR under "warnings as errors" and hide the failure.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

MAX_EVENTS = 10


@dataclass
class M:
    size: int
    raw: int
    state: str = "fresh"  # fresh | naked | parked | leased
    spilled: bool = False
    fetches: int = 0  # since the last (re)open


class QueueModel(RuleBasedStateMachine):
    backend = "disk"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="dsq-model-"))
        self.max_bytes = 1500 if self.backend == "disk" else 4000
        self.q: Queue | None = self.open()
        self.m: dict[int, M] = {}  # unacked event id -> model record
        self.held: dict[int, Record] = {}  # what the "workers" hold, by id
        self.next_id = 0
        self.seq_of: dict[int, int] = {}  # id -> seq, as far as seen (reset when it moves)
        self.id_of: dict[int, int] = {}  # seq -> id, for every seq ever seen (never reused)

    def open(self) -> Queue:
        if self.backend == "disk":
            return DiskQueue("d", self.dir, MAX_EVENTS, self.max_bytes, 300, "never")
        spill = self.dir if self.backend == "memory-spill" else None
        return MemoryQueue("m", MAX_EVENTS, self.max_bytes, spill_dir=spill)

    def teardown(self) -> None:
        if self.q is not None:
            self.q.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def queue(self) -> Queue:
        assert self.q is not None
        return self.q

    def counted(self) -> list[M]:
        """Records that count against the limits (not those drained from a spill)."""
        return [r for r in self.m.values() if not r.spilled]

    def size(self, ev: dict, payload: bytes | None) -> int:
        if payload is not None:
            return len(payload)
        return estimate_size(ev) if self.backend.startswith("memory") else len(orjson.dumps(ev))

    # -- rules ----------------------------------------------------------------------------

    @rule(n=st.integers(1, 4), raw=st.integers(0, 150), with_payloads=st.booleans())
    def publish(self, n: int, raw: int, with_payloads: bool) -> None:
        evs: list[dict] = [{"id": self.next_id + i, "raw": "r" * raw} for i in range(n)]
        payloads = [orjson.dumps(e) + b" " for e in evs] if with_payloads else None
        sizes = [self.size(e, payloads[i] if payloads else None) for i, e in enumerate(evs)]
        mine = self.counted()
        full = bool(mine) and (
            len(mine) + n > MAX_EVENTS or sum(r.size for r in mine) + sum(sizes) > self.max_bytes
        )
        try:
            self.queue.publish(evs, payloads)
        except QueueFull:
            assert full
            return
        assert not full
        for e, size in zip(evs, sizes, strict=True):
            self.m[e["id"]] = M(size, raw)
        self.next_id += n

    def expected_order(self) -> list[int]:
        by = sorted(self.m)

        def pick(state: str, spilled: bool) -> list[int]:
            return [i for i in by if self.m[i].state == state and self.m[i].spilled == spilled]

        return (
            pick("naked", False) + pick("naked", True) + pick("fresh", True) + pick("fresh", False)
        )

    @rule(n=st.integers(1, 6))
    def fetch(self, n: int) -> None:
        got = self.queue.fetch(n, 0)
        assert [r.event["id"] for r in got] == self.expected_order()[:n]
        for r in got:
            i = r.event["id"]
            rec = self.m[i]
            rec.fetches += 1
            rec.state = "leased"
            assert r.attempts == rec.fetches and r.size == rec.size
            assert self.seq_of.setdefault(i, r.seq) == r.seq  # stable while it stays put
            assert self.id_of.setdefault(r.seq, i) == i  # no seq is ever reused
            self.held[i] = r

    def choose(self, data: st.DataObject) -> list[int]:
        """Some of the held records, by id."""
        if not self.held:
            return []
        return data.draw(st.lists(st.sampled_from(sorted(self.held)), unique=True))

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        chosen = self.choose(data)
        self.queue.ack([self.held.pop(i) for i in chosen])
        for i in chosen:
            del self.m[i]

    @rule(data=st.data(), park=st.booleans())
    def nak(self, data: st.DataObject, park: bool) -> None:
        chosen = self.choose(data)
        self.queue.nak([self.held.pop(i) for i in chosen], delay=3600.0 if park else 0.0)
        for i in chosen:
            self.m[i].state = "parked" if park else "naked"

    @rule(events=st.integers(0, 6), nbytes=st.integers(0, 1200))
    def evict(self, events: int, nbytes: int) -> None:
        mine = self.counted()
        need_e = max(len(mine) + events - MAX_EVENTS, 0)
        need_b = max(sum(r.size for r in mine) + nbytes - self.max_bytes, 0)
        victims: list[int] = []
        freed = 0
        for i in sorted(self.m):
            if len(victims) >= need_e and freed >= need_b:
                break
            r = self.m[i]
            if r.state != "leased" and not r.spilled:
                victims.append(i)
                freed += r.size
        assert self.queue.evict_oldest(events, nbytes) == len(victims)
        for i in victims:
            del self.m[i]

    def reopened(self, lose_memory: bool) -> None:
        """What the model expects after the queue came back (spilled, recovered or lost)."""
        self.held.clear()
        if self.backend != "disk":
            self.seq_of.clear()  # a new memory queue numbers afresh, above its spill's seqs
            self.id_of.clear()
        for i, r in list(self.m.items()):
            if not r.spilled and self.backend != "disk" and lose_memory:
                del self.m[i]
                continue
            if not r.spilled and self.backend == "memory-spill":
                r.spilled = True  # written to the spill at close: its JSON is its size now
                r.size = len(orjson.dumps({"id": i, "raw": "r" * r.raw}))
            r.state, r.fetches = "fresh", 0

    @rule()
    def restart(self) -> None:
        self.queue.close()
        self.q = self.open()
        self.reopened(lose_memory=self.backend == "memory")

    @precondition(lambda self: self.backend != "memory")
    @rule()
    def crash(self) -> None:
        dropped = weakref.ref(self.queue)
        self.q = None  # dropped without close: a memory queue's own records are gone
        assert dropped() is None  # no reference cycle: its files went at once, like a kill
        self.q = self.open()
        self.reopened(lose_memory=True)

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def stats_match(self) -> None:
        s = self.queue.stats()
        assert s.events == len(self.m)
        assert s.bytes == sum(r.size for r in self.m.values())
        assert s.in_flight == len(self.held) == sum(r.state == "leased" for r in self.m.values())
        assert (s.oldest_enqueued_at is None) == (not self.m)
        mine = self.counted()
        assert self.queue.room() == (
            max(MAX_EVENTS - len(mine), 0),
            max(self.max_bytes - sum(r.size for r in mine), 0),
        )
        assert UNLIMITED not in self.queue.room()

    @invariant()
    def seqs_grow_with_publish_order(self) -> None:
        pairs = sorted(self.seq_of.items())
        assert [s for _, s in pairs] == sorted(s for _, s in pairs)

    @invariant()
    def the_files_hold_exactly_the_unacked_records(self) -> None:
        """The ack state is written through, so the files are exact at every step."""
        if self.backend != "memory":
            on_disk = [r.event["id"] for r in read_records(self.dir)]
            disk = self.backend == "disk"
            assert on_disk == sorted(i for i, r in self.m.items() if disk or r.spilled)


SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class DiskModel(QueueModel):
    backend = "disk"


class DiskFreshBoundModel(QueueModel):
    """The disk queue with a tiny in-memory tail of fresh records: the reader keeps switching
    between records it takes from memory and records it reads back from the files."""

    backend = "disk"

    def __init__(self) -> None:
        self.saved, disklog.FRESH_BYTES = disklog.FRESH_BYTES, 120
        super().__init__()

    def teardown(self) -> None:
        super().teardown()
        disklog.FRESH_BYTES = self.saved


class MemoryModel(QueueModel):
    backend = "memory"


class SpillModel(QueueModel):
    backend = "memory-spill"


TestDiskQueueModel = DiskModel.TestCase
TestDiskQueueModel.settings = SETTINGS
TestDiskFreshBoundModel = DiskFreshBoundModel.TestCase
TestDiskFreshBoundModel.settings = SETTINGS
TestMemoryQueueModel = MemoryModel.TestCase
TestMemoryQueueModel.settings = SETTINGS
TestSpillQueueModel = SpillModel.TestCase
TestSpillQueueModel.settings = SETTINGS
