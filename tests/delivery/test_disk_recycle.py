"""Disk queue segment files written over as new segments (spares): nothing of a file's older
life is ever read back, through restarts, crashes and the offline reader."""

from __future__ import annotations

import gc
from pathlib import Path

from dsrouter.delivery.diskfiles import SPARES
from dsrouter.delivery.diskqueue import DiskQueue, read_records

from .test_diskqueue import drain, event, open_q, segment_files


def spares(d: Path) -> list[Path]:
    return sorted(d.glob("spare.*"))


def test_acked_segments_are_written_over_and_every_record_comes_once(tmp_path: Path) -> None:
    q = open_q(tmp_path, segment_bytes=1000)
    names: dict[int, set[str]] = {}  # inode -> the segment names it has had
    delivered: list[int] = []
    for round_ in range(20):
        base = round_ * 30
        for i in range(0, 30, 3):
            q.publish([event(base + i + j, raw_len=40 + 37 * (round_ % 4)) for j in range(3)])
            for f in segment_files(tmp_path):
                names.setdefault(f.stat().st_ino, set()).add(f.name)
        delivered += drain(q)
        assert len(spares(tmp_path)) <= SPARES
    assert max(len(n) for n in names.values()) > 1, "no segment was written over"
    assert delivered == list(range(600))
    q.close()


def test_a_crash_in_recycled_segments_brings_back_only_their_new_records(tmp_path: Path) -> None:
    q: DiskQueue | None = open_q(tmp_path, segment_bytes=2000)
    assert q is not None
    q.publish([event(i, raw_len=400) for i in range(8)])  # segment 1: ~3.5 KB of long records
    q.publish([event(8)])  # segment 2
    assert drain(q) == list(range(9))  # segment 1 acked: a spare
    assert len(spares(tmp_path)) == 1
    q.publish([event(i, raw_len=400) for i in range(9, 14)])  # segment 2 fills up
    q.publish([event(14), event(15)])  # segment 3: the spare, written over from its start
    assert not spares(tmp_path)
    recycled = segment_files(tmp_path)[-1]
    assert recycled.stat().st_size > 3000  # two short records, then the older life's bytes
    q.publish([event(i, raw_len=400) for i in range(16, 21)])  # segment 3 full at ~2.4 KB
    q.publish([event(21)])  # segment 4: segment 3 is cut to its new records as it rolls
    q.ack(q.fetch(5, 0))  # ids 9-13 acked: segment 2 goes
    q = None  # dropped unclosed: a crash
    gc.collect()
    q = open_q(tmp_path, segment_bytes=2000)
    st = q.stats()
    assert (st.recovered, st.corrupt) == (8, 0)
    assert [r.event["id"] for r in read_records(tmp_path)] == list(range(14, 22))
    assert 2000 < recycled.stat().st_size < 3000
    assert drain(q) == list(range(14, 22))
    q.close()


def test_a_crash_between_reuse_and_first_write_resurrects_nothing(tmp_path: Path) -> None:
    q = open_q(tmp_path, segment_bytes=500)
    q.publish([event(i, raw_len=200) for i in range(3)])
    q.publish([event(3)])
    assert drain(q) == [0, 1, 2, 3]
    spare = spares(tmp_path)[0]
    q.close()
    # as if the spare had just become segment 100 when the process died, and the ack state
    # were lost too (which makes every record found unacked): only old records
    spare.rename(tmp_path / f"{100:020d}.seg")
    (tmp_path / "state").unlink()
    q = open_q(tmp_path, segment_bytes=500)
    # id 3 is in the live segment: a lost state brings it back (duplicates, not loss)
    assert [r.event["id"] for r in read_records(tmp_path)] == [3]
    assert drain(q) == [3]
    q.publish([event(4)])
    assert drain(q) == [4]
    q.close()


def test_spares_left_by_an_earlier_process_are_deleted(tmp_path: Path) -> None:
    q = open_q(tmp_path, segment_bytes=300)
    for i in range(12):
        q.publish([event(i, raw_len=120)])
    assert drain(q) == list(range(12))
    assert spares(tmp_path)
    q.close()
    q = open_q(tmp_path, segment_bytes=300)
    assert not spares(tmp_path)
    q.publish([event(12)])
    assert drain(q) == [12]
    q.close()
