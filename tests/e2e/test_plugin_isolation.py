"""A misbehaving third-party output, through the real daemon and a real entry point.

One installed distribution (``dsrouter-flaky``, found by ``importlib.metadata`` on PYTHONPATH
exactly as after ``pip install``) registers three output types that go wrong in different
ways: ``opens_late`` raises in ``open()`` until a marker file exists, ``always_fails`` raises
in every ``send()``, ``hangs`` never returns from ``send()``. Each sits next to a healthy
built-in ``file`` output on the same route; real Deep Security events arrive over TCP and UDP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from dsrouter.samples import sample_lines

from ..plugin.fakedist import make_distribution
from .conftest import wait_for_lines
from .delivery_support import healthz, lines, send, wait_metric

PLUGIN = '''\
import json, time
from dsrouter.api import Option, Output, OutputType, hookimpl


class OpensLate(Output):
    """open() raises until the file `ready` (next to the configuration) exists."""

    def open(self):
        marker = self.context.config_dir / self.options["ready"]
        if not marker.exists():
            raise ConnectionError(f"peer not ready: {marker.name} is missing")
        self.fh = (self.context.config_dir / self.options["path"]).open("a")

    def send(self, events):
        self.fh.write("".join(json.dumps(e) + "\\n" for e in events))
        self.fh.flush()

    def close(self):
        self.fh.close()


class AlwaysFails(Output):
    def send(self, events):
        raise RuntimeError("backend rejected the batch")


class Hangs(Output):
    def send(self, events):
        time.sleep(600)  # a blocking call that never returns in time


@hookimpl
def dsrouter_register_outputs(register):
    files = (Option("path", "string", help="where"), Option("ready", "string", help="marker"))
    register(OutputType("opens_late", OpensLate, options=files))
    register(OutputType("always_fails", AlwaysFails))
    register(OutputType("hangs", Hangs))
'''

CONF = """\
settings { data_dir = "./data", metrics = "127.0.0.1:0", shutdown_timeout = 2s }
input tcp_in { type = "tcp", listen = "127.0.0.1:0" }
input udp_in { type = "udp", listen = "127.0.0.1:0" }
output archive { type = "file", path = "archive/all.jsonl" }
output late { type = "opens_late", path = "late.jsonl", ready = "late.ready", retry_initial = 100ms, retry_max = 200ms }
output broken { type = "always_fails", max_attempts = 3, retry_initial = 50ms, retry_max = 100ms }
output stuck { type = "hangs", send_timeout = 1s }
route all { to archive, late, broken, stuck }
"""

DIST = {"plugin": "flaky", "distribution": "dsrouter-flaky 0.1.0"}


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsrouter", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )


def _status(tmp_path) -> dict:
    done = _cli(tmp_path, "queue", "status", "-c", "dsrouter.conf", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["outputs"]


def _logged(err: str, event: str, output: str) -> list[dict]:
    records = []
    for line in err.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event and record.get("output") == output:
                records.append(record)
    return records


def test_misbehaving_plugin_outputs_take_nothing_else_down(start_daemon, tmp_path, monkeypatch):
    root = make_distribution(
        tmp_path / "site", "dsrouter-flaky", {"dsr_flaky": PLUGIN}, {"flaky": "dsr_flaky"}
    )
    monkeypatch.setenv("PYTHONPATH", str(root))
    d = start_daemon(CONF)  # starts although `late` cannot open
    send(d.ports["tcp_in"], lines(0, 20))
    wait_for_lines("data/archive/all.jsonl", 20, tmp_path)

    # a blocking send past send_timeout is reported, the failing one dead-lettered
    wait_metric(d.metrics, "dsrouter_output_send_timeouts_total", lambda v: v >= 1, output="stuck")
    wait_metric(
        d.metrics, "dsrouter_output_dead_lettered_total", lambda v: v == 20, output="broken"
    )
    dead = _cli(tmp_path, "dlq", "list", "-c", "dsrouter.conf", "--output", "broken").stdout
    assert "20 dead letter(s)" in dead
    assert dead.count("attempts=3") == 20
    assert "gave up after 3 attempts; last error: RuntimeError: backend rejected the batch" in dead

    status = _status(tmp_path)
    assert status["late"]["state"] == "opening" and status["late"]["queue_events"] == 20
    assert status["late"]["last_error"] == (
        "open failed: ConnectionError: peer not ready: late.ready is missing"
    )
    assert status["stuck"]["state"] == "hung"
    assert status["stuck"]["last_error"].startswith("send hung: no return after ")
    assert {k: status["stuck"][k] for k in DIST} == DIST
    assert status["archive"]["state"] == "ok" and status["archive"]["queue_events"] == 0
    code, body = healthz(d.metrics)
    assert code == 503, body
    assert "output late is not open: open failed: ConnectionError" in body
    assert "output stuck is hung: send hung" in body

    # the output that could not open delivers its backlog once it can
    (tmp_path / "late.ready").touch()
    wait_for_lines("late.jsonl", 20, tmp_path)

    # everything else keeps working: more events, over UDP this time
    udp = _cli(tmp_path, "send", "--udp", f"127.0.0.1:{d.ports['udp_in']}", "--sample")
    assert udp.returncode == 0, udp.stderr
    total = 20 + len(sample_lines())
    wait_for_lines("data/archive/all.jsonl", total, tmp_path)
    wait_for_lines("late.jsonl", total, tmp_path)
    assert d.proc.poll() is None
    assert _status(tmp_path)["late"]["state"] == "ok"

    started = time.monotonic()
    code, err = d.stop(timeout=20)
    stopped_in = time.monotonic() - started
    assert code == 0
    # drain (connections idle: 0.5 s) + at most shutdown_timeout (2 s) for the hung send
    assert stopped_in < 2.0 + 0.5 + 2.0, stopped_in

    (opened,) = [r for r in _logged(err, "output_open_failed", "late") if r["attempts"] == 1]
    assert opened["level"] == "error" and opened["type"] == "opens_late"
    assert {k: opened[k] for k in DIST} == DIST
    assert opened["reason"] == "ConnectionError: peer not ready: late.ready is missing"
    assert _logged(err, "output_opened", "late")
    for event in ("delivery_failed", "events_dead_lettered"):
        found = _logged(err, event, "broken")
        assert found and all({k: r[k] for k in DIST} == DIST for r in found), event
    (hung,) = _logged(err, "output_send_hung", "stuck")  # once per hung send
    assert {k: hung[k] for k in DIST} == DIST and hung["type"] == "hangs"
    assert hung["seconds"] >= 1.0 and hung["events"] >= 1
    (left,) = _logged(err, "output_stop_timeout", "stuck")
    assert {k: left[k] for k in DIST} == DIST
    stopped = [json.loads(x) for x in err.splitlines() if '"daemon_stopped"' in x]
    assert stopped[0]["queued"]["stuck"] == total  # the hung batch and the rest stay queued
    assert stopped[0]["queued"]["archive"] == stopped[0]["queued"]["late"] == 0
