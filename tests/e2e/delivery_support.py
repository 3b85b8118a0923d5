"""Shared pieces of the delivery tests: numbered events, senders, metrics, tmpfs."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

LINE = (
    "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
    "Generic Cross Site Scripting(XSS) Prevention|8|cn1=12 cn1Label=Host ID dvchost=web-01 "
    "src=203.0.113.9 act=Reset msg=seq-{n}"
)


def lines(start: int, count: int, pad: int = 0) -> list[bytes]:
    """Numbered test events; ``pad`` bytes more in a ``cs1`` value make them big."""
    tail = f" cs1={'x' * pad}".encode() if pad else b""
    return [LINE.format(n=n).encode() + tail for n in range(start, start + count)]


def seqs(events) -> list[int]:
    """The numbers carried by test events (``msg=seq-N``), in order."""
    return [
        int(ev["msg"].split("-")[1]) for ev in events if str(ev.get("msg", "")).startswith("seq-")
    ]


def send(port: int, messages: list[bytes], timeout: float = 30.0) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(m + b"\n" for m in messages))
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            sock.recv(1)  # the daemon closes after reading everything


class Streamer(threading.Thread):
    """Streams numbered events over one TCP connection until stopped or refused; ``sent``
    counts the events whose bytes ``sendall`` fully handed to the kernel."""

    def __init__(
        self, port: int, limit: int = 2_000_000, chunk: int = 50, pace: float = 0.0, pad: int = 0
    ):
        super().__init__(daemon=True)
        self.port, self.limit, self.chunk, self.pace, self.pad = port, limit, chunk, pace, pad
        self.sent = 0
        self.stop = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            while not self.stop.is_set() and self.sent < self.limit:
                batch = lines(self.sent, self.chunk, self.pad)
                sock.sendall(b"".join(m + b"\n" for m in batch))
                self.sent += len(batch)
                if self.pace:
                    time.sleep(self.pace)
        except OSError as exc:
            self.error = exc
        finally:
            sock.close()


def scrape(address: str) -> dict[tuple[str, tuple], float]:
    """``/metrics`` as ``{(sample name, sorted labels): value}``."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(address: str, name: str, **labels) -> float:
    return scrape(address).get((name, tuple(sorted(labels.items()))), 0.0)


def wait_metric(address: str, name: str, predicate, timeout: float = 20.0, **labels) -> float:
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        value = metric(address, name, **labels)
        if predicate(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} stayed at {value}")


def healthz(address: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small real filesystem that can fill up (needs root; skips cleanly without)."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path, leave: int) -> Path:
    """Fill the filesystem of ``directory`` until about ``leave`` bytes are free."""
    filler = directory / "filler"
    with open(filler, "wb") as fh:
        while True:
            import os

            free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
            if free <= leave:
                break
            try:
                fh.write(b"\0" * min(65536, free - leave))
                fh.flush()
            except OSError:
                break
    return filler
