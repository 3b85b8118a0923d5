"""Run the real daemon as a subprocess and talk to it over loopback sockets."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

BANNER = re.compile(r"^\s+input\s+(\S+)\s+(\S+)\s+(\S+):(\d+)(?:\s.*)?$")
METRICS = re.compile(r"^\s+metrics\s+http://([^/]+)/metrics")


class Daemon:
    def __init__(self, args: list[str], cwd: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dsrouter", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.ports: dict[str, int] = {}
        self.metrics: str | None = None
        self.banner: list[str] = []
        self._read_banner()

    def _read_banner(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise AssertionError(f"daemon exited early: {self.proc.stderr.read().decode()}")
            self.banner.append(line.rstrip("\n"))
            m = BANNER.match(line.rstrip("\n"))
            if m:
                self.ports[m.group(1)] = int(m.group(4))
            m = METRICS.match(line)
            if m:
                self.metrics = m.group(1)
            if line.startswith("Stop with"):
                return
        raise AssertionError("no start-up banner")

    def kill9(self) -> None:
        """SIGKILL: no drain, no clean-up; what was committed must survive."""
        self.proc.kill()
        self.proc.communicate(timeout=10)

    def stop(self, timeout: float = 20.0) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()


def wait_for_lines(path_glob, count: int, root: Path, timeout: float = 15.0) -> list[dict]:
    """Poll until ``count`` JSON lines exist in files matching ``path_glob`` under ``root``."""
    deadline = time.monotonic() + timeout
    events: list[dict] = []
    while time.monotonic() < deadline:
        events = [  # a line still being written (no newline yet) is read next time
            orjson.loads(x)
            for p in sorted(root.glob(path_glob))
            for x in p.read_bytes().split(b"\n")[:-1]
        ]
        if len(events) >= count:
            return events
        time.sleep(0.05)
    raise AssertionError(f"expected {count} events under {root}/{path_glob}, got {len(events)}")


@pytest.fixture
def start_daemon(tmp_path):
    started: list[Daemon] = []

    def start(config_text: str | None) -> Daemon:
        args = ["run"]
        if config_text is not None:
            conf = tmp_path / "dsrouter.conf"
            conf.write_text(config_text)
            args += ["-c", str(conf)]
        d = Daemon(args, tmp_path)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
        d.proc.communicate(timeout=10)
