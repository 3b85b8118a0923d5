"""The delivery guarantee, proven through the real daemon: outages, kill -9, hangs, full
queues, corrupt queue files, a full disk, SIGTERM mid-stream, reload and dead-letter replay."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import orjson
import pytest

from dsrouter.parse_pool import parser_count
from dsrouter.pipeline_pool import BATCH_MESSAGES

from .delivery_support import (
    Streamer,
    fill,
    healthz,
    lines,
    metric,
    scrape,
    send,
    seqs,
    tmpfs,
    wait_metric,
)
from .httpsink import HttpSink

BASE = """\
settings {{ data_dir = "{data}", metrics = "127.0.0.1:0", shutdown_timeout = 3s }}
input tcp_in {{ type = "tcp", listen = "127.0.0.1:0" }}
"""

HOOK = (
    'output hook {{ type = "webhook", url = "{url}", retry_initial = 50ms, retry_max = 300ms'
    "{extra} }}\n"
)


@pytest.fixture
def sink():
    s = HttpSink()
    yield s
    s.close()


def _archive(path) -> list[dict]:
    files = sorted(path.glob("**/*.jsonl"))
    return [orjson.loads(x) for p in files for x in p.read_bytes().splitlines()]


def _wait_archive(path, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    events: list[dict] = []
    while time.monotonic() < deadline:
        try:
            events = _archive(path) if path.exists() else []
        except orjson.JSONDecodeError:  # read while a write was in progress: look again
            events = []
        if len(events) >= count:
            return events
        time.sleep(0.05)
    raise AssertionError(f"expected {count} archived events under {path}, got {len(events)}")


def _hook_config(sink, extra: str = "", archive: bool = True, data: str = "./data") -> str:
    conf = BASE.format(data=data) + HOOK.format(url=sink.url, extra=extra)
    if archive:
        conf += 'output archive { type = "file", path = "archive/all.jsonl" }\n'
        return conf + "route all { to hook, archive }\n"
    return conf + "route all { to hook }\n"


def test_output_down_then_back_delivers_everything(start_daemon, sink, tmp_path):
    sink.down()
    d = start_daemon(_hook_config(sink))
    send(d.ports["tcp_in"], lines(0, 500))
    archived = _wait_archive(tmp_path / "data" / "archive", 500)  # the other output is on time
    assert sorted(seqs(archived)) == list(range(500))
    wait_metric(d.metrics, "dsrouter_output_retried_total", lambda v: v > 0, output="hook")
    status, body = healthz(d.metrics)
    assert status == 503 and "output hook is failing" in body
    sink.up()
    got = seqs(sink.wait_events(500))
    assert set(got) == set(range(500))
    assert len(got) - len(set(got)) <= 500  # at most the batch in flight at the outage
    wait_metric(d.metrics, "dsrouter_output_delivered_total", lambda v: v >= 500, output="hook")
    assert healthz(d.metrics)[0] == 200
    assert d.stop()[0] == 0


def test_kill_9_with_the_output_down_loses_nothing_committed(start_daemon, sink, tmp_path):
    sink.down()
    conf = _hook_config(sink, extra=', queue = "disk"', archive=False)
    d = start_daemon(conf)
    send(d.ports["tcp_in"], lines(0, 300))
    wait_metric(d.metrics, "dsrouter_output_queue_events", lambda v: v == 300, output="hook")
    d.kill9()
    sink.up()
    d2 = start_daemon(conf)
    got = seqs(sink.wait_events(300))
    assert set(got) == set(range(300))
    assert d2.stop()[0] == 0


def test_a_hanging_output_holds_up_no_other(start_daemon, sink, tmp_path):
    sink.hang.set()
    d = start_daemon(_hook_config(sink, extra=", timeout = 60s"))
    send(d.ports["tcp_in"], lines(0, 2000))
    archived = _wait_archive(tmp_path / "data" / "archive", 2000, timeout=15)
    assert sorted(seqs(archived)) == list(range(2000))
    started = time.monotonic()
    code, err = d.stop(timeout=30)
    assert code == 0
    assert time.monotonic() - started < 20  # shutdown_timeout bounds the wait for the hung send
    assert "output_stop_timeout" in err


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_full_queue_drops_by_policy_and_counts(start_daemon, sink, tmp_path, policy):
    sink.down()
    extra = f', queue_max_events = 100, when_full = "{policy}", batch = 10'
    d = start_daemon(_hook_config(sink, extra=extra, archive=False))
    for start in range(0, 1000, 100):
        send(d.ports["tcp_in"], lines(start, 100))
    wait_metric(d.metrics, "dsrouter_events_received_total", lambda v: v == 1000, input="tcp_in")
    deadline = time.monotonic() + 10  # received, then parsed (by a parser process) and committed
    while True:
        snap = scrape(d.metrics)
        dropped = sum(
            v
            for (name, labels), v in snap.items()
            if name == "dsrouter_output_dropped_total" and ("output", "hook") in labels
        )
        queued = snap[("dsrouter_output_queue_events", (("output", "hook"),))]
        if queued + dropped >= 1000 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # nothing more arrives: the sum stays
    snap = scrape(d.metrics)
    assert snap[("dsrouter_output_queue_events", (("output", "hook"),))] == queued
    assert queued + dropped == 1000
    assert 100 <= queued <= 200 and dropped >= 800
    sink.up()
    got = _distinct(sink, int(queued))  # a batch retried after a lost answer may come twice
    if policy == "drop_newest":
        assert min(got) == 0 and 999 not in got
    else:
        assert 999 in got and 0 not in got
    assert d.stop()[0] == 0


def _distinct(sink, count: int, timeout: float = 30.0) -> list[int]:
    """The sink's sequence numbers once ``count`` different ones have arrived."""
    deadline = time.monotonic() + timeout
    while True:
        got = seqs(sink.events())
        if len(set(got)) >= count or time.monotonic() > deadline:
            return sorted(set(got))
        time.sleep(0.05)


def test_block_policy_pushes_back_on_the_sender_and_loses_nothing(start_daemon, sink, tmp_path):
    sink.down()
    extra = ', queue = "memory", queue_max_events = 500, when_full = "block"'
    d = start_daemon(_hook_config(sink, extra=extra, archive=False))
    streamer = Streamer(d.ports["tcp_in"], chunk=100)  # endless: no kernel buffer holds it all
    streamer.start()
    time.sleep(3)
    received, sent = _received(d), streamer.sent
    time.sleep(1)
    # the daemon stopped reading and TCP flow control holds the sender where it is
    assert (_received(d), streamer.sent) == (received, sent) and streamer.is_alive()
    assert received < sent
    # bounded: the limit, plus the batches parser processes were working on, plus one chunk
    in_flight = (2 * parser_count(None) + 1) * BATCH_MESSAGES
    assert (
        metric(d.metrics, "dsrouter_output_queue_events", output="hook") <= 500 + in_flight + 2048
    )
    status, body = healthz(d.metrics)
    assert status == 503 and "back-pressure" in body
    assert "output hook queue is" in body and "% full" in body  # above the 80% mark
    streamer.stop.set()  # its chunk in sendall completes once the daemon reads again
    sink.up()
    streamer.join(60)
    assert not streamer.is_alive() and streamer.error is None
    got = seqs(sink.wait_events(streamer.sent, timeout=90))
    assert set(got) == set(range(streamer.sent))
    assert d.stop()[0] == 0


def _received(d) -> float:
    return metric(d.metrics, "dsrouter_events_received_total", input="tcp_in")


def test_corrupt_queue_file_is_reported_and_the_rest_delivered(start_daemon, sink, tmp_path):
    sink.down()
    conf = _hook_config(sink, extra=', queue = "disk"', archive=False)
    d = start_daemon(conf)
    send(d.ports["tcp_in"], lines(0, 200))
    wait_metric(d.metrics, "dsrouter_output_queue_events", lambda v: v == 200, output="hook")
    assert d.stop()[0] == 0
    segment = next((tmp_path / "data" / "queues" / "hook").glob("*.seg"))
    data = bytearray(segment.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 40] = b"\xff" * 40
    segment.write_bytes(bytes(data))
    sink.up()
    d2 = start_daemon(conf)
    corrupt = wait_metric(
        d2.metrics, "dsrouter_output_queue_corrupt_total", lambda v: v >= 1, output="hook"
    )
    got = seqs(sink.wait_events(200 - int(corrupt)))
    assert len(set(got)) >= 200 - corrupt and set(got) <= set(range(200))
    assert d2.stop()[0] == 0


@pytest.mark.parametrize("queue", ["memory", "disk"])
def test_full_disk_is_no_crash_and_nothing_is_lost_or_doubled(start_daemon, tmp_path, queue):
    with tmpfs(tmp_path / "data", "4m") as data:
        filler = fill(data, leave=60_000)  # room for ~80 of the 1,500 events
        conf = (
            BASE.format(data=str(data))
            + f'output archive {{ type = "file", path = "archive/all.jsonl", queue = "{queue}",'
            " retry_initial = 50ms, retry_max = 200ms }\nroute all { to archive }\n"
        )
        d = start_daemon(conf)
        send(d.ports["tcp_in"], lines(0, 1500))
        # memory queue: the output fails and retries; disk queue: the queue itself cannot be
        # written, so the daemon holds the batch and pushes back on the sender
        want = "is failing" if queue == "memory" else "queue unwritable"
        deadline = time.monotonic() + 20
        while want not in healthz(d.metrics)[1]:
            assert time.monotonic() < deadline, healthz(d.metrics)
            time.sleep(0.05)
        time.sleep(0.5)
        assert d.proc.poll() is None
        filler.unlink()
        _wait_archive(data / "archive", 1500)
        assert d.stop()[0] == 0
        events = _archive(data / "archive")  # strict: every line parses
        assert Counter(seqs(events)) == Counter(range(1500))  # none lost, none twice


def test_sigterm_while_a_sender_streams_archives_all_it_wrote(start_daemon, tmp_path):
    conf = (
        BASE.format(data="./data")
        + 'output archive { type = "file", path = "archive/all.jsonl" }\nroute all { to archive }\n'
    )
    d = start_daemon(conf)
    streamer = Streamer(d.ports["tcp_in"], chunk=20)
    streamer.start()
    time.sleep(1.5)
    written = streamer.sent  # sendall returned for these before the signal
    d.proc.send_signal(signal.SIGTERM)
    _, err = d.proc.communicate(timeout=30)
    streamer.stop.set()
    streamer.join(10)
    assert d.proc.returncode == 0, err.decode()
    events = _archive(tmp_path / "data" / "archive")
    whole = [e for e in events if not e.get("truncated")]
    assert set(range(written)) <= set(seqs(whole))
    assert len(events) - len(whole) <= 1  # at most the one message cut at the close
    assert Counter(seqs(whole)).most_common(1)[0][1] == 1


def _reload(conf_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsrouter", "reload", "-c", str(conf_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=conf_path.parent,
    )


def test_reload_keeps_old_rules_on_a_broken_config_and_swaps_on_a_good_one(start_daemon, tmp_path):
    head = BASE.format(data="./data") + (
        'output a { type = "file", path = "a/all.jsonl" }\n'
        'output b { type = "file", path = "b/all.jsonl" }\n'
    )
    conf = tmp_path / "dsrouter.conf"
    d = start_daemon(head + "route all { to a }\n")
    streamer = Streamer(d.ports["tcp_in"], limit=30_000, chunk=20, pace=0.004)  # ~6 s
    streamer.start()
    conf.write_text(head + "route all { to a\n")  # broken
    d.proc.send_signal(signal.SIGHUP)
    wait_metric(d.metrics, "dsrouter_reload_failures_total", lambda v: v == 1)
    assert metric(d.metrics, "dsrouter_reload_success") == 0
    assert "last reload failed" in healthz(d.metrics)[1]
    res = _reload(conf)
    assert res.returncode == 1 and "refused" in res.stderr
    conf.write_text(head + "route all { to b }\n")
    res = _reload(conf)
    assert res.returncode == 0, res.stderr
    assert metric(d.metrics, "dsrouter_reload_success") == 1
    assert streamer.is_alive(), "the stream must still run across both reloads"
    streamer.join(60)
    assert streamer.sent == 30_000
    data = tmp_path / "data"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        a, b = seqs(_archive(data / "a")), seqs(_archive(data / "b"))
        if len(a) + len(b) >= 30_000:
            break
        time.sleep(0.1)
    assert b, "the new route never took effect"
    assert a and Counter(a + b) == Counter(range(30_000))  # nothing lost or doubled across reloads
    assert d.stop()[0] == 0


def test_dlq_replay_after_a_permanent_failure_is_fixed(start_daemon, sink, tmp_path):
    sink.status = 400
    conf = tmp_path / "dsrouter.conf"
    d = start_daemon(_hook_config(sink, archive=False))
    send(d.ports["tcp_in"], lines(0, 50))
    wait_metric(d.metrics, "dsrouter_output_dead_lettered_total", lambda v: v == 50, output="hook")
    run = [sys.executable, "-m", "dsrouter", "dlq"]
    listing = subprocess.run(
        [*run, "list", "-c", str(conf)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert listing.returncode == 0
    assert listing.stdout.count("  hook  ") == 50 and "HTTP 400" in listing.stdout
    assert "host=web-01" in listing.stdout and "module=intrusion_prevention" in listing.stdout
    sink.status = 200
    replay = subprocess.run(
        [*run, "replay", "-c", str(conf)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert replay.returncode == 0, replay.stderr
    assert "50 dead letter(s) replayed" in replay.stdout
    events = sink.wait_events(50)
    assert sorted(seqs(events)) == list(range(50))
    assert all(e["peer"].startswith("127.0.0.1:") and e["raw"].startswith("<134>") for e in events)
    after = subprocess.run(
        [*run, "list", "-c", str(conf)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert "no dead letters" in after.stdout
    assert d.stop()[0] == 0


def test_udp_burst_shows_kernel_drops_in_metrics(start_daemon, sink, tmp_path):
    sink.down()
    conf = (
        'settings { data_dir = "./data", metrics = "127.0.0.1:0", shutdown_timeout = 1s }\n'
        'input udp_in { type = "udp", listen = "127.0.0.1:0", recv_buffer = 64KiB }\n'
        + HOOK.format(url=sink.url, extra=', queue = "memory", queue_max_events = 50')
        + "route all { to hook }\n"
    )
    d = start_daemon(conf)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # one event first, parsed once the parser processes are up: a burst sent while they start
    # (a second with numba) would all be read into the bounded backlog, and none dropped
    sock.sendto(lines(0, 1)[0], ("127.0.0.1", d.ports["udp_in"]))
    wait_metric(d.metrics, "dsrouter_events_parsed_total", lambda v: v >= 1)
    for message in lines(1, 5000):
        sock.sendto(message, ("127.0.0.1", d.ports["udp_in"]))
    sock.close()
    drops = wait_metric(
        d.metrics, "dsrouter_input_dropped_total", lambda v: v > 0, input="udp_in", reason="kernel"
    )
    sink.up()  # the queue drains, the reader resumes and empties the socket buffer
    wait_metric(
        d.metrics, "dsrouter_events_received_total", lambda v: v + drops == 5001, input="udp_in"
    )
    assert (
        metric(d.metrics, "dsrouter_input_dropped_total", input="udp_in", reason="kernel") == drops
    )
    assert d.stop()[0] == 0


def test_one_impossible_file_name_is_dead_lettered_alone(start_daemon, tmp_path):
    conf = (
        BASE.format(data="./data")
        + 'output archive { type = "file", path = "archive/{host}{name}{msg}.jsonl" }\n'
        + "route all { to archive }\n"
    )
    d = start_daemon(conf)
    long = "x" * 120  # three fields of 100 characters each: a name over 255 bytes
    bad = (
        "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
        f"{long}|8|dvchost={long} msg={long}"
    ).encode()
    send(d.ports["tcp_in"], lines(0, 300) + [bad] + lines(300, 300))
    archived = _wait_archive(tmp_path / "data" / "archive", 600, timeout=15)
    assert sorted(seqs(archived)) == list(range(600))
    wait_metric(
        d.metrics, "dsrouter_output_dead_lettered_total", lambda v: v == 1, output="archive"
    )
    assert metric(d.metrics, "dsrouter_output_retried_total", output="archive") == 0
    letters = (tmp_path / "data" / "deadletter" / "archive.jsonl").read_bytes().splitlines()
    assert len(letters) == 1 and "File name too long" in orjson.loads(letters[0])["reason"]
    assert d.stop()[0] == 0
