"""Lifecycle through the real daemon: logrotate's SIGHUP, a second Ctrl-C, one daemon per
data_dir, and ``dsrouter queue status`` live and from the files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import orjson

from .delivery_support import lines, send, wait_metric
from .httpsink import HttpSink

CONF = """\
settings { data_dir = "./data", metrics = "127.0.0.1:0", shutdown_timeout = 2s }
input tcp_in { type = "tcp", listen = "127.0.0.1:0" }
output archive { type = "file", path = "archive/all.jsonl" }
route all { to archive }
"""


def _with_hook(conf: str, hook: str) -> str:
    """The base config with a webhook output too, every event routed to both."""
    return conf.replace("route all { to archive }", f"{hook}\nroute all {{ to hook, archive }}")


def _cli(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsrouter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def _count(path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _wait_count(path, n: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _count(path) < n:
        assert time.monotonic() < deadline, f"{path} has {_count(path)} lines, want {n}"
        time.sleep(0.05)


def test_logrotate_rename_then_sighup_reopens_the_file(start_daemon, tmp_path):
    d = start_daemon(CONF)
    live = tmp_path / "data" / "archive" / "all.jsonl"
    send(d.ports["tcp_in"], lines(0, 10))
    _wait_count(live, 10)
    rotated = live.with_name("all.jsonl.1")
    live.rename(rotated)  # what logrotate does before its postrotate `kill -HUP`
    d.proc.send_signal(signal.SIGHUP)
    wait_metric(d.metrics, "dsrouter_reloads_total", lambda v: v == 1)
    time.sleep(0.3)  # the worker reopens between batches
    send(d.ports["tcp_in"], lines(10, 5))
    _wait_count(live, 5)
    assert _count(rotated) == 10
    assert [orjson.loads(x)["msg"] for x in live.read_bytes().splitlines()][0] == "seq-10"
    assert d.stop()[0] == 0


def test_a_second_daemon_on_the_same_data_dir_is_refused(start_daemon, tmp_path):
    d = start_daemon(CONF)
    res = _cli(tmp_path, "run", "-c", str(tmp_path / "dsrouter.conf"))
    assert res.returncode == 3
    assert f"(pid {d.proc.pid}) is running with data_dir" in res.stderr
    assert "Traceback" not in res.stderr
    assert d.stop()[0] == 0


def test_second_sigint_exits_at_once_and_the_disk_queue_recovers(start_daemon, tmp_path):
    sink = HttpSink()
    sink.hang.set()  # the output never answers, so the first SIGINT waits for it
    try:
        conf = _with_hook(
            CONF.replace("shutdown_timeout = 2s", "shutdown_timeout = 60s"),
            f'output hook {{ type = "webhook", url = "{sink.url}", queue = "disk", timeout = 60s }}',
        )
        d = start_daemon(conf)
        send(d.ports["tcp_in"], lines(0, 100))
        _wait_count(tmp_path / "data" / "archive" / "all.jsonl", 100)
        d.proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert d.proc.poll() is None  # still waiting for the hung send (up to 60 s)
        started = time.monotonic()
        d.proc.send_signal(signal.SIGINT)
        d.proc.communicate(timeout=10)
        assert time.monotonic() - started < 5
        assert d.proc.returncode == 130
        sink.hang.clear()
        sink.release.set()
        d2 = start_daemon(conf)
        got = {e["msg"] for e in sink.wait_events(100)}
        assert got == {f"seq-{n}" for n in range(100)}
        assert d2.stop()[0] == 0
    finally:
        sink.close()


def test_queue_status_live_and_from_the_files(start_daemon, tmp_path):
    sink = HttpSink()
    sink.down()
    try:
        conf = _with_hook(
            CONF,
            f'output hook {{ type = "webhook", url = "{sink.url}", queue = "disk",'
            " retry_initial = 50ms, retry_max = 100ms }",
        )
        d = start_daemon(conf)
        send(d.ports["tcp_in"], lines(0, 40))
        wait_metric(d.metrics, "dsrouter_output_queue_events", lambda v: v == 40, output="hook")
        live = _cli(tmp_path, "queue", "status", "-c", "dsrouter.conf", "--json")
        assert live.returncode == 0, live.stderr
        status = json.loads(live.stdout)
        assert status["daemon_running"] is True
        hook = status["outputs"]["hook"]
        assert hook["queue_type"] == "disk" and hook["queue_events"] == 40
        assert hook["state"] == "retrying" and "refused" in hook["last_error"].lower()
        text = _cli(tmp_path, "queue", "status", "-c", "dsrouter.conf").stdout
        assert "daemon running" in text and "hook" in text and "retrying" in text
        assert d.stop()[0] == 0
        offline = json.loads(
            _cli(tmp_path, "queue", "status", "-c", "dsrouter.conf", "--json").stdout
        )
        assert offline["daemon_running"] is False
        assert offline["outputs"]["hook"]["queue_events"] == 40
        assert offline["outputs"]["hook"]["queue_oldest_seconds"] > 0
    finally:
        sink.close()
