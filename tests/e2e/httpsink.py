"""A real HTTP server on loopback that records what it receives and answers as told."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HttpSink:
    """``status`` is the answer to every POST (200 records the body); ``hang`` makes the
    server read the request and never answer; ``down()`` closes the socket (refused)."""

    def __init__(self, port: int = 0) -> None:
        self.status = 200
        self.hang = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.bodies: list[bytes] = []
        self.requests = 0
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.requests += 1
                if sink.hang.is_set():
                    sink.release.wait(60)
                    return
                status = sink.status
                if status < 300:
                    with sink.lock:
                        sink.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if status >= 300 else b"ok")

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict]:
        """Every event received, whatever the body format (array, object or NDJSON)."""
        out: list[dict] = []
        with self.lock:
            bodies = list(self.bodies)
        for body in bodies:
            text = body.decode()
            if text.lstrip().startswith("["):
                out.extend(json.loads(text))
            else:
                out.extend(json.loads(line) for line in text.splitlines() if line.strip())
        return out

    def wait_events(self, count: int, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                return events
            time.sleep(0.05)
        raise AssertionError(f"expected {count} events at the HTTP sink, got {len(self.events())}")

    def close(self) -> None:
        self.release.set()
        self.down()
