"""``settings { workers = N }``: parser processes beside the main process, through the real
daemon — order kept, one throttle budget for every process, a killed parser loses nothing,
reload reaches the parsers, and ``workers = 0`` still parses on the loop."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import orjson
import pytest

from .conftest import wait_for_lines
from .delivery_support import Streamer, seqs

CEF = (
    "<134>Jan  1 00:00:00 {host} CEF:0|Trend Micro|Deep Security Agent|20.0|20|Log|{sev}|"
    "cn1=1 cn1Label=Host ID dvchost={host} act=Deny seq={n}\n"
)


def _config(tmp_path, workers: int, routes: str, extra_outputs: str = "") -> str:
    return f"""
settings {{ data_dir = "{tmp_path}/data" workers = {workers} }}
input t {{ type = "tcp", listen = "127.0.0.1:0" }}
output all {{ type = "file", path = "{tmp_path}/out/all.jsonl", queue = "disk" }}
{extra_outputs}
{routes}
"""


def _send(port: int, lines: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall("".join(lines).encode())


def _messages(count: int, host: str = "web-01", start: int = 0) -> list[str]:
    return [CEF.format(host=host, sev=5, n=start + i) for i in range(count)]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def _stopped(stderr: str) -> dict:
    """The daemon's last log line (``daemon_stopped``): its counters."""
    line = next(ln for ln in stderr.splitlines() if "daemon_stopped" in ln)
    return orjson.loads(line)


def _held_back(streamer: Streamer, timeout: float = 60) -> int | None:
    """How many events the streamer had sent when it stopped getting on (None: it never
    stopped within ``timeout``, or it finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and streamer.is_alive():
        sent = streamer.sent
        time.sleep(1)
        if streamer.sent == sent and streamer.is_alive():
            return sent
    return None


def _all_arrive(d, streamer: Streamer, tmp_path) -> None:
    """Stop the streamer; every event it sent is written, once, and the daemon exits 0."""
    streamer.stop.set()
    streamer.join(60)
    assert not streamer.is_alive() and streamer.error is None
    events = wait_for_lines("out/all.jsonl", streamer.sent, tmp_path, timeout=120)
    assert sorted(seqs(events)) == list(range(streamer.sent))
    rc, _ = d.stop()
    assert rc == 0


def _seq(ev: dict) -> int:
    return int(ev["raw"].rsplit("seq=", 1)[1])


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc for the parser processes")
def test_two_parsers_keep_order_and_ids_unique(start_daemon, tmp_path):
    d = start_daemon(_config(tmp_path, 2, "route everything { to all }"))
    assert len(_children(d.proc.pid)) == 2
    port = d.ports["t"]
    lines = _messages(20_000)
    _send(port, lines)
    events = wait_for_lines("out/all.jsonl", len(lines), tmp_path, timeout=60)
    assert [_seq(e) for e in events] == list(range(len(lines)))  # one connection: in order
    assert len({e["event_id"] for e in events}) == len(lines)
    prefixes = {e["event_id"].split("-")[0] for e in events}
    rc, _ = d.stop()
    assert rc == 0
    assert len(prefixes) == 2, "both parser processes took batches"


def test_throttle_budget_is_shared_by_every_parser(start_daemon, tmp_path):
    routes = """
route one_per_host {
  when module == "firewall"
  throttle 1 per 1h by host
  to alerts
}
route everything { to all }
"""
    alerts = f'output alerts {{ type = "file", path = "{tmp_path}/out/alerts.jsonl" }}'
    d = start_daemon(_config(tmp_path, 2, routes, alerts))
    port = d.ports["t"]
    senders = [
        threading.Thread(target=_send, args=(port, _messages(3000, f"h{k % 3}", k * 3000)))
        for k in range(6)
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    rest = wait_for_lines("out/all.jsonl", 18_000 - 3, tmp_path, timeout=60)
    alerts_seen = wait_for_lines("out/alerts.jsonl", 3, tmp_path)
    time.sleep(0.5)
    assert sorted(e["host"] for e in alerts_seen) == ["h0", "h1", "h2"]
    assert len(rest) == 18_000 - 3
    rc, err = d.stop()
    assert rc == 0
    route = _stopped(err)["routes"]["one_per_host"]
    assert route["throttled_total"] == 18_000 - 3
    assert route["events_total"] == 3


def test_a_killed_parser_process_loses_nothing(start_daemon, tmp_path):
    d = start_daemon(_config(tmp_path, 2, "route everything { to all }"))
    port = d.ports["t"]
    victim = _children(d.proc.pid)[0]
    done = threading.Event()

    def send_all() -> None:
        for k in range(10):
            _send(port, _messages(3000, start=k * 3000))
        done.set()

    sender = threading.Thread(target=send_all)
    sender.start()
    time.sleep(0.3)
    os.kill(victim, signal.SIGKILL)
    sender.join()
    events = wait_for_lines("out/all.jsonl", 30_000, tmp_path, timeout=90)
    assert sorted(_seq(e) for e in events) == list(range(30_000))
    kids = _children(d.proc.pid)
    assert len(kids) == 2 and victim not in kids, "the dead parser was replaced"
    rc, err = d.stop()
    assert rc == 0
    assert "parser_process_died" in err
    started = [json.loads(x) for x in err.splitlines() if "parser_process_started" in x]
    assert {e["index"] for e in started} == {0, 1}, err  # the replacement too
    assert all(e["compiled"] is True for e in started), started  # numba is a dependency here


def test_reload_reaches_the_parser_processes(start_daemon, tmp_path):
    conf = _config(tmp_path, 2, "route everything { to all }")
    d = start_daemon(conf)
    port = d.ports["t"]
    _send(port, _messages(100))
    wait_for_lines("out/all.jsonl", 100, tmp_path)
    other = f'output other {{ type = "file", path = "{tmp_path}/out/other.jsonl" }}'
    new = _config(tmp_path, 2, "route everything { to other }", other)
    (tmp_path / "dsrouter.conf").write_text(new)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _send(port, _messages(10, start=1000))
        if (tmp_path / "out" / "other.jsonl").exists():
            break
        time.sleep(0.2)
    got = wait_for_lines("out/other.jsonl", 10, tmp_path)
    assert all(e["module"] == "firewall" for e in got)
    rc, _ = d.stop()
    assert rc == 0


def test_workers_zero_parses_in_the_main_process(start_daemon, tmp_path):
    d = start_daemon(_config(tmp_path, 0, "route everything { to all }"))
    assert _children(d.proc.pid) == []
    _send(d.ports["t"], _messages(500))
    events = wait_for_lines("out/all.jsonl", 500, tmp_path)
    assert [_seq(e) for e in events] == list(range(500))
    rc, _ = d.stop()
    assert rc == 0


def test_sigterm_mid_stream_commits_what_the_parsers_hold(start_daemon, tmp_path):
    conf = _config(tmp_path, 2, "route everything { to all }")
    d = start_daemon(conf)
    _send(d.ports["t"], _messages(20_000))
    rc, err = d.stop()  # at once: batches are still with the parsers
    assert rc == 0
    assert _stopped(err)["events_total"] == 20_000, "everything the socket accepted was parsed"
    d = start_daemon(conf)  # what was still queued is delivered after the restart
    events = wait_for_lines("out/all.jsonl", 20_000, tmp_path, timeout=60)
    assert {_seq(e) for e in events} == set(range(20_000))
    d.stop()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc for the parser processes")
def test_a_backlog_for_stopped_parsers_is_bounded_in_bytes(start_daemon, tmp_path):
    """Parsers stopped while 60 KB messages stream in: the receiver stops reading after about
    64 MiB of backlog (200,000 messages, the count bound, would be 12 GB), and every message
    arrives once the parsers go on."""
    d = start_daemon(_config(tmp_path, 2, "route everything { to all }"))
    kids = _children(d.proc.pid)
    size, limit = 60_000, 4_000  # 240 MB if nothing held the sender back
    streamer = Streamer(d.ports["t"], limit=limit, chunk=10, pad=size)
    for kid in kids:
        os.kill(kid, signal.SIGSTOP)
    try:
        streamer.start()
        held = _held_back(streamer)
    finally:
        for kid in kids:
            os.kill(kid, signal.SIGCONT)
    assert held is not None, "the sender was never held back"
    # 64 MiB waiting, 2 batches of 1 MiB per parser, what loopback TCP buffers, one chunk
    assert held * size <= (64 + 2 * 2 + 16) << 20
    _all_arrive(d, streamer, tmp_path)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc for the parser processes")
def test_one_stopped_parser_holds_the_sender_back_not_the_main_process_memory(
    start_daemon, tmp_path
):
    """One parser stopped, the other working: answers that wait for the stopped one's batch
    count against the batches in flight, so the other cannot run ahead and fill the main
    process's memory with parsed events; the backlog bound holds the sender, and every
    message arrives once the parser goes on."""
    d = start_daemon(_config(tmp_path, 2, "route everything { to all }"))
    stopped = _children(d.proc.pid)[0]
    size, limit = 1_000, 300_000  # 300 MB if nothing held the sender back
    streamer = Streamer(d.ports["t"], limit=limit, chunk=100, pad=size)
    os.kill(stopped, signal.SIGSTOP)
    try:
        streamer.start()
        held = _held_back(streamer)
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert held is not None, f"the sender was never held back ({streamer.sent} sent)"
    # 64 MiB waiting, 2 batches of 1 MiB per parser, what loopback TCP buffers, one chunk
    assert held * size <= (64 + 2 * 2 + 16) << 20
    _all_arrive(d, streamer, tmp_path)
