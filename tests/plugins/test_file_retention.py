"""Retention by age (file times set by the test) and by count, in steps of bounded work, and
never outside the template's fixed prefix, through a symlink, or in the daemon's own files."""

from __future__ import annotations

import gzip
import os

import pytest

from dsrouter.api import OutputContext
from dsrouter.plugins.file import FileOutput

DAY = 86400.0
NOW = 1_800_000_000.0  # 2027-01-15


@pytest.fixture
def make(tmp_path):
    outputs = []

    def make(path, **opts):
        ctx = OutputContext(tmp_path / "data", tmp_path)
        out = FileOutput("archive", {"path": path, **opts}, ctx, now=lambda: NOW, background=False)
        out.open()
        outputs.append(out)
        return out

    make.data = tmp_path / "data"
    yield make
    for out in outputs:
        out.close()


def put(path, age_days, data=b'{"n":1}\n'):
    """A file last written ``age_days`` before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    t = NOW - age_days * DAY
    os.utime(path, (t, t))
    return path


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_files_last_written_before_retain_are_deleted_whatever_their_form(make):
    out = make("archive/{module}/{host}/{date}.jsonl", retain=400 * DAY, compress=True)
    base = make.data / "archive" / "firewall"
    put(base / "web" / "2025-11-01.jsonl.gz", 440)
    put(base / "web" / "2025-12-10.jsonl.gz", 401)
    put(base / "web" / "2025-12-12.jsonl.gz", 399)
    put(base / "web" / "2025-12-01.2025-12-01T10-00-00.000.jsonl.gz", 410)  # a size-rotated piece
    put(base / "gone" / "2025-11-02.jsonl", 439)  # a host that went away, never compressed
    put(base / "web" / "2025-11-03.jsonl.gz.tmp", 430)  # a crash's leftover
    out.maintenance.sweep()
    assert tree(make.data) == ["archive/firewall/web/2025-12-12.jsonl.gz"]
    assert not (base / "gone").exists()  # emptied, so removed


def test_an_open_file_is_never_deleted_even_when_old(make):
    out = make("archive/{host}.jsonl", retain=30 * DAY)
    out.send([{"host": "web", "n": 1}])
    path = make.data / "archive" / "web.jsonl"
    os.utime(path, (NOW - 40 * DAY, NOW - 40 * DAY))
    out.maintenance.sweep()
    assert path.exists()
    out.reopen()
    out.maintenance.sweep()
    assert not path.exists()


def test_keep_holds_the_newest_rotated_files_of_each_active_file(make):
    out = make("archive/{host}.jsonl", rotate="daily", keep=2)
    base = make.data / "archive"
    for host in ("web", "db"):
        put(base / f"{host}.jsonl", 0)
        for day in range(1, 6):
            gz = ".gz" if day % 2 else ""
            put(base / f"{host}.2027-01-{day:02d}.jsonl{gz}", 15 - day)
    put(base / "web.2027-01-04T10-00-00.000.jsonl", 11)  # two pieces of one day count as two
    out.maintenance.sweep()
    assert tree(base) == [
        "db.2027-01-04.jsonl",
        "db.2027-01-05.jsonl.gz",
        "db.jsonl",
        "web.2027-01-04T10-00-00.000.jsonl",
        "web.2027-01-05.jsonl.gz",
        "web.jsonl",
    ]


def test_a_sweep_step_does_bounded_work_and_the_next_one_resumes(make):
    out = make("archive/{host}/{date}.jsonl", retain=10 * DAY)
    base = make.data / "archive"
    for n in range(30):
        put(base / f"h{n:02d}" / "2026-01-01.jsonl", 20)
        put(base / f"h{n:02d}" / "2027-01-14.jsonl", 1)
    sweep = out.maintenance
    sweep.entries = 10  # entries looked at per step (a directory is taken whole)
    steps = 0
    while not sweep.step():
        steps += 1
        left = sum(1 for p in base.rglob("2026-01-01.jsonl"))
        assert left >= 30 - 5 * steps  # at most ~10 entries' worth per step
        assert steps < 100
    assert steps >= 5
    assert tree(base) == [f"h{n:02d}/2027-01-14.jsonl" for n in range(30)]


def test_the_sweep_never_leaves_the_prefix_nor_follows_a_symlink(make, tmp_path):
    out = make("archive/{host}/{date}.jsonl", retain=10 * DAY, compress=True)
    base = make.data / "archive"
    outside = tmp_path / "elsewhere"
    kept = [
        put(outside / "web" / "2020-01-01.jsonl", 999),  # reachable only through a symlink
        put(make.data / "other" / "web" / "2020-01-01.jsonl", 999),  # beside the prefix
        put(base / "web" / "notes.txt", 999),  # not a name the template makes
        put(base / "-rf" / "2020-01-01.jsonl", 999),  # a name rendering never makes
        put(base / "web" / "deeper" / "2020-01-01.jsonl", 999),  # deeper than the template
        put(outside / "target.jsonl", 999),
    ]
    (base / "linked").symlink_to(outside / "web", target_is_directory=True)
    (base / "web" / "2020-01-02.jsonl").symlink_to(outside / "target.jsonl")
    os.utime(base / "web" / "2020-01-02.jsonl", (NOW - 999 * DAY,) * 2, follow_symlinks=False)
    put(base / "web" / "2020-01-03.jsonl", 999)  # the one file that is ours and old
    out.maintenance.sweep()
    assert all(p.exists() for p in kept)
    assert (base / "linked").is_symlink() and (base / "web" / "2020-01-02.jsonl").is_symlink()
    assert not (base / "web" / "2020-01-03.jsonl").exists()
    assert not list(outside.rglob("*.gz")) and not list(base.rglob("*.gz"))


def test_the_daemons_own_files_in_data_dir_are_never_taken_for_the_archives(make):
    out = make("{a}/{b}.jsonl", retain=1 * DAY, compress=True)
    letters = put(make.data / "deadletter" / "archive.jsonl", 30)
    segment = put(make.data / "queues" / "archive.jsonl", 30)
    mine = put(make.data / "web" / "firewall.jsonl", 30)
    out.maintenance.sweep()
    assert letters.exists() and segment.exists() and not mine.exists()
    assert tree(make.data) == ["deadletter/archive.jsonl", "queues/archive.jsonl"]
