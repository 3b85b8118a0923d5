"""The file archive through the real daemon: rotation with compression, retention at start-up,
the archive directory removed or made unwritable under it, and a full disk while compressing.
Every case counts each event: none lost, none written twice."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import subprocess
import time
import zlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from .delivery_support import fill, healthz, lines, send, seqs, tmpfs, wait_metric

BASE = """\
settings {{ data_dir = "{data}", metrics = "127.0.0.1:0", shutdown_timeout = 5s }}
input tcp_in {{ type = "tcp", listen = "127.0.0.1:0" }}
output archive {{ type = "file", path = "archive/{{host}}/{{date}}.jsonl"{extra},
                 retry_initial = 50ms, retry_max = 200ms }}
route all {{ to archive }}
"""


def _config(data: str = "./data", extra: str = "") -> str:
    return BASE.format(data=data, extra=extra)


def _events(root: Path) -> list[dict]:
    """Every event in the .jsonl and .jsonl.gz files under ``root`` (strict: torn lines fail)."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.name.endswith(".jsonl"):
            data = path.read_bytes()
        elif path.name.endswith(".jsonl.gz"):
            data = gzip.decompress(path.read_bytes())
        else:
            continue
        if data and not data.endswith(b"\n"):
            raise Torn(path)
        out += [orjson.loads(x) for x in data.splitlines()]
    return out


class Torn(AssertionError):
    """A file ends inside a line: a failure once the daemon stopped, a read too early before."""


def _settled(root: Path, count: int, timeout: float = 30.0, rotated_left: bool = False):
    """Wait until ``count`` events are archived and (unless ``rotated_left``) every rotated
    file is compressed; reads while the daemon writes or compresses are simply tried again."""
    deadline = time.monotonic() + timeout
    got: list[dict] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, orjson.JSONDecodeError, EOFError, zlib.error, Torn):
            got = _events(root) if root.exists() else []
            plain = [p for p in root.rglob("*.jsonl") if p.name.count(".") > 1]
            if len(got) >= count and (rotated_left or not plain):
                return got
        time.sleep(0.05)
    raise AssertionError(f"expected {count} events under {root}, got {len(got)}")


def test_rotation_by_size_with_compression_loses_and_doubles_nothing(start_daemon, tmp_path):
    d = start_daemon(_config(extra=", rotate = 64KiB, compress = true, batch = 20"))
    for start in range(0, 3000, 500):
        send(d.ports["tcp_in"], lines(start, 500))
    root = tmp_path / "data" / "archive"
    _settled(root, 3000)
    assert d.stop()[0] == 0
    events = _events(root)
    assert Counter(seqs(events)) == Counter(range(3000))
    (host,) = root.iterdir()
    names = sorted(p.name for p in host.iterdir())
    assert len(names) > 20 and sum(n.endswith(".jsonl.gz") for n in names) == len(names) - 1
    for name in names[:-1]:  # each piece stayed under the size, and they sort by time
        assert len(gzip.decompress((host / name).read_bytes())) <= 64 * 1024
    ordered = [e for n in names[:-1] for e in _events_of(host / n)] + _events_of(host / names[-1])
    assert seqs(ordered) == list(range(3000))


def _events_of(path: Path) -> list[dict]:
    data = path.read_bytes()
    data = gzip.decompress(data) if path.name.endswith(".gz") else data
    return [orjson.loads(x) for x in data.splitlines()]


def test_retention_at_start_up_deletes_only_the_templates_old_files(start_daemon, tmp_path):
    root = tmp_path / "data" / "archive"
    old = time.time() - 500 * 86400
    expired = [root / "gone" / "2025-01-01.jsonl.gz", root / "web-01" / "2025-01-02.jsonl"]
    kept = [tmp_path / "data" / "other" / "2025-01-01.jsonl", root / "web-01" / "notes.txt"]
    for path in expired + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'{"n":1}\n')
        os.utime(path, (old, old))
    d = start_daemon(_config(extra=", retain = 400d, compress = true"))
    deadline = time.monotonic() + 20
    while any(p.exists() for p in expired):
        assert time.monotonic() < deadline, [p for p in expired if p.exists()]
        time.sleep(0.05)
    send(d.ports["tcp_in"], lines(0, 50))
    _settled(root, 50)
    assert d.stop()[0] == 0
    assert all(p.exists() for p in kept) and not (root / "gone").exists()
    assert sorted(seqs(_events(root))) == list(range(50))


def test_the_archive_directory_removed_while_running_is_made_again(start_daemon, tmp_path):
    d = start_daemon(_config())
    root = tmp_path / "data" / "archive"
    send(d.ports["tcp_in"], lines(0, 200))
    _settled(root, 200)
    shutil.rmtree(root)  # an operator's mistake, or a cleanup job gone wrong
    send(d.ports["tcp_in"], lines(200, 300))
    _settled(root, 300)
    assert d.proc.poll() is None
    assert d.stop()[0] == 0
    assert Counter(seqs(_events(root))) == Counter(range(200, 500))


@contextlib.contextmanager
def _read_only_over(path: Path):
    """Hide ``path``'s contents under a read-only tmpfs (EROFS for every write, even root's)."""
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_vanished_unwritable_directory_is_retried_and_nothing_is_lost(start_daemon, tmp_path):
    d = start_daemon(_config())
    root = tmp_path / "data" / "archive"
    send(d.ports["tcp_in"], lines(0, 100))
    _settled(root, 100)
    with _read_only_over(root):
        assert not any(root.iterdir())  # the archive vanished from view and cannot be made
        send(d.ports["tcp_in"], lines(100, 400))
        wait_metric(d.metrics, "dsrouter_output_retried_total", lambda v: v > 0, output="archive")
        status, body = healthz(d.metrics)
        assert status == 503 and "Read-only file system" in body
        assert d.proc.poll() is None
    _settled(root, 500)  # restored: the queued events follow the first hundred
    wait_metric(d.metrics, "dsrouter_output_delivered_total", lambda v: v >= 500, output="archive")
    assert healthz(d.metrics)[0] == 200
    assert d.stop()[0] == 0
    assert Counter(seqs(_events(root))) == Counter(range(500))


def test_a_full_disk_while_rotating_and_compressing_loses_nothing(start_daemon, tmp_path):
    with tmpfs(tmp_path / "data", "4m") as data:
        conf = _config(data=str(data), extra=", rotate = 64KiB, compress = true")
        d = start_daemon(conf)
        send(d.ports["tcp_in"], lines(0, 300))
        _settled(data / "archive", 300)
        filler = fill(data, leave=40_000)
        send(d.ports["tcp_in"], lines(300, 1200))
        wait_metric(d.metrics, "dsrouter_output_retried_total", lambda v: v > 0, output="archive")
        assert d.proc.poll() is None
        filler.unlink()
        _settled(data / "archive", 1500, timeout=60)
        assert d.stop()[0] == 0
        events = _events(data / "archive")
        assert Counter(seqs(events)) == Counter(range(1500))
        assert not list((data / "archive").rglob("*.tmp"))
