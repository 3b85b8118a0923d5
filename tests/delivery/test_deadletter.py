"""The dead-letter store: round trip, ids, corrupt lines, full disk, size cap, odd values."""

from __future__ import annotations

import ctypes
import decimal
import errno
import os
import sys
import threading
import uuid

import orjson
import pytest

from dsrouter.delivery.deadletter import DeadLetterFull, DeadLetters, Letter, StoredLetter

MNT_DETACH = 2


@pytest.fixture
def store(tmp_path):
    return DeadLetters(tmp_path / "deadletter")


def _letters(n, start=0, **kw):
    return [Letter({"n": i, **kw}, f"reason {i}", attempts=i % 3) for i in range(start, start + n)]


def _parsed(path):
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "torn last line"
    return [orjson.loads(x) for x in data.splitlines()]


def test_round_trip_add_list_get_remove_purge(store):
    ids = store.add("siem", _letters(3))
    store.add("archive", [Letter({"n": 9}, "HTTP 400", 2, response={"status": 400, "body": "no"})])
    assert store.outputs() == ["archive", "siem"]
    assert store.counts() == {"archive": 1, "siem": 3}

    got = list(store.list("siem"))
    assert [x.dlq_id for x in got] == ids
    assert [x.event["n"] for x in got] == [0, 1, 2]
    assert got[1] == StoredLetter(ids[1], "siem", got[1].time, "reason 1", 1, None, {"n": 1})
    assert got[0].time.endswith("+00:00") and got[0].time[4] == "-"
    assert [x.output for x in store.list()] == ["archive", "siem", "siem", "siem"]

    (http,) = store.list("archive")
    assert store.get(http.dlq_id) == http
    assert http.response == {"status": 400, "body": "no"} and http.attempts == 2
    assert store.get("nope") is None

    assert store.remove("siem", {ids[0], ids[2], "missing"}) == 2
    assert [x.dlq_id for x in store.list("siem")] == [ids[1]]
    assert store.remove("siem", {"missing"}) == 0
    assert store.remove("never_written", {ids[1]}) == 0
    assert store.remove("siem", {ids[1]}) == 1
    assert store.outputs() == ["archive"] and not (store.directory / "siem.jsonl").exists()
    assert not list(store.directory.glob("*.tmp"))

    store.add("siem", _letters(2))
    assert store.purge("siem") == 2
    assert store.counts() == {"archive": 1}
    assert store.purge() == 1
    assert store.counts() == {} and list(store.list()) == [] and store.purge() == 0


def test_the_file_format(store):
    store.add("siem", [Letter({"n": 1}, "boom", 4)])
    (line,) = _parsed(store.directory / "siem.jsonl")
    assert list(line) == ["dlq_id", "output", "time", "reason", "attempts", "response", "event"]
    assert line["output"] == "siem" and line["response"] is None and line["event"] == {"n": 1}


def test_ids_are_unique_and_sort_in_time_order(store):
    ids = []
    for i in range(300):
        ids += store.add("a" if i % 2 else "b", _letters(i % 4 + 1))
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert sorted(x.dlq_id for x in store.list()) == sorted(ids)


def test_ids_stay_unique_across_threads(store):
    ids, lock = [], threading.Lock()

    def work():
        for _ in range(50):
            got = store.add("siem", _letters(3))
            with lock:
                ids.extend(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 600
    assert [x.dlq_id for x in store.list("siem")] == sorted(ids)
    assert all(line["dlq_id"] for line in _parsed(store.directory / "siem.jsonl"))


def test_a_corrupt_line_is_skipped_and_counted(store):
    ids = store.add("siem", _letters(1))
    path = store.directory / "siem.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"dlq_id": "x", "event": {"trunc\n')  # not JSON
        fh.write(b'["a list"]\n')  # JSON, not a dead letter
    ids += store.add("siem", _letters(1, start=1))
    assert [x.dlq_id for x in store.list("siem")] == ids
    assert store.corrupt_lines == 2
    assert store.remove("siem", {ids[0]}) == 1  # corrupt lines are kept for a human to look at
    assert [x.dlq_id for x in store.list("siem")] == ids[1:]
    assert store.counts() == {"siem": 3}


def test_odd_values_are_stored_as_text(store):
    class Weird:
        def __str__(self):
            return "weird!"

    event = {
        "raw": b"\xff\x00bytes",
        "price": decimal.Decimal("1.10"),
        "id": uuid.UUID(int=1),
        "obj": Weird(),
        "huge": 1 << 70,
        "keys": {1: "int key", (1, 2): "tuple key"},
        "nested": [{"d": decimal.Decimal("2")}],
    }
    (dlq_id,) = store.add("siem", [Letter(event, "peer choked", 1, response={"why": Weird()})])
    got = store.get(dlq_id)
    assert got is not None and got.response == {"why": "weird!"}
    assert got.event["price"] == "1.10" and got.event["obj"] == "weird!"
    assert got.event["huge"] == str(1 << 70) and got.event["raw"] == str(b"\xff\x00bytes")
    assert got.event["keys"] == {"1": "int key", "(1, 2)": "tuple key"}
    assert got.event["nested"] == [{"d": "2"}]


@pytest.mark.parametrize(
    "name", ["", "1abc", "a-b", "a.b", "../x", "a/b", "x y", "ü", "a\n", None, "é_out"]
)
def test_bad_output_names_are_rejected(store, name):
    with pytest.raises(ValueError):
        store.add(name, _letters(1))
    if name is not None:  # None means every output
        with pytest.raises(ValueError):
            list(store.list(name))
        with pytest.raises(ValueError):
            store.purge(name)
        with pytest.raises(ValueError):
            store.remove(name, {"x"})
    assert not store.directory.exists()


def test_good_output_names(store):
    for name in ("_pipeline", "siem", "Out_2"):
        store.add(name, _letters(1))
    assert store.outputs() == ["Out_2", "_pipeline", "siem"]


def test_over_max_bytes_raises_dead_letter_full(tmp_path):
    store = DeadLetters(tmp_path / "dl", max_bytes=2000)
    store.add("a", _letters(5))
    store.add("b", _letters(5))
    before = {p.name: p.read_bytes() for p in store.directory.iterdir()}
    with pytest.raises(DeadLetterFull) as info:
        store.add("a", _letters(10, pad="x" * 100))
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert "dead-letter store full" in str(info.value)
    assert store.refused_full == 1
    assert {p.name: p.read_bytes() for p in store.directory.iterdir()} == before
    store.purge("b")
    store.add("a", _letters(5))  # room again
    assert store.counts() == {"a": 10}


def test_a_failed_truncation_is_cut_at_the_next_add(store, monkeypatch):
    store.add("siem", _letters(1))
    real_write = os.write

    def half(fd, data):
        real_write(fd, bytes(data[: len(data) // 2 + 3]))
        raise OSError(errno.EIO, "Input/output error")

    def broken(fd, size):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", half)
    monkeypatch.setattr(os, "ftruncate", broken)
    with pytest.raises(OSError):
        store.add("siem", _letters(2, start=1))
    monkeypatch.undo()
    assert not (store.directory / "siem.jsonl").read_bytes().endswith(b"\n")
    store.add("siem", _letters(2, start=1))
    assert [e["event"]["n"] for e in _parsed(store.directory / "siem.jsonl")] == [0, 1, 2]
    assert store.corrupt_lines == 0


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 KiB tmpfs mounted at ``tmp_path/"mnt"`` (root only), unmounted afterwards."""
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs mounts need Linux")
    libc = ctypes.CDLL(None, use_errno=True)
    target = tmp_path / "mnt"
    target.mkdir()
    if libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", 0, b"size=64k") != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            pytest.skip("mounting a tmpfs is not permitted here (EPERM)")
        raise OSError(err, os.strerror(err), str(target))
    try:
        yield target
    finally:
        if libc.umount2(str(target).encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(target))


def test_full_disk_keeps_whole_lines_and_add_works_after_space_is_freed(tmpfs, monkeypatch):
    store = DeadLetters(tmpfs / "dl")
    first = store.add("siem", _letters(3))
    filler = tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError) as info:
        while True:
            os.write(fd, b"x" * 4096)
    os.close(fd)
    assert info.value.errno == errno.ENOSPC
    os.truncate(filler, filler.stat().st_size - 8192)  # room for a part of the next add only
    writes = []
    real_write = os.write

    def spy(fd, data):
        n = real_write(fd, data)
        writes.append((n, len(data)))
        return n

    monkeypatch.setattr(os, "write", spy)
    with pytest.raises(OSError) as info:
        store.add("siem", _letters(60, pad="p" * 400))
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert any(n < size for n, size in writes), "the test must produce a partial write"
    path = store.directory / "siem.jsonl"
    assert [e["dlq_id"] for e in _parsed(path)] == first
    filler.unlink()
    more = store.add("siem", _letters(60, pad="p" * 400))
    assert [x.dlq_id for x in store.list("siem")] == first + more
    assert store.corrupt_lines == 0
