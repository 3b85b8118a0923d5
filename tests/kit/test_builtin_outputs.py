"""The built-in outputs pass the same conformance kit third-party authors run."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from dsrouter.testing import Destination, OutputContract

from ..e2e.httpsink import HttpSink


class FileDestination(Destination):
    """Files on a real small file system (tmpfs): "transient" fills it up. A file output's
    permanent failures come from paths events choose, which no destination controls."""

    def __init__(self, root: Path, mounted: bool) -> None:
        self.root, self.mounted = root, mounted

    def delivered_ids(self) -> list[str]:
        path = self.root / "data" / "kit" / "out.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(x)["event_id"] for x in path.read_bytes().splitlines() if x]

    @contextlib.contextmanager
    def fail(self, mode: str):
        if mode != "transient" or not self.mounted:
            raise NotImplementedError(mode)
        filler = self.root / "filler"
        with filler.open("wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        try:
            yield
        finally:
            filler.unlink()


@pytest.fixture
def tmpfs_root(tmp_path):
    root = tmp_path / "fs"
    root.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)], capture_output=True
        ).returncode
        == 0
    )
    yield root, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(root)], check=False)


class TestFileOutput(OutputContract):
    type_name = "file"

    @pytest.fixture
    def destination(self, tmpfs_root):
        return FileDestination(*tmpfs_root)

    def data_dir(self, destination, tmp_path):
        return destination.root / "data"

    def options(self, destination):
        return {"path": "kit/out.jsonl", "format": "json"}


class HttpDestination(Destination):
    """A real HTTP server: 503 is transient, 400 permanent, and it can hang."""

    def __init__(self) -> None:
        self.sink = HttpSink()

    def delivered_ids(self) -> list[str]:
        return [e["event_id"] for e in self.sink.events()]

    @contextlib.contextmanager
    def fail(self, mode: str):
        if mode not in ("transient", "permanent"):
            raise NotImplementedError(mode)
        self.sink.status = 503 if mode == "transient" else 400
        try:
            yield
        finally:
            self.sink.status = 200


class TestWebhookOutput(OutputContract):
    type_name = "webhook"

    @pytest.fixture
    def destination(self):
        dest = HttpDestination()
        yield dest
        dest.sink.close()

    def options(self, destination):
        return {
            "url": destination.sink.url,
            "format": "ndjson",
            "bearer_token": "s3cret-token",
            "retry_statuses": [503],
        }


class TcpDestination(Destination):
    """A real TCP syslog listener reading LF-framed lines; "transient": nobody listening."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.lock = threading.Lock()
        self.last = time.monotonic()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while chunk := conn.recv(65536):
                buf += chunk
                *done, buf = buf.split(b"\n")
                with self.lock:
                    self.lines.extend(done)
                    self.last = time.monotonic()

    def delivered_ids(self) -> list[str]:
        """What the reader threads took in, once they have caught up with the kernel (what
        the peer acknowledged is in this process's socket buffers: idle 0.2 s)."""
        while time.monotonic() - self.last < 0.2:
            time.sleep(0.05)
        with self.lock:
            lines = list(self.lines)
        return [orjson.loads(x[x.index(b"{") :])["event_id"] for x in lines if b"{" in x]

    def fail(self, mode: str):
        raise NotImplementedError(mode)

    def close(self) -> None:
        self.stopped = True
        self.server.close()


class TestSiemOutput(OutputContract):
    type_name = "siem"

    @pytest.fixture
    def destination(self):
        dest = TcpDestination()
        yield dest
        dest.close()

    def options(self, destination):
        return {
            "endpoint": f"tcp://127.0.0.1:{destination.port}",
            "format": "json",
            "framing": "lf",
        }
