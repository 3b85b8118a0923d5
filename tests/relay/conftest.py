"""A real dsrouter daemon behind real relays (rsyslog, syslog-ng), all on loopback.

``router`` (one per module) is the daemon with a ``tcp`` and a ``udp`` input and a ``file``
output; :meth:`Router.take` waits for the next events it archived. :class:`Relay` runs one relay
process with a private config, pid and work folder, and waits until its input listens.
The ``rsyslogd`` and ``syslog_ng`` fixtures (tests/conftest.py) locate the binaries.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

START_TIMEOUT = 20.0
BANNER = re.compile(r"^\s+input\s+(\S+)\s+(\S+)\s+(\S+):(\d+)(?:\s.*)?$")
CONFIG = """\
settings { data_dir = "./data" }
input tcp_in { type = "tcp", listen = "127.0.0.1:0" }
input udp_in { type = "udp", listen = "127.0.0.1:0" }
output archive { type = "file", path = "archive/events.jsonl" }
route all { to archive }
"""


class Router:
    """The dsrouter daemon (``python -m dsrouter run``): its ports and its archive."""

    def __init__(self, workdir: Path) -> None:
        (workdir / "dsrouter.conf").write_text(CONFIG)
        self.log = workdir / "dsrouter.log"
        self.archive = workdir / "data/archive/events.jsonl"
        self.ports: dict[str, int] = {}
        self.seen = 0  # archived events already handed to a test
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dsrouter", "run", "-c", "dsrouter.conf"],
                cwd=workdir,
                stdout=subprocess.PIPE,
                stderr=log,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        self._read_banner()

    def _read_banner(self) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise AssertionError(f"dsrouter exited at start:\n{self.log.read_text()}")
            m = BANNER.match(line.rstrip("\n"))
            if m:
                self.ports[m.group(1)] = int(m.group(4))
            if line.startswith("Stop with"):
                return
        raise AssertionError("no start-up banner from dsrouter")

    def _lines(self) -> list[bytes]:
        data = self.archive.read_bytes() if self.archive.exists() else b""
        return data.split(b"\n")[:-1]  # whole lines only

    def skip_to_end(self) -> None:
        """Forget what is archived so far (a failed case's leftovers do not shift the next)."""
        self.seen = len(self._lines())

    def take(self, n: int, timeout: float = 15.0) -> list[dict]:
        """The next ``n`` archived events (waits for them, bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self._lines()
            if len(lines) >= self.seen + n:
                break
            if time.monotonic() > deadline:
                got = len(lines) - self.seen
                raise AssertionError(f"dsrouter archived {got} of {n} events")
            time.sleep(0.05)
        events = [orjson.loads(x) for x in lines[self.seen : self.seen + n]]
        self.seen += n
        return events

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate(timeout=10)


class Relay:
    """One relay process started in the foreground; ``port`` is its TCP input."""

    def __init__(self, name: str, argv: list[str], workdir: Path, port: int, env=None) -> None:
        self.name, self.workdir, self.port = name, workdir, port
        log = (workdir / "relay.log").open("wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited at start:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.name} is not listening on {self.port}:\n{self.log()}")

    def send(self, lines: list[str]) -> None:
        """Send ``lines`` LF-terminated on one TCP connection, as a DS Manager or Agent does."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"".join(x.encode() + b"\n" for x in lines))

    def log(self) -> str:
        return (self.workdir / "relay.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    r = Router(tmp_path_factory.mktemp("dsrouter"))
    yield r
    r.stop()
