"""Rotation by size and by time (an injected clock, file times set to match), the naming that
sorts by time, and compression that never loses the original: stopped, killed, crashed
between rename and unlink, or out of disk space."""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from calendar import timegm

import orjson
import pytest

from dsrouter.api import OutputContext, RetryLater
from dsrouter.plugins.file import FileOutput
from dsrouter.plugins.file_rotate import GRACE, compress

DAY, HOUR = 86400.0, 3600.0
T0 = timegm((2026, 12, 2, 7, 15, 3)) + 0.25  # 2026-12-02T07:15:03.250Z


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def make(tmp_path):
    outputs = []

    def make(path, clock=None, **opts):
        clock = clock or Clock()
        ctx = OutputContext(tmp_path / "data", tmp_path)
        out = FileOutput("archive", {"path": path, **opts}, ctx, now=clock, background=False)
        out.open()
        out.clock = clock
        outputs.append(out)
        return out

    make.data = tmp_path / "data"
    yield make
    for out in outputs:
        out.close()


def write_at(out, t, events):
    """Send at clock time ``t`` and date every file written to ``t`` (as if written then)."""
    out.clock.t = t
    out.send(events)
    for path in out._fds:
        os.utime(path, (t, t))


def lines_of(path):
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    assert not data or data.endswith(b"\n"), f"torn last line in {path}"
    return [orjson.loads(x) for x in data.splitlines()]


def names(directory):
    return sorted(p.name for p in directory.iterdir())


def ns_in_name_order(directory, active):
    """Event numbers read file by file in name order, the active file last."""
    files = sorted(p for p in directory.iterdir() if p.name != active) + [directory / active]
    return [e["n"] for p in files for e in lines_of(p)]


# -- by size --------------------------------------------------------------------------------


def test_size_rotation_sets_a_file_aside_before_a_batch_would_pass_the_limit(make):
    out = make("archive/{host}.jsonl", rotate=1000)
    for n in range(60):
        out.clock.t = T0 + n * 0.0004  # several rotations within one millisecond
        out.send([{"host": "web", "n": n, "pad": "x" * 40}])
    out.close()
    base = make.data / "archive"
    rotated = [p for p in base.iterdir() if p.name != "web.jsonl"]
    assert len(rotated) >= 4
    assert all(0 < p.stat().st_size <= 1000 for p in rotated)
    assert all(p.name.startswith("web.2026-12-02T07-15-03.") for p in rotated)
    assert ns_in_name_order(base, "web.jsonl") == list(range(60))  # names sort by time


def test_a_batch_larger_than_the_size_is_written_whole_into_one_file(make):
    out = make("archive/all.jsonl", rotate=100)
    out.send([{"n": 0}])
    out.send([{"n": n, "pad": "x" * 50} for n in range(1, 10)])
    out.close()
    base = make.data / "archive"
    assert [len(lines_of(base / n)) for n in names(base)] == [1, 9]
    assert names(base)[1] == "all.jsonl"


# -- by time --------------------------------------------------------------------------------


def test_daily_rotation_names_each_file_after_its_day(make):
    out = make("archive/{host}.jsonl", rotate="daily")
    write_at(out, T0, [{"host": "web", "n": 0}])
    write_at(out, T0 + 60, [{"host": "web", "n": 1}])
    write_at(out, T0 + DAY, [{"host": "web", "n": 2}])
    write_at(out, T0 + 3 * DAY, [{"host": "web", "n": 3}])
    out.close()
    base = make.data / "archive"
    assert names(base) == ["web.2026-12-02.jsonl", "web.2026-12-03.jsonl", "web.jsonl"]
    assert ns_in_name_order(base, "web.jsonl") == [0, 1, 2, 3]


def test_hourly_rotation_and_a_restart_in_a_new_hour(make):
    out = make("archive/x.log", rotate="hourly", format="raw")
    write_at(out, T0, [{"raw": "a"}])
    write_at(out, T0 + HOUR, [{"raw": "b"}])
    out.close()
    again = make("archive/x.log", clock=Clock(T0 + 2 * HOUR), rotate="hourly", format="raw")
    again.send([{"raw": "c"}])  # the file left by the last run belongs to an earlier hour
    again.close()
    base = make.data / "archive"
    assert names(base) == ["x.2026-12-02T07.log", "x.2026-12-02T08.log", "x.log"]
    assert [(base / n).read_bytes() for n in names(base)] == [b"a\n", b"b\n", b"c\n"]


def test_the_sweep_rotates_the_file_of_a_host_that_went_away(make):
    out = make("archive/{host}.jsonl", rotate="daily", compress=True)
    write_at(out, T0, [{"host": "gone", "n": 0}, {"host": "web", "n": 0}])
    write_at(out, T0 + DAY, [{"host": "web", "n": 1}])
    out.clock.t = T0 + DAY + GRACE
    out.maintenance.sweep()
    base = make.data / "archive"
    assert names(base) == ["gone.2026-12-02.jsonl.gz", "web.2026-12-02.jsonl.gz", "web.jsonl"]
    assert [e["n"] for e in lines_of(base / "gone.2026-12-02.jsonl.gz")] == [0]


def test_with_date_in_the_path_a_finished_day_is_compressed_where_it_is(make):
    out = make("archive/{host}/{date}.jsonl", rotate="daily", compress=True)
    day1, day2 = "2026-12-02T23:58:00+00:00", "2026-12-03T00:00:01+00:00"
    midnight = timegm((2026, 12, 3, 0, 0, 0))
    write_at(out, midnight - 120, [{"host": "web", "received_at": day1, "n": 0}])
    write_at(out, midnight + 1, [{"host": "web", "received_at": day2, "n": 1}])
    out.clock.t = midnight + 60  # day 1 ended, but within the grace for late events
    out.maintenance.sweep()
    base = make.data / "archive" / "web"
    assert names(base) == ["2026-12-02.jsonl", "2026-12-03.jsonl"]
    out.clock.t = midnight - 120 + GRACE
    out.maintenance.sweep()
    assert names(base) == ["2026-12-02.jsonl.gz", "2026-12-03.jsonl"]
    assert [e["n"] for e in lines_of(base / "2026-12-02.jsonl.gz")] == [0]
    # a late event of day 1 (a backlog) starts a new file; it never overwrites the .gz
    write_at(out, midnight + GRACE, [{"host": "web", "received_at": day1, "n": 2}])
    out.files.close_all()
    out.clock.t = midnight + DAY + GRACE
    out.maintenance.sweep()
    got = names(base)
    assert "2026-12-02.jsonl.gz" in got and len(got) == 3 and all(n.endswith(".gz") for n in got)
    assert sorted(e["n"] for n in got for e in lines_of(base / n)) == [0, 1, 2]


def test_a_file_being_compressed_is_retried_not_written(make):
    out = make("archive/{host}/{date}.jsonl", compress=True)
    out.send([{"host": "web", "received_at": "2026-12-02T07:00:00+00:00", "n": 0}])
    path = next(iter(out._fds))
    out.files.close_all()
    with out.shared.lock:
        out.shared.claimed.add(path)
    with pytest.raises(RetryLater, match="being compressed"):
        out.send([{"host": "web", "received_at": "2026-12-02T07:00:00+00:00", "n": 1}])
    with out.shared.lock:
        out.shared.claimed.discard(path)
    out.send([{"host": "web", "received_at": "2026-12-02T07:00:00+00:00", "n": 1}])
    out.close()
    assert [e["n"] for e in lines_of(make.data / "archive" / "web" / "2026-12-02.jsonl")] == [0, 1]


# -- compression ----------------------------------------------------------------------------


def test_the_gz_decompresses_to_exactly_the_rotated_bytes(make):
    out = make("archive/{host}.jsonl", rotate=2000, compress=True, mode="0600")
    for n in range(40):
        out.clock.t = T0 + n
        out.send([{"host": "web", "n": n, "msg": f"event {n} " * 5}])
    base = make.data / "archive"
    rotated = {p.name: (p.read_bytes(), p.stat().st_mtime) for p in base.iterdir()}
    del rotated["web.jsonl"]
    out.maintenance.sweep()
    assert names(base) == sorted([*(n + ".gz" for n in rotated), "web.jsonl"])
    for name, (data, mtime) in rotated.items():
        gz = base / (name + ".gz")
        assert gzip.decompress(gz.read_bytes()) == data
        assert gz.stat().st_mode & 0o777 == 0o600
        assert gz.stat().st_mtime == pytest.approx(mtime)  # retention still sees its age


def test_a_stopped_compression_keeps_the_original_and_leaves_no_temp(tmp_path):
    src = tmp_path / "x.2026-12-02.jsonl"
    src.write_bytes(os.urandom(3 << 20))
    stop = threading.Event()
    stop.set()
    assert compress(str(src), str(src) + ".gz", stop) is False
    assert os.listdir(tmp_path) == [src.name]


KILLED_WRITER = """
import sys, threading
from dsrouter.plugins.file_rotate import compress
compress(sys.argv[1], sys.argv[1] + ".gz", threading.Event())
"""


def test_kill_9_in_the_middle_of_a_compression_loses_nothing(make):
    out = make("archive/{host}.jsonl", rotate="daily", compress=True)
    base = make.data / "archive"
    base.mkdir(parents=True)
    src = base / "web.2026-12-02.jsonl"
    noise = os.urandom(12 << 20).hex()  # incompressible, so the compression takes a while
    data = b"".join(
        orjson.dumps({"n": n, "noise": noise[i : i + 8000]}) + b"\n"
        for n, i in enumerate(range(0, len(noise), 8000))
    )
    src.write_bytes(data)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(src)])
    tmp = base / (src.name + ".gz.tmp")
    deadline = time.monotonic() + 30
    while not (tmp.exists() and tmp.stat().st_size > 0):
        assert time.monotonic() < deadline and proc.poll() is None, "no compression seen"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert src.read_bytes() == data  # the original is whole
    assert not (base / (src.name + ".gz")).exists()
    out.maintenance.sweep()  # the next sweep cleans up and compresses again
    assert names(base) == [src.name + ".gz"]
    assert gzip.decompress((base / (src.name + ".gz")).read_bytes()) == data


def test_a_crash_between_rename_and_unlink_removes_the_source_only_when_the_gz_matches(make):
    out = make("archive/{host}.jsonl", rotate="daily", compress=True)
    base = make.data / "archive"
    base.mkdir(parents=True)
    done, other = base / "a.2026-12-02.jsonl", base / "b.2026-12-02.jsonl"
    done.write_bytes(b'{"n":1}\n')
    (base / (done.name + ".gz")).write_bytes(gzip.compress(done.read_bytes()))
    other.write_bytes(b'{"n":2}\n')
    (base / (other.name + ".gz")).write_bytes(gzip.compress(b'{"n":3}\n'))  # not its copy
    out.maintenance.sweep()
    got = names(base)
    assert done.name not in got and other.name not in got and len(got) == 3
    assert sorted(e["n"] for n in got for e in lines_of(base / n)) == [1, 2, 3]


def test_compression_on_a_full_disk_keeps_the_original_and_retries_later(make, tmp_path):
    mnt = tmp_path / "mnt"
    with _tmpfs(mnt, "2m"):
        out = make(f"{mnt}/{{host}}.jsonl", rotate="daily", compress=True)
        src = mnt / "web.2026-12-02.jsonl"
        data = b"".join(
            orjson.dumps({"n": n, "r": os.urandom(30).hex()}) + b"\n" for n in range(9000)
        )
        src.write_bytes(data)  # ~720 KB, half of it incompressible
        filler = _fill(mnt / "filler", leave=64 << 10)  # no room for the .gz
        out.maintenance.sweep()
        assert names(mnt) == ["filler", src.name] and src.read_bytes() == data
        sweep = out.maintenance
        assert sweep.errors == 1 and sweep.backoff[str(src)][1] == 5.0
        filler.unlink()
        sweep.sweep()  # within the back-off: not tried again yet
        assert names(mnt) == [src.name] and sweep.errors == 1
        sweep.backoff[str(src)] = (0.0, 5.0)  # as if 5 seconds went by
        sweep.sweep()
        assert names(mnt) == [src.name + ".gz"] and not sweep.backoff
        assert gzip.decompress((mnt / (src.name + ".gz")).read_bytes()) == data
        out.close()


def _fill(path, leave):
    with open(path, "wb") as fh:
        with contextlib.suppress(OSError):
            while (
                free := os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
            ) > leave:
                fh.write(b"\0" * min(65536, free - leave))
                fh.flush()
    return path


@contextlib.contextmanager
def _tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_the_background_thread_compresses_after_a_rotation_and_stops_on_close(tmp_path):
    ctx = OutputContext(tmp_path / "data", tmp_path)
    out = FileOutput("a", {"path": "archive/x.jsonl", "rotate": 200, "compress": True}, ctx)
    out.open()
    for n in range(10):
        out.send([{"n": n, "pad": "p" * 60}])
    base = tmp_path / "data" / "archive"
    deadline = time.monotonic() + 20
    while any(not n.endswith(".gz") for n in names(base) if n != "x.jsonl"):
        assert time.monotonic() < deadline, names(base)
        time.sleep(0.02)
    out.close()
    assert not out.maintenance.thread.is_alive()
    assert ns_in_name_order(base, "x.jsonl") == list(range(10))
