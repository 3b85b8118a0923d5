"""``bench/durable_peers.py``: the C daemons' durable full-parse contenders render from the shared
harness's templates, pass the daemons' own configuration checks, and really run: lines sent over
TCP reach both output files while the queue is on disk."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import REPO, SyslogNg, free_port, missing_peer

SCRIPT = REPO / "bench" / "durable_peers.py"
SHARED = Path(os.environ.get("DSROUTER_SHARED") or REPO.parent / "shared")
LINE = (
    "<134>Nov 27 23:18:32 web-07 CEF:0|Trend Micro|Deep Security Agent|20.0|{sig}|Port scan|{sev}|"
    "cn1=12 dvchost=web-07 src=10.0.0.{i} dpt=445\n"
)


@pytest.fixture(scope="module")
def bench() -> Path:
    if not (SHARED / "bench" / "configs" / "rsyslog-fullparse.conf.tmpl").is_file():
        missing_peer(f"the shared bench harness ({SHARED / 'bench'})")
    return SHARED / "bench"


def command(peer: str, tmp: Path, bench: Path, port: int, sng: SyslogNg | None) -> list[str]:
    argv = [sys.executable, str(SCRIPT), peer, "--port", str(port), "--out", str(tmp / "out.log")]
    argv += ["--sev", str(tmp / "sev.log"), "--bench", str(bench), "--work", str(tmp)]
    return argv + (["--syslog-ng", str(sng.root)] if sng else [])


def daemon_for(peer: str, request: pytest.FixtureRequest) -> SyslogNg | None:
    """The unpacked syslog-ng for its peer, None for rsyslog's (checked to be installed)."""
    if peer.startswith("syslog-ng"):
        return request.getfixturevalue("syslog_ng")
    request.getfixturevalue("rsyslogd")
    return None


@pytest.mark.parametrize("peer", ["rsyslog-disk", "rsyslog-disk-2w", "syslog-ng-reliable"])
def test_the_rendered_configuration_passes_the_daemons_check(
    peer: str, tmp_path: Path, bench: Path, request: pytest.FixtureRequest
) -> None:
    sng = daemon_for(peer, request)
    done = subprocess.run(
        [*command(peer, tmp_path, bench, 15514, sng), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    conf = (tmp_path / ("syslog-ng.conf" if sng else "rsyslog.conf")).read_text()
    assert ("disk-buffer(reliable(yes)" if sng else 'queue.type="Disk"') in conf
    assert "@PORT_TCP@" not in conf and ("port(15514)" if sng else 'port="15514"') in conf


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.parametrize("peer", ["rsyslog-disk", "syslog-ng-reliable"])
def test_the_durable_peer_delivers_what_it_is_sent(
    peer: str, tmp_path: Path, bench: Path, request: pytest.FixtureRequest
) -> None:
    sng = daemon_for(peer, request)
    port = free_port()
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(command(peer, tmp_path, bench, port, sng), stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "the peer never listened"
                time.sleep(0.1)
        with conn:
            data = "".join(
                LINE.format(sig=1000 + i, sev=8 if i % 3 == 0 else 3, i=i) for i in range(300)
            )
            conn.sendall(data.encode())
        while (lines(tmp_path / "out.log"), lines(tmp_path / "sev.log")) != (300, 100):
            assert time.monotonic() < deadline, (
                lines(tmp_path / "out.log"),
                lines(tmp_path / "sev.log"),
            )
            time.sleep(0.1)
        names = sorted(p.name for p in tmp_path.iterdir())
        assert [n for n in names if n.startswith("benchq") or n.endswith(".rqf")], names  # on disk
    finally:
        proc.terminate()
        proc.wait(timeout=30)
