"""The real daemon with a cluster that is not there: it starts, says so on /healthz, holds
what it receives, spools it at SIGTERM and commits it to the cluster at the next start.
Also: ``--role`` without a cluster is refused in one line."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from ..e2e.conftest import Daemon, wait_for_lines
from ..e2e.delivery_support import healthz
from .natsrig import Node, free_ports

CONFIG = """
settings {{
  data_dir = "data"
  workers = 0
  metrics = "127.0.0.1:0"
  shutdown_timeout = 3s
  cluster_servers = ["nats://127.0.0.1:{port}"]
  cluster_replicas = 1
}}
input tcp {{ type = "tcp"  listen = "127.0.0.1:0" }}
output archive {{ type = "file"  path = "{out}/archive.jsonl" }}
route all {{ to archive }}
"""

LINE = (
    "<134>Jan 10 10:00:00 dsa01 CEF:0|Trend Micro|Deep Security Agent|20.0|4000000|"
    "Eicar_test_file|6|cn1=1 cs1=n{i} act=Quarantine\n"
)


def send(port: int, count: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall("".join(LINE.format(i=i) for i in range(count)).encode())


def test_role_without_a_cluster_is_refused_in_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "plain.conf"
    conf.write_text(
        'input tcp { type = "tcp"  listen = "127.0.0.1:0" }\n'
        'output o { type = "file"  path = "o.jsonl" }\nroute all { to o }\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "dsrouter", "run", "-c", str(conf), "--role", "receive"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "--role receive needs a cluster" in run.stderr and "Traceback" not in run.stderr


def test_a_missing_cluster_holds_spools_at_stop_and_commits_at_the_next_start(
    nats_binary: str, tmp_path: Path
) -> None:
    port = free_ports(1)[0]
    out = tmp_path / "out"
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(CONFIG.format(port=port, out=out))
    first = Daemon(["run", "-c", str(conf)], tmp_path)
    try:
        assert first.metrics is not None
        status, body = healthz(first.metrics)
        assert status == 503 and "cluster unreachable" in body
        send(first.ports["tcp"], 50)
        code, err = first.stop()
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    assert code == 0, err
    assert '"events_spooled"' in err and '"events_lost"' not in err
    assert not out.exists()

    node = Node(nats_binary, "n1", tmp_path / "nats", port, None, "")
    node.start()
    second = Daemon(["run", "-c", str(conf)], tmp_path)
    try:
        events = wait_for_lines("archive.jsonl", 50, out, timeout=30)
        marks = sorted(re.search(r"cs1=(n\d+)", e["raw"]).group(1) for e in events)  # type: ignore[union-attr]
        assert marks == sorted(f"n{i}" for i in range(50))
        code, err = second.stop()
        assert code == 0 and '"spool_restored"' in err
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
        node.kill()
