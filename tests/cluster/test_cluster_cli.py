"""The operator commands on a cluster: ``dsrouter dlq ...`` and ``queue status`` run as real
processes against real nats-server (no daemon, no data_dir), and the running daemon's control
handlers (:class:`~dsrouter.daemon_ops.DaemonOps`) on the cluster's stores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrouter.cli.common import load
from dsrouter.daemon_ops import DaemonOps, cluster_changes
from dsrouter.delivery.deadletter import DeadLetters, Letter
from dsrouter.delivery.jetstream import JetStreamQueue
from dsrouter.delivery.jetstream_conn import JetStreamClient
from dsrouter.delivery.jetstream_dlq import JetStreamDeadLetters, replay_ids

from ..delivery.support import Log
from .conftest import Clients
from .natsrig import Rig, free_ports
from .test_jetstream_queue import drain, events, ids

CONFIG = """\
settings {{
  data_dir = "./data"
  cluster_servers = [{servers}]
  cluster_stream = "{stream}"
  cluster_replicas = {replicas}
}}
output siem    {{ type = "stdout" }}
output archive {{ type = "file", path = "archive.jsonl" }}
route everything {{ to siem, archive }}
"""


def write_conf(where: Path, servers: list[str], stream: str, replicas: int = 1) -> Path:
    path = where / "dsrouter.conf"
    listed = ", ".join(f'"{s}"' for s in servers)
    path.write_text(CONFIG.format(servers=listed, stream=stream, replicas=replicas))
    return path


def conf_for(client: JetStreamClient, where: Path) -> Path:
    o = client.options
    return write_conf(where, list(o.servers), o.stream, o.replicas)


def dsrouter(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsrouter", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def letters(evs: list[dict], reason: str = "permanent failure: HTTP 400") -> list[Letter]:
    return [Letter(e, reason, 3, {"status": 400}) for e in evs]


# ---- dsrouter dlq -------------------------------------------------------------------------


def test_dlq_list_show_replay_and_purge_work_on_the_cluster(
    nats_cluster: Rig, clients: Clients, tmp_path: Path
) -> None:
    client = clients(nats_cluster)
    conf = str(conf_for(client, tmp_path))
    store = JetStreamDeadLetters(client)
    siem = store.add("siem", letters(events(0, 3)))
    archive = store.add("archive", letters(events(10, 2), "gave up after 3 attempts"))
    gone = store.add("retired", letters(events(20, 1)))  # an output no longer configured

    run = dsrouter("dlq", "list", "-c", conf, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1] == "6 dead letter(s)" and run.stderr == ""
    assert [line.split()[0] for line in lines[:-1]] == archive + gone + siem  # by output name
    assert "  siem  " in lines[-2] and "attempts=3" in lines[-2] and "HTTP 400" in lines[-2]

    run = dsrouter("dlq", "list", "-c", conf, "--output", "siem", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.splitlines()[-1] == "3 dead letter(s)"

    run = dsrouter("dlq", "show", "-c", conf, "--id", archive[1], "--id", "424242", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (shown,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert shown["dlq_id"] == archive[1] and shown["output"] == "archive"
    assert shown["reason"] == "gave up after 3 attempts" and shown["event"] == events(11, 1)[0]
    assert shown["response"] == {"status": 400} and shown["attempts"] == 3

    # replay: back on each configured output's subject with the replay's own message ids;
    # the letters of an output not in the configuration stay
    replayed = list(store.select(None, None))
    run = dsrouter("dlq", "replay", "-c", conf, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "5 dead letter(s) replayed onto their outputs' queues"
    assert "skipped output 'retired': not in the configuration" in run.stderr
    assert store.counts() == {"retired": 1}
    q_siem, q_archive = JetStreamQueue("siem", client), JetStreamQueue("archive", client)
    try:
        assert q_siem.stats().events == 3 and q_archive.stats().events == 2
        # published with the replay's ids: the same replay again stores nothing
        again = [s for s in replayed if s.output == "siem"]
        q_siem.publish([s.event for s in again], msg_ids=replay_ids(again))
        assert q_siem.duplicates == 3 and q_siem.stats().events == 3
        got = drain(q_siem, 3)
        assert ids(got) == [0, 1, 2] and [r.event for r in got] == events(0, 3)
        assert ids(drain(q_archive, 2)) == [10, 11]
    finally:
        q_siem.close()
        q_archive.close()

    run = dsrouter("dlq", "purge", "-c", conf, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "1 dead letter(s) purged"
    assert store.counts() == {}
    run = dsrouter("dlq", "list", "-c", conf, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "no dead letters"
    assert not (tmp_path / "data").exists()  # no data_dir, no lock: the cluster's letters


def test_dlq_purge_and_replay_by_id_and_output(
    nats_node: Rig, clients: Clients, tmp_path: Path
) -> None:
    client = clients(nats_node)
    conf = str(conf_for(client, tmp_path))
    store = JetStreamDeadLetters(client)
    siem = store.add("siem", letters(events(0, 3)))
    archive = store.add("archive", letters(events(10, 2)))

    # an id of another output with --output: not selected
    run = dsrouter(
        "dlq", "purge", "-c", conf, "--output", "siem", "--id", siem[0], "--id", archive[0],
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "1 dead letter(s) purged"
    assert [s.dlq_id for s in store.list()] == archive + siem[1:]

    run = dsrouter("dlq", "replay", "-c", conf, "--id", siem[2], cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("1 dead letter(s) replayed")
    q = JetStreamQueue("siem", client)
    try:
        assert ids(drain(q, 1)) == [2]
    finally:
        q.close()

    run = dsrouter("dlq", "purge", "-c", conf, "--output", "archive", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "2 dead letter(s) purged"
    assert [s.dlq_id for s in store.list()] == [siem[1]]

    run = dsrouter("dlq", "list", "-c", conf, "--output", "nosuch", cwd=tmp_path)
    assert run.returncode == 1 and "no output named 'nosuch'" in run.stderr


# ---- dsrouter queue status ----------------------------------------------------------------


def test_queue_status_reports_the_subjects_dead_letters_and_consumers(
    nats_node: Rig, clients: Clients, tmp_path: Path
) -> None:
    client = clients(nats_node)
    conf = str(conf_for(client, tmp_path))
    q = JetStreamQueue("siem", client)
    try:
        q.publish(events(0, 5))
        JetStreamDeadLetters(client).add("archive", letters(events(10, 2)))
        JetStreamDeadLetters(client).add("_pipeline", letters(events(20, 1)))
        too_large = letters(events(30, 1), "too large for the cluster")
        DeadLetters(tmp_path / "data" / "deadletter").add("siem", too_large)  # this router's

        run = dsrouter("queue", "status", "-c", conf, "--json", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        status = json.loads(run.stdout)
        assert status["cluster"] == {
            "servers": list(client.options.servers),
            "stream": client.options.stream,
            "dlq_stream": f"{client.options.stream}_dlq",
        }
        siem, archive = status["outputs"]["siem"], status["outputs"]["archive"]
        assert siem["queue_type"] == "jetstream" and siem["queue_events"] == 5
        assert siem["subject"] == f"{client.options.stream}.out.siem"
        assert siem["queue_bytes"] > 5 * 100 and 0 <= siem["queue_oldest_seconds"] < 60
        assert siem["dead_letters"] == 0 and siem["consumer"] is None  # no worker yet
        assert archive["queue_events"] == 0 and archive["dead_letters"] == 2
        assert siem["last_error"] == "" and archive["last_error"] == ""
        assert status["other_dead_letters"] == {"_pipeline": 1}
        assert status["local_dead_letters"] == {"siem": 1}

        leased = q.fetch(2, 1.0)  # a delivery worker holds two: the consumer says so
        assert len(leased) == 2
        run = dsrouter("queue", "status", "-c", conf, "--json", cwd=tmp_path)
        siem = json.loads(run.stdout)["outputs"]["siem"]
        assert siem["queue_events"] == 5  # a work queue keeps a message until its ack
        assert siem["consumer"]["num_pending"] == 3
        assert siem["consumer"]["num_ack_pending"] == 2
        assert siem["consumer"]["num_redelivered"] == 0

        run = dsrouter("queue", "status", "-c", conf, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        head, columns, *rows, others, local = run.stdout.splitlines()
        assert others == "dead letters of names not configured as outputs: _pipeline (1)"
        assert local == "in this router's local store (too large for the cluster): siem (1)"
        assert head.startswith("cluster nats://127.0.0.1:") and client.options.stream in head
        assert columns.split()[:6] == ["output", "queue", "events", "bytes", "oldest", "dead"]
        row = dict(zip(["siem", "archive"], rows, strict=True))
        assert row["siem"].split()[:3] == ["siem", "jetstream", "5"]
        assert "pending=3 ack_pending=2 redelivered=0" in row["siem"]
        assert row["archive"].split()[5] == "2" and "no consumer yet" in row["archive"]
        q.ack(leased)

        run = dsrouter("dlq", "list", "-c", conf, "--output", "siem", cwd=tmp_path)
        assert run.returncode == 0 and run.stdout.strip() == "no dead letters"
        assert run.stderr.startswith("note: 1 more dead letter(s) in this router's local store")
    finally:
        q.close()


# ---- an unreachable cluster ---------------------------------------------------------------


def test_an_unreachable_cluster_is_one_line_and_exit_3(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    conf = str(write_conf(tmp_path, [f"nats://127.0.0.1:{port}"], "nowhere"))
    argvs = [["dlq", "list"], ["dlq", "replay"], ["queue", "status", "--json"]]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dsrouter", *argv, "-c", conf],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    for argv, proc in zip(argvs, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, (argv, out, err)
        assert out == "" and len(err.splitlines()) == 1, err
        assert f"cannot reach the cluster (nats://127.0.0.1:{port}) within 7s" in err
        assert err.startswith(f"dsrouter {' '.join(argv[:2])}: ") and "Traceback" not in err
    assert time.monotonic() - started < 30
    assert not (tmp_path / "data").exists()


# ---- the daemon's control handlers on the cluster's stores --------------------------------


class Ops(DaemonOps):
    """DaemonOps over a stand-in engine whose stores are the real cluster ones."""

    def __init__(self, config: Any, engine: Any = None, reload_config: Any = None) -> None:
        self.config, self.engine, self.reload_config = config, engine, reload_config
        self.log = Log()
        self.pipeline = SimpleNamespace(flush=lambda: None, reconfigure=lambda *a: None)
        self.listeners = []
        self.reload_state = {
            "success": 1,
            "timestamp": 0.0,
            "total": 0,
            "failed_total": 0,
            "errors": [],
        }


class RecordingStore(JetStreamDeadLetters):
    """Remembers the threads its verbs ran on."""

    def __init__(self, client: JetStreamClient) -> None:
        super().__init__(client)
        self.threads: list[threading.Thread] = []

    def select(self, output: Any, ids: Any) -> list:
        self.threads.append(threading.current_thread())
        return super().select(output, ids)


def _engine(client: JetStreamClient, store: JetStreamDeadLetters, names: list[str]) -> Any:
    lanes = {n: SimpleNamespace(queue=JetStreamQueue(n, client)) for n in names}
    return SimpleNamespace(cluster=client, dead_letters=store, lanes=lanes)


async def _answer_while_ticking(ops: Ops, request: dict) -> tuple[dict, int]:
    """The answer, and how often a 5 ms ticker ran on the loop meanwhile."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        return await ops.handle_control(request), ticks
    finally:
        done.set()
        await task


def test_the_daemon_replays_and_purges_cluster_letters_off_the_loop(
    nats_node: Rig, clients: Clients
) -> None:
    client = clients(nats_node)
    store = RecordingStore(client)
    engine = _engine(client, store, ["siem"])
    ops = Ops(SimpleNamespace(settings={}), engine)
    try:
        store.add("siem", letters(events(0, 1200)))  # more than one replay chunk
        store.add("archive", letters(events(5000, 2)))  # no such lane: skipped
        answer, ticks = asyncio.run(_answer_while_ticking(ops, {"cmd": "dlq_replay"}))
        assert answer == {"ok": True, "count": 1200, "skipped_outputs": ["archive"]}
        assert store.threads and threading.main_thread() not in store.threads
        assert ticks > 0  # the loop ran while the cluster was asked
        queue = engine.lanes["siem"].queue
        assert queue.stats().events == 1200 and queue.duplicates == 0
        assert sorted(ids(drain(queue, 1200))) == list(range(1200))
        assert store.counts() == {"archive": 2}

        answer = asyncio.run(ops.handle_control({"cmd": "dlq_purge", "output": "nosuch"}))
        assert not answer["ok"] and "no output named 'nosuch'" in answer["error"]
        answer = asyncio.run(ops.handle_control({"cmd": "dlq_purge", "output": "siem"}))
        assert answer == {"ok": True, "count": 0}
        answer = asyncio.run(ops.handle_control({"cmd": "dlq_purge"}))
        assert answer == {"ok": True, "count": 2} and store.counts() == {}
    finally:
        for lane in engine.lanes.values():
            lane.queue.close()


def test_a_replay_the_cluster_refuses_keeps_the_letters(nats_node: Rig, clients: Clients) -> None:
    client = clients(nats_node)
    store = JetStreamDeadLetters(client)
    engine = _engine(client, store, ["siem"])
    ops = Ops(SimpleNamespace(settings={}), engine)
    kept = store.add("siem", letters(events(0, 3)))
    queue = engine.lanes["siem"].queue
    queue.max_events = 2
    queue.publish(events(100, 2))  # full
    try:
        answer = asyncio.run(ops.handle_control({"cmd": "dlq_replay", "output": "siem"}))
        assert not answer["ok"] and answer["error"].startswith("replay stopped: queue siem")
        assert "the letters left are kept" in answer["error"]
        assert [s.dlq_id for s in store.list()] == kept
        assert ops.log.records[-1][:2] == ("warning", "dlq_request_failed")
    finally:
        queue.close()


# ---- reload: the cluster settings need a restart ------------------------------------------


def _config(where: Path, **changes: str) -> Any:
    settings = {
        "cluster_servers": '["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]',
        "cluster_stream": '"dsrouter"',
        "cluster_user": '"router"',
        "cluster_password": '"s3cret-pass"',
        **changes,
    }
    text = 'settings {\n  data_dir = "./data"\n'
    text += "".join(f"  {k} = {v}\n" for k, v in settings.items() if v) + "}\n"
    text += 'output siem { type = "stdout" }\nroute everything { to siem }\n'
    path = where / "dsrouter.conf"
    path.write_text(text)
    config, _, _ = load(argparse.Namespace(config=str(path)))
    return config


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"cluster_servers": '["nats://127.0.0.1:4222"]'}, "cluster_servers"),
        ({"cluster_stream": '"other"'}, "cluster_stream"),
        ({"cluster_password": '"another-pass"'}, "cluster_password"),
        ({"cluster_replicas": "1"}, "cluster_replicas"),
        ({"cluster_user": "", "cluster_password": "", "cluster_token": '"tok-123"'}, None),
    ],
)
def test_a_reload_that_changes_a_cluster_setting_is_refused(
    tmp_path: Path, change: dict[str, str], named: str | None
) -> None:
    old = _config(tmp_path)
    new = _config(tmp_path, **change)
    ops = Ops(old, reload_config=lambda: new)
    answer = asyncio.run(ops.reload())
    assert answer["ok"] is False
    (error,) = answer["errors"]
    want = [named] if named else ["cluster_password", "cluster_token", "cluster_user"]
    assert error.startswith(", ".join(want) + " cannot change on reload")
    assert error.endswith("restart the daemon")
    assert "s3cret" not in error and "another" not in error and "tok-123" not in error
    assert ops.config is old and ops.reload_state["failed_total"] == 1


def test_a_reload_with_the_same_cluster_settings_goes_on(tmp_path: Path) -> None:
    old = _config(tmp_path)
    new = _config(tmp_path)  # a new Config, equal settings
    reconfigured = []
    engine = SimpleNamespace(reconfigure=reconfigured.append, dead_letters=None, cluster=None)
    ops = Ops(old, engine, reload_config=lambda: new)
    assert asyncio.run(ops.reload()) == {"ok": True, "errors": []}
    assert ops.config is new and reconfigured == [new.outputs]


def test_cluster_changes_compares_values_not_spelling() -> None:
    base = {"cluster_servers": ["nats://a:4222"], "cluster_stream": "s", "data_dir": "x"}
    assert cluster_changes(base, {**base, "cluster_servers": ("nats://a:4222",)}) == []
    assert cluster_changes(base, {**base, "data_dir": "y", "cluster_token": ""}) == []
    assert cluster_changes(base, {**base, "cluster_token": "t"}) == ["cluster_token"]
    assert cluster_changes(base, {"data_dir": "x"}) == ["cluster_servers", "cluster_stream"]


DAEMON = """\
settings {{
  data_dir = "./data"
  workers = 0
  shutdown_timeout = 5s
  cluster_servers = [{servers}]
  cluster_stream = "{stream}"
  cluster_replicas = 1
}}
input tcp_in {{ type = "tcp", listen = "127.0.0.1:0" }}
output archive {{ type = "file", path = "archive.jsonl" }}
route everything {{ to archive }}
"""


def test_the_running_daemon_refuses_a_reload_that_changes_the_cluster(
    nats_node: Rig, clients: Clients, tmp_path: Path
) -> None:
    stream = clients(nats_node).options.stream  # its streams are deleted at teardown
    servers = ", ".join(f'"{u}"' for u in nats_node.urls)
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(DAEMON.format(servers=servers, stream=stream))
    out = tmp_path / "stdout.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dsrouter", "run", "-c", str(conf)],
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while "Stop with" not in out.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        assert proc.poll() is None, out.read_text()

        run = dsrouter("reload", "-c", str(conf), cwd=tmp_path)
        assert run.returncode == 0 and "reloaded" in run.stdout, run.stderr

        conf.write_text(DAEMON.format(servers=servers, stream=stream + "x"))
        run = dsrouter("reload", "-c", str(conf), cwd=tmp_path)
        assert run.returncode == 1, (run.stdout, run.stderr)
        assert "cluster_stream cannot change on reload" in run.stderr
        assert "restart the daemon" in run.stderr
        assert "refused; the old configuration keeps running" in run.stderr
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            assert proc.wait(30) == 0
        finally:
            proc.kill()
