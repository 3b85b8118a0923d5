"""The file output: JSON lines, templated paths, and no way out of its directory."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys

import orjson
import pytest

from dsrouter.api import OutputContext, PartialFailure, PermanentFailure, RetryLater
from dsrouter.plugin import Plugins
from dsrouter.plugins.file import PathTemplate, sanitize


@pytest.fixture
def make(tmp_path):
    kind = Plugins(entry_points=False).outputs["file"]

    def make(path, **opts):
        options = {"path": path, "max_open_files": 64, **opts}
        out = kind.factory("archive", options, OutputContext(tmp_path / "data", tmp_path))
        out.open()
        return out

    make.data = tmp_path / "data"
    return make


def _read(path):
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_writes_json_lines_grouped_by_template(make, tmp_path):
    out = make("archive/{module}/{host}/{date}.jsonl")
    events = [
        {
            "module": "firewall",
            "host": "web-01",
            "received_at": "2026-11-28T01:00:00+00:00",
            "n": 1,
        },
        {
            "module": "anti_malware",
            "host": "web-01",
            "received_at": "2026-11-28T01:00:00+00:00",
            "n": 2,
        },
        {
            "module": "firewall",
            "host": "web-01",
            "received_at": "2026-11-28T02:00:00+00:00",
            "n": 3,
        },
    ]
    out.send(events)
    out.close()
    base = tmp_path / "data" / "archive"
    assert [e["n"] for e in _read(base / "firewall" / "web-01" / "2026-11-28.jsonl")] == [1, 3]
    assert [e["n"] for e in _read(base / "anti_malware" / "web-01" / "2026-11-28.jsonl")] == [2]


@pytest.mark.parametrize(
    "host",
    [
        "../../etc",
        "..",
        ".",
        "/etc/passwd",
        "a/../../b",
        "..\\..\\windows",
        "x\x00y",
        "",
        None,
        "....//....//etc",
        "~root",
        "$(reboot)",
        "a" * 5000,
    ],
    ids=[
        "dotdot-etc",
        "dotdot",
        "dot",
        "absolute",
        "nested",
        "backslash",
        "nul",
        "empty",
        "missing",
        "dots-slashes",
        "tilde",
        "shell",
        "very-long",
    ],
)
def test_attacker_controlled_values_stay_inside_the_directory(make, tmp_path, host):
    out = make("archive/{host}/{module}.jsonl")
    out.send([{"host": host, "module": "firewall", "n": 1}])
    out.close()
    root = (tmp_path / "data" / "archive").resolve()
    written = [p for p in (tmp_path).rglob("*") if p.is_file()]
    assert len(written) == 1
    assert root in written[0].resolve().parents
    assert written[0].parent.parent == root  # exactly one component per placeholder


def test_sanitize_keeps_one_harmless_component():
    assert sanitize("../../etc") == "_._.._etc"
    assert "/" not in sanitize("a/b") and not sanitize("..").startswith(".")


def test_template_from_config_cannot_escape(tmp_path):
    with pytest.raises(ValueError, match="'..' may not come after a placeholder"):
        PathTemplate("archive/{module}/../../../x.jsonl", tmp_path)


def test_syslog_field_and_lru_of_open_files(make, tmp_path):
    out = make("by-sender/{syslog.hostname}.jsonl", max_open_files=2)
    for i in range(5):
        out.send([{"syslog": {"hostname": f"dsm{i % 3}"}, "n": i}])
    assert len(out._fds) == 2
    out.close()
    got = {p.name: [e["n"] for e in _read(p)] for p in (tmp_path / "data" / "by-sender").iterdir()}
    assert got == {"dsm0.jsonl": [0, 3], "dsm1.jsonl": [1, 4], "dsm2.jsonl": [2]}
    assert os.listdir(tmp_path / "data" / "by-sender")


def test_stdout_output_writes_json_lines(capsysbinary):
    kind = Plugins(entry_points=False).outputs["stdout"]
    out = kind.factory("console", {"pretty": False}, OutputContext(None, None))
    out.send([{"module": "firewall", "n": 1}, {"module": "system", "n": 2}])
    lines = capsysbinary.readouterr().out.splitlines()
    assert [orjson.loads(x)["n"] for x in lines] == [1, 2]


# --- loss-free delivery: per-event outcomes, whole lines only, reopen ----------------------

MS_RDONLY, MS_REMOUNT, MNT_DETACH = 1, 32, 2


@pytest.fixture
def tmpfs():
    """Mount small tmpfs file systems (root only); unmounted again after the test."""
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs mounts need Linux")
    libc = ctypes.CDLL(None, use_errno=True)
    mounted = []

    def call(target, flags, data):
        if libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", flags, data) != 0:
            err = ctypes.get_errno()
            if err == errno.EPERM:
                pytest.skip("mounting a tmpfs is not permitted here (EPERM)")
            raise OSError(err, os.strerror(err), str(target))

    def mount(target, size="64k"):
        target.mkdir(parents=True, exist_ok=True)
        call(target, 0, f"size={size}".encode())
        mounted.append(target)
        return target

    def remount(target, readonly):
        call(target, MS_REMOUNT | (MS_RDONLY if readonly else 0), None)

    mount.remount = remount
    try:
        yield mount
    finally:
        for target in reversed(mounted):
            if libc.umount2(str(target).encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(target))


def _fill(directory):
    """Fill the file system of ``directory``; return the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def _lines(path):
    """Every line of a file parsed: fails on a torn line."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "torn last line"
    return [orjson.loads(x) for x in data.splitlines()]


def test_full_disk_leaves_whole_lines_and_the_retry_writes_each_event_once(
    make, tmpfs, monkeypatch
):
    mnt = tmpfs(make.data / "mnt")
    out = make(f"{mnt}/{{host}}.jsonl")
    out.send([{"host": "small", "n": -1}, {"host": "big", "n": -2}])
    filler = _fill(mnt)
    os.truncate(filler, filler.stat().st_size - 8192)  # room for a part of the next batch only
    writes = []
    real_write = os.write

    def spy(fd, data):
        n = real_write(fd, data)
        writes.append((n, len(data)))
        return n

    monkeypatch.setattr(os, "write", spy)
    batch = [{"host": "small", "n": 0}] + [
        {"host": "big", "n": i, "pad": "p" * 400} for i in range(1, 60)
    ]
    with pytest.raises(PartialFailure) as info:  # "small" was written, "big" did not fit
        out.send(batch)
    monkeypatch.setattr(os, "write", real_write)
    assert any(n < size for n, size in writes), "the test must produce a partial write"
    exc = info.value
    assert not exc.rejected and exc.retry == tuple(range(1, 60))
    assert (
        str(exc) == "59 of 60 events to retry: cannot write mnt/big.jsonl: No space left on device"
    )
    assert [e["n"] for e in _lines(mnt / "big.jsonl")] == [-2]  # truncated back
    assert [e["n"] for e in _lines(mnt / "small.jsonl")] == [-1, 0]
    filler.unlink()
    out.send([batch[i] for i in exc.retry])
    out.close()
    got = [e["n"] for p in ("small", "big") for e in _lines(mnt / f"{p}.jsonl")]
    assert sorted(got) == list(range(-2, 60))


def test_a_failed_truncation_is_repaired_when_the_file_is_reopened(make, monkeypatch):
    out = make("archive/{host}.jsonl")
    out.send([{"host": "a", "n": 0}])
    real_write = os.write

    def half(fd, data):
        real_write(fd, bytes(data[: len(data) // 2 + 3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    def broken(fd, size):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", half)
    monkeypatch.setattr(os, "ftruncate", broken)
    with pytest.raises(RetryLater):
        out.send([{"host": "a", "n": 1}, {"host": "a", "n": 2}])
    monkeypatch.undo()
    path = make.data / "archive" / "a.jsonl"
    assert not path.read_bytes().endswith(b"\n") and not out._fds  # torn, handle dropped
    out.send([{"host": "a", "n": 1}, {"host": "a", "n": 2}])
    out.close()
    assert [e["n"] for e in _lines(path)] == [0, 1, 2]


def test_long_file_names_reject_only_their_events(make):
    out = make("archive/{host}-{name}-{msg}.jsonl")
    long = {"host": "h" * 100, "name": "n" * 100, "msg": "m" * 100}
    batch = [
        {"host": "web", "name": "x", "msg": "y", "n": 0},
        {**long, "n": 1},
        {"host": "web", "name": "x", "msg": "y", "n": 2},
        {**long, "n": 3},
        {"host": "db", "name": "x", "msg": "y", "n": 4},
    ]
    with pytest.raises(PartialFailure) as info:
        out.send(batch)
    exc = info.value
    assert sorted(exc.rejected) == [1, 3] and exc.retry == ()
    reason = str(exc.rejected[1])
    assert reason.startswith("cannot write archive/hhh") and reason.endswith(": File name too long")
    assert "…" in reason and len(reason) < 200
    out.close()
    base = make.data / "archive"
    assert [e["n"] for e in _lines(base / "web-x-y.jsonl")] == [0, 2]
    assert [e["n"] for e in _lines(base / "db-x-y.jsonl")] == [4]
    assert sorted(p.name for p in base.iterdir()) == ["db-x-y.jsonl", "web-x-y.jsonl"]


def test_a_directory_or_file_in_the_way_rejects_that_group(make):
    base = make.data / "archive"
    (base / "d" / "e" / "x.jsonl").mkdir(parents=True)  # open: EISDIR
    (base / "f").mkdir()
    (base / "f" / "e").write_bytes(b"")  # makedirs onto a file: EEXIST
    (base / "g").write_bytes(b"")  # makedirs below a file: ENOTDIR
    out = make("archive/{a}/{b}/x.jsonl")
    batch = [
        {"a": "d", "b": "e", "n": 0},
        {"a": "ok", "b": "e", "n": 1},
        {"a": "f", "b": "e", "n": 2},
        {"a": "g", "b": "e", "n": 3},
        {"a": "ok", "b": "e", "n": 4},
    ]
    with pytest.raises(PartialFailure) as info:
        out.send(batch)
    exc = info.value
    assert sorted(exc.rejected) == [0, 2, 3] and exc.retry == ()
    assert str(exc.rejected[0]) == "cannot write archive/d/e/x.jsonl: Is a directory"
    assert str(exc.rejected[2]) == "cannot write archive/f/e/x.jsonl: File exists (archive/f/e)"
    assert "Not a directory" in str(exc.rejected[3])
    assert str(exc).startswith("3 of 5 events rejected: ")
    assert [e["n"] for e in _lines(base / "ok" / "e" / "x.jsonl")] == [1, 4]


def test_events_that_cannot_be_rendered_or_serialized_are_rejected_alone(make):
    out = make("archive/{date}.jsonl")
    day = "2026-11-28T01:00:00+00:00"
    batch = [
        {"received_at": day, "n": 0},
        {"received_at": day, "n": 1, "bad": object()},
        {"received_at": 5, "n": 2},
        {"received_at": day, "n": 3},
    ]
    with pytest.raises(PartialFailure) as info:
        out.send(batch)
    exc = info.value
    assert sorted(exc.rejected) == [1, 2] and exc.retry == ()
    assert str(exc.rejected[1]).startswith("cannot serialize event: ")
    assert str(exc.rejected[2]).startswith("cannot render path: ")
    assert [e["n"] for e in _lines(make.data / "archive" / "2026-11-28.jsonl")] == [0, 3]


def test_read_only_file_system_retries_that_group_and_the_rest_delivered_once(make, tmpfs):
    base = make.data / "archive"
    ro = tmpfs(base / "ro")
    tmpfs.remount(ro, readonly=True)  # EROFS even for root
    out = make("archive/{host}/{a}{b}{c}.jsonl")
    long = {"a": "a" * 100, "b": "b" * 100, "c": "c" * 100}
    batch = [
        {"host": "web", "n": 0},
        {"host": "web", "n": 1, **long},
        {"host": "ro", "n": 2},
        {"host": "web", "n": 3},
        {"host": "db", "n": 4},
        {"host": "ro", "n": 5},
    ]
    with pytest.raises(PartialFailure) as info:
        out.send(batch)
    exc = info.value
    assert sorted(exc.rejected) == [1] and exc.retry == (2, 4, 5)
    assert "Read-only file system" in str(exc)
    assert not (base / "db").exists()  # not tried after the transient failure
    tmpfs.remount(ro, readonly=False)
    out.send([batch[i] for i in exc.retry])
    out.close()
    name = "unknownunknownunknown.jsonl"
    assert [e["n"] for e in _lines(base / "web" / name)] == [0, 3]
    assert [e["n"] for e in _lines(base / "ro" / name)] == [2, 5]
    assert [e["n"] for e in _lines(base / "db" / name)] == [4]


def test_only_transient_failures_raise_retry_later(make, tmpfs):
    ro = tmpfs(make.data / "ro")
    tmpfs.remount(ro, readonly=True)
    out = make("ro/{host}.jsonl")
    with pytest.raises(RetryLater, match=r"^cannot write ro/a\.jsonl: Read-only file system$"):
        out.send([{"host": "a"}, {"host": "b"}])


def test_reopen_closes_every_file_and_the_next_write_opens_it_by_path(make):
    out = make("archive/{host}.jsonl")
    out.send([{"host": "a", "n": 0}, {"host": "b", "n": 0}])
    assert len(out._fds) == 2
    out.reopen()
    assert not out._fds
    out.send([{"host": "a", "n": 1}])
    out.close()
    assert [e["n"] for e in _lines(make.data / "archive" / "a.jsonl")] == [0, 1]


def test_a_file_moved_away_without_sighup_is_not_written_any_more(make):
    """logrotate's rename, or ``rm -rf`` of the archive: the next batch opens the path anew
    (directories included) instead of writing into the moved or deleted file."""
    out = make("archive/{host}/x.jsonl")
    out.send([{"host": "a", "n": 0}])
    path = make.data / "archive" / "a" / "x.jsonl"
    path.rename(path.with_name("x.jsonl.1"))
    out.send([{"host": "a", "n": 1}])
    assert [e["n"] for e in _lines(path.with_name("x.jsonl.1"))] == [0]
    assert [e["n"] for e in _lines(path)] == [1]
    shutil.rmtree(make.data / "archive")
    out.send([{"host": "a", "n": 2}])
    out.close()
    assert [e["n"] for e in _lines(path)] == [2]


def test_new_files_default_to_0640_and_their_directories_to_0750(make, tmp_path):
    old = os.umask(0o022)
    try:
        out = make("m/{host}/x.jsonl")
        out.send([{"host": "a"}])
        out.close()
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "data" / "m" / "a" / "x.jsonl").st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "data" / "m" / "a").st_mode & 0o777 == 0o750


def test_raw_format_writes_the_message_as_received_one_per_line(make, tmp_path):
    out = make("raw/{host}.log", format="raw")
    out.send(
        [
            {"host": "a", "raw": "<134>Nov 27 CEF:0|Trend Micro|x", "module": "firewall"},
            {"host": "a", "raw": "<134>two\nlines\r"},
        ]
    )
    out.close()
    data = (tmp_path / "data" / "raw" / "a.log").read_bytes()
    assert data == b"<134>Nov 27 CEF:0|Trend Micro|x\n<134>two#012lines#015\n"


@pytest.mark.parametrize("mode", ["0600", "0644"])
def test_mode_sets_new_files_permissions(make, tmp_path, mode):
    old = os.umask(0o022)
    try:
        out = make("m/{host}.jsonl", mode=mode)
        out.send([{"host": "a"}])
        out.close()
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "data" / "m" / "a.jsonl").st_mode & 0o777 == int(mode, 8)


@pytest.mark.parametrize("mode", ["rw-r-----", "0999", "1777"])
def test_a_bad_mode_is_refused(make, mode):
    with pytest.raises(ValueError, match="octal permission"):
        make("m/x.jsonl", mode=mode)


def test_fixed_json_path_takes_payloads_as_they_are(make):
    out = make("archive/all.jsonl")
    assert out.takes_payloads
    assert not make("archive/{host}.jsonl").takes_payloads  # needs the fields
    assert not make("archive/raw.log", format="raw").takes_payloads  # needs the raw text
    payloads = [orjson.dumps({"n": i, "host": "h"}) for i in range(3)]
    out.send_payloads(payloads)
    assert (make.data / "archive" / "all.jsonl").read_bytes() == b"\n".join(payloads) + b"\n"


def test_payload_write_failures_are_classified_like_send(make):
    (make.data / "archive" / "dir.jsonl").mkdir(parents=True)  # EISDIR: no retry can fix it
    with pytest.raises(PermanentFailure, match="dir.jsonl"):
        make("archive/dir.jsonl").send_payloads([b"{}"])
    out = make("archive/full.jsonl")

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    out.files.append = full
    with pytest.raises(RetryLater, match="No space left"):
        out.send_payloads([b"{}"])
