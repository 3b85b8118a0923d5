"""The conformance kit, and a real HTTP server that speaks the GitHub Issues API shape."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytest_plugins = ["dsrouter.testing"]

TOKEN = "ghp_test0123456789abcdef"
REPO = "secops/incidents"
_EVENT_ID = re.compile(r"^\| event_id \| `([^`]*)` \|$", re.MULTILINE)


class IssueServer:
    """``POST /repos/OWNER/NAME/issues`` on 127.0.0.1: 201 and the issue recorded, or an error.

    ``answers`` are given, in order, to the next requests: ``(status, headers)``, or None to
    answer as the API would; ``failing`` (when set) answers every request after them. Wrong
    credentials get 401, another repository 404, a body without a title 422, as the real API
    does. ``echo``: error answers repeat the request's Authorization header (as some proxies
    do)."""

    def __init__(self, token: str = TOKEN, repo: str = REPO) -> None:
        self.token, self.repo = token, repo
        self.lock = threading.Lock()
        self.issues: list[dict] = []
        self.requests: list[dict] = []  # every request: path, headers, body
        self.answers: list[tuple[int, dict[str, str]] | None] = []
        self.failing: tuple[int, dict[str, str]] | None = None
        self.echo = False
        # One thread, started before any output opens, and a connection per request: the
        # kit's check that close() gives back what open() took sees no thread of the server's.
        self.server = HTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"

    def event_ids(self) -> list[str]:
        """The event_id of every recorded issue, in arrival order (read back from its body)."""
        with self.lock:
            bodies = [issue["body"] for issue in self.issues]
        return [m.group(1) for body in bodies for m in [_EVENT_ID.search(body)] if m]

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, dict]:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": raw})
            scripted = self.answers.pop(0) if self.answers else self.failing
        if scripted is not None:
            status, extra = scripted
            echoed = f" for {headers.get('authorization')}" if self.echo else ""
            return status, extra, {"message": f"scripted {status}{echoed}"}
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"message": "Bad credentials"}
        if path != f"/api/v3/repos/{self.repo}/issues":
            return 404, {}, {"message": "Not Found"}
        try:
            issue = json.loads(raw)
        except ValueError:
            return 400, {}, {"message": "Problems parsing JSON"}
        if not isinstance(issue, dict) or not issue.get("title"):
            return 422, {}, {"message": "Validation Failed"}
        with self.lock:
            issue["number"] = len(self.issues) + 1
            issue["headers"] = headers
            self.issues.append(issue)
        return 201, {}, {"number": issue["number"], "html_url": f"https://x/{issue['number']}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, doc = sink._answer(self.path, headers, raw)
                body = json.dumps(doc).encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)


@pytest.fixture
def issue_servers() -> Iterator[Callable[[], IssueServer]]:
    """Start more Issues API servers (each closed at the end of the test)."""
    started: list[IssueServer] = []

    def start() -> IssueServer:
        started.append(IssueServer())
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def github(issue_servers) -> IssueServer:
    """A running Issues API server for ``REPO`` that accepts ``TOKEN``."""
    return issue_servers()
