"""The webhook output against a real HTTP(S) server on 127.0.0.1 (no mock of the client).

The server runs in a thread with a programmable reply function; every request it gets is
recorded. Each network call is bounded by the output's own timeout, and every slow reply waits
on an event the fixture sets at teardown.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import structlog
import trustme

from dsrouter.api import Duration, OutputContext, PartialFailure, PermanentFailure, RetryLater
from dsrouter.cli import main
from dsrouter.plugin import Plugins
from dsrouter.plugins.webhook import retry_after
from dsrouter.plugins.webhook_body import Template

KIND = Plugins(entry_points=False).outputs["webhook"]

EVENT = {
    "name": "Generic Cross Site Scripting(XSS) Prevention",
    "severity": 8,
    "module": "intrusion_prevention",
    "host": "web-01",
    "src": "203.0.113.9",
    "act": "Reset",
    "signature_id": 1000552,
    "syslog": {"hostname": "web-01", "facility": 16},
    "received_at": "2026-11-28T01:00:00+00:00",
}


def events(n: int) -> list[dict]:
    return [{**EVENT, "n": i} for i in range(n)]


# ---- the test server ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    port: int

    def json(self):
        return json.loads(self.body)

    def items(self) -> list:
        """The events of an array or NDJSON body."""
        if self.headers.get("content-type") == "application/x-ndjson":
            return [json.loads(line) for line in self.body.splitlines()]
        return self.json()


class Server:
    """A threaded HTTP/1.1 server; ``reply(request)`` decides each answer (default 200)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Request] = []
        self.script: deque[Reply] = deque()
        self.reply: Callable[[Request], Reply] = lambda req: (
            self.script.popleft() if self.script else Reply()
        )
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.active = self.max_active = 0
        self.httpd = _HTTPServer(("127.0.0.1", 0), _handler(self), tls)
        self.port = self.httpd.server_address[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def handle(self, req: Request) -> Reply:
        with self.lock:
            self.requests.append(req)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            reply = self.reply(req)
            if reply.delay:
                self.stop.wait(reply.delay)
            return reply
        finally:
            with self.lock:
                self.active -= 1


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        super().__init__(address, handler)

    def finish_request(self, request, client_address) -> None:
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(5)
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return None
        try:
            super().finish_request(conn, client_address)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that went away (timeout tests) is expected


def _handler(server: Server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            req = Request(self.path, headers, body, self.client_address[1])
            reply = server.handle(req)
            try:
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except OSError:
                self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def make(tmp_path):
    """Build and open a webhook output with the declared defaults plus ``opts``."""
    made = []

    def make(url: str, logger=None, **opts):
        options = {o.name: o.default for o in KIND.options if not o.required}
        options.update(url=url, timeout=Duration(opts.pop("timeout", 5)), **opts)
        out = KIND.factory("pager", options, OutputContext(tmp_path, tmp_path, logger))
        made.append(out)
        out.open()
        return out

    yield make
    for out in made:
        out.close()


# ---- status policy --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(server, make, status):
    server.script.append(Reply(status))
    make(server.url).send(events(2))
    (req,) = server.requests
    assert req.path == "/hook" and [e["n"] for e in req.json()] == [0, 1]


def test_request_bodies_are_not_kept_alive_by_reference_cycles(server, make):
    """The daemon runs the cyclic collector rarely: no batch body may wait for it."""
    import gc

    out = make(server.url)
    big = [{"n": i, "raw": "x" * 2000} for i in range(200)]
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            server.script.append(Reply(200))
            out.send(big)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        sizes = [
            len(getattr(o, "_stream", b"") or b"")
            for o in gc.garbage
            if type(o).__name__ == "ByteStream"
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert len(server.requests) == 3
    assert max(sizes, default=0) < 100_000  # a 400 KB body would be here without the fix


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 507, 599])
def test_transient_statuses_retry_later(server, make, status):
    server.script.append(Reply(status, b"busy"))
    with pytest.raises(RetryLater) as info:
        make(server.url).send(events(2))
    assert f"HTTP {status}" in str(info.value) and "busy" in str(info.value)
    assert info.value.retry_after is None


def test_retry_after_seconds_and_http_date(server, make):
    out = make(server.url)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.script.extend(
        [
            Reply(429, headers={"Retry-After": "120"}),
            Reply(503, headers={"Retry-After": later}),
            Reply(429, headers={"Retry-After": "999999"}),
            Reply(429, headers={"Retry-After": "soon"}),
        ]
    )
    got = []
    for _ in range(4):
        with pytest.raises(RetryLater) as info:
            out.send(events(1))
        got.append(info.value.retry_after)
    assert got[0] == 120.0
    assert 25 <= got[1] <= 30
    assert got[2] == 3600.0 and got[3] is None


def test_retry_after_parser():
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after(None) is None and retry_after("") is None
    assert retry_after(" 7 ") == 7.0 and retry_after(past) == 0.0
    assert retry_after("-5") is None and retry_after("Sun, 99 Foo") is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 301])
def test_other_statuses_are_permanent_with_status_and_body(server, make, status):
    server.script.append(Reply(status, b'{"error": "bad event"}'))
    with pytest.raises(PermanentFailure) as info:
        make(server.url).send(events(2))
    assert info.value.response == {"status": status, "body": '{"error": "bad event"}'}
    assert f"HTTP {status}" in str(info.value)


def test_permanent_failure_body_is_truncated_to_4_kib(server, make):
    server.script.append(Reply(400, b"x" * 100_000))
    with pytest.raises(PermanentFailure) as info:
        make(server.url).send(events(1))
    assert info.value.response["body"] == "x" * 4096
    assert len(str(info.value)) < 300


def test_retry_statuses_option(server, make):
    out = make(server.url, retry_statuses=[409])
    server.script.extend([Reply(409), Reply(408), Reply(500)])
    with pytest.raises(RetryLater):
        out.send(events(1))
    with pytest.raises(PermanentFailure):
        out.send(events(1))
    with pytest.raises(RetryLater):  # every 5xx, listed or not
        out.send(events(1))


def test_connection_refused_retries_later(make):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryLater) as info:
        make(f"http://127.0.0.1:{port}/x").send(events(1))
    assert "ConnectError" in str(info.value)


def test_slow_server_times_out_within_bound(server, make):
    server.script.append(Reply(200, delay=5))
    out = make(server.url, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(RetryLater) as info:
        out.send(events(1))
    assert time.monotonic() - start < 2.5
    assert "no answer within 0.3s" in str(info.value)


def test_keep_alive_reuses_one_connection(server, make):
    out = make(server.url)
    for _ in range(3):
        out.send(events(1))
    assert len({r.port for r in server.requests}) == 1


# ---- per-event mode: partial failures -------------------------------------------------------


def _by_n(statuses: dict[int, Reply]):
    return lambda req: statuses.get(req.json()["n"], Reply())


def test_per_event_permanent_failure_rejects_that_event_only(server, make):
    server.reply = _by_n({1: Reply(400, b"no")})
    with pytest.raises(PartialFailure) as info:
        make(server.url, format="json").send(events(3))
    assert set(info.value.rejected) == {1} and info.value.retry == ()
    assert info.value.rejected[1].response == {"status": 400, "body": "no"}
    assert [r.json()["n"] for r in server.requests] == [0, 1, 2]


def test_per_event_transient_failure_retries_the_rest_only(server, make):
    server.reply = _by_n({0: Reply(404), 2: Reply(503, headers={"Retry-After": "9"})})
    with pytest.raises(PartialFailure) as info:
        make(server.url, format="json").send(events(5))
    assert set(info.value.rejected) == {0}
    assert info.value.retry == (2, 3, 4) and info.value.retry_after == 9.0
    assert [r.json()["n"] for r in server.requests] == [0, 1, 2]  # 3 and 4 never sent


def test_per_event_transient_on_first_event_is_plain_retry(server, make):
    server.reply = _by_n({0: Reply(500)})
    with pytest.raises(RetryLater):
        make(server.url, format="json").send(events(3))
    assert len(server.requests) == 1


def test_per_event_single_event_permanent(server, make):
    server.script.append(Reply(422))
    with pytest.raises(PermanentFailure):
        make(server.url, format="json").send(events(1))


# ---- 413 splitting --------------------------------------------------------------------------


def _413(limit: int | None = None, big: bool = False, then: dict[int, Reply] | None = None):
    calls = []

    def reply(req: Request) -> Reply:
        calls.append(req)
        batch = req.items()
        if then and len(calls) in then:
            return then[len(calls)]
        if (limit is not None and len(batch) > limit) or (big and any(e.get("big") for e in batch)):
            return Reply(413, b"too large")
        return Reply(200)

    return reply


def _bodies(server) -> list[list[int]]:
    return [[e["n"] for e in r.json()] for r in server.requests]


def test_413_splits_batch_in_halves(server, make):
    server.reply = _413(limit=2)
    make(server.url).send(events(5))
    assert _bodies(server) == [[0, 1, 2, 3, 4], [0, 1], [2, 3, 4], [2], [3, 4]]


def test_413_down_to_a_single_event_rejects_it(server, make):
    server.reply = _413(big=True)
    batch = events(4)
    batch[2]["big"] = True
    with pytest.raises(PartialFailure) as info:
        make(server.url, format="ndjson").send(batch)
    assert set(info.value.rejected) == {2} and info.value.retry == ()
    assert info.value.rejected[2].response["status"] == 413
    delivered = [r.items() for r in server.requests if b'"big"' not in r.body]
    assert sorted(e["n"] for batch in delivered for e in batch) == [0, 1, 3]


def test_413_then_transient_retries_the_unsent_rest(server, make):
    server.reply = _413(limit=0, then={2: Reply(200), 3: Reply(503)})
    with pytest.raises(PartialFailure) as info:
        make(server.url).send(events(4))
    assert info.value.retry == (2, 3) and not info.value.rejected
    assert _bodies(server) == [[0, 1, 2, 3], [0, 1], [2, 3]]


def test_413_on_a_single_event_batch_is_permanent(server, make):
    server.script.append(Reply(413))
    with pytest.raises(PermanentFailure) as info:
        make(server.url).send(events(1))
    assert info.value.response["status"] == 413


# ---- bodies ---------------------------------------------------------------------------------


def test_format_json_one_request_per_event(server, make):
    make(server.url, format="json").send(events(3))
    assert [r.json()["n"] for r in server.requests] == [0, 1, 2]
    assert {r.headers["content-type"] for r in server.requests} == {"application/json"}
    assert server.requests[0].json()["syslog"] == {"hostname": "web-01", "facility": 16}


def test_format_array_one_json_array_per_batch(server, make):
    make(server.url, format="array").send(events(3))
    (req,) = server.requests
    assert req.headers["content-type"] == "application/json"
    assert [e["n"] for e in req.json()] == [0, 1, 2]


def test_format_ndjson_one_line_per_event(server, make):
    make(server.url, format="ndjson").send(events(3))
    (req,) = server.requests
    assert req.headers["content-type"] == "application/x-ndjson"
    assert req.body.endswith(b"\n")
    assert [json.loads(line)["n"] for line in req.body.splitlines()] == [0, 1, 2]


def test_slack_preset_one_message_per_event_and_escaped(server, make):
    batch = events(2)
    batch[1]["name"] = "<!channel> & <http://evil|click>"
    make(server.url, preset="slack", format="array").send(batch)
    assert len(server.requests) == 2
    first, second = (r.json() for r in server.requests)
    assert set(first) == {"text"}
    assert "*Generic Cross Site Scripting(XSS) Prevention*" in first["text"]
    assert "Host: web-01" in first["text"] and "Severity: 8" in first["text"]
    assert "<" not in second["text"] and "&lt;!channel&gt; &amp;" in second["text"]


def test_teams_preset_adaptive_card(server, make):
    make(server.url, preset="teams").send(events(1))
    body = server.requests[0].json()
    assert body["type"] == "message"
    card = body["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    title, facts = card["content"]["body"]
    assert title["text"] == EVENT["name"]
    assert {"title": "Host", "value": "web-01"} in facts["facts"]


def test_template_values_are_json_escaped_and_not_reexpanded(server, make):
    nasty = 'he said "hi" \\ back\nslash {severity} }} {{ \t\x01 ☃'
    template = (
        '{{"text": "{name} on {syslog.hostname}", "sev": {severity}, '
        '"missing": "{nope}", "deep": "{syslog.nope.x}", "obj": "{syslog}", "lit": "{{x}}"}}'
    )
    make(server.url, format="json", template=template).send([{**EVENT, "name": nasty}])
    body = server.requests[0].json()
    assert body == {
        "text": f"{nasty} on web-01",
        "sev": 8,
        "missing": "",
        "deep": "",
        "obj": '{"hostname":"web-01","facility":16}',
        "lit": "{x}",
    }


def test_template_with_array_and_ndjson(server, make):
    make(server.url, template='{{"h": "{host}"}}').send(events(2))
    make(server.url, template='{{"n": {n}}}', format="ndjson").send(events(2))
    assert server.requests[0].json() == [{"h": "web-01"}, {"h": "web-01"}]
    assert server.requests[1].body == b'{"n": 0}\n{"n": 1}\n'


@pytest.mark.parametrize("bad", ['{"a": "{x}"}', "{x", "x}", "{1x}", "{a..b}"])
def test_template_lone_brace_is_refused(bad):
    with pytest.raises(ValueError, match="lone"):
        Template(bad)


# ---- headers and authentication -------------------------------------------------------------


def test_bearer_token_and_custom_headers_reach_server(server, make):
    make(
        server.url,
        bearer_token="tok-123",
        headers=["X-Source: dsrouter", "Content-Type: application/vnd.ds+json"],
    ).send(events(1))
    h = server.requests[0].headers
    assert h["authorization"] == "Bearer tok-123"
    assert h["x-source"] == "dsrouter"
    assert h["content-type"] == "application/vnd.ds+json"


def test_basic_auth_reaches_server(server, make):
    make(server.url, basic_auth="alice:pa:ss").send(events(1))
    expected = "Basic " + base64.b64encode(b"alice:pa:ss").decode()
    assert server.requests[0].headers["authorization"] == expected


SECRETS = ("s3cr3t-BEARER", "k3y-HEADER-val", "pa55w0rd-BASIC", "T000SECRETPATH")


def test_secrets_never_in_describe_exceptions_or_logs(server, make, caplog):
    caplog.set_level(logging.DEBUG)
    statuses = iter([403, 503, 403, 503])
    # a server that echoes the request headers back in its error bodies
    server.reply = lambda req: Reply(next(statuses), json.dumps(req.headers).encode())
    url = server.url.replace("/hook", "/hooks/T000SECRETPATH")
    errors: list[Exception] = []
    with structlog.testing.capture_logs() as logs:
        out = make(url, logger=structlog.get_logger(), bearer_token=SECRETS[0], format="json")
        out2 = make(url, basic_auth="bob:" + SECRETS[2], headers=["X-Key: " + SECRETS[1]])
        for o in (out, out2):
            for _ in range(2):
                with pytest.raises((PermanentFailure, RetryLater)) as info:
                    o.send(events(1))
                errors.append(info.value)
    assert server.requests[0].headers["authorization"] == "Bearer " + SECRETS[0]
    assert server.requests[2].headers["x-key"] == SECRETS[1]
    texts = [str(e) for e in errors] + [out.describe(), out2.describe(), caplog.text, repr(logs)]
    texts += [json.dumps(e.response) for e in errors if isinstance(e, PermanentFailure)]
    joined = "\n".join(texts)
    for secret in SECRETS:
        assert secret not in joined
    assert base64.b64encode(b"bob:" + SECRETS[2].encode()).decode() not in joined
    assert "HTTP Request: POST" in caplog.text  # httpx did log the request, without the path
    assert out.describe() == f"POST http://127.0.0.1:{server.port}/… (one request per event)"
    assert "[redacted]" in errors[0].response["body"]  # scrubbed, not dropped


def test_open_errors_never_quote_secrets(make):
    with pytest.raises(ValueError) as info:
        make("http://127.0.0.1:9/x", headers=["X-Key " + SECRETS[1]])
    assert SECRETS[1] not in str(info.value) and "headers[0]" in str(info.value)
    with pytest.raises(ValueError) as info:
        make("ftp://u:" + SECRETS[2] + "@example.com/" + SECRETS[3])
    assert not any(s in str(info.value) for s in SECRETS)


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"bearer_token": "a", "basic_auth": "b:c"}, "not both"),
        ({"basic_auth": "nocolon"}, "basic_auth"),
        ({"bearer_token": "a", "headers": ["Authorization: x"]}, "Authorization"),
        ({"key": "k.pem"}, "cert"),
        ({"retry_statuses": [503, "x"]}, "retry_statuses"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"template": "{oops"}, "template"),
        ({"ca": "missing-ca.pem"}, "ca"),
    ],
)
def test_open_rejects_bad_options(make, opts, message):
    url = opts.pop("url", "http://127.0.0.1:9/x")
    with pytest.raises(ValueError, match=message):
        make(url, **opts)


# ---- proxies, concurrency -------------------------------------------------------------------


def test_http_proxy_from_environment_is_used(server, make, monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    make("http://webhook.invalid/x").send(events(1))
    assert server.requests[0].path == "http://webhook.invalid/x"


def test_max_in_flight_concurrent_sends(server, make):
    server.reply = lambda req: Reply(200, delay=0.3)
    out = make(server.url, max_in_flight=3)
    assert out.concurrency == 3
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            out.send([{**EVENT, "n": i}])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert sorted(r.json()[0]["n"] for r in server.requests) == list(range(6))
    assert 2 <= server.max_active <= 3


# ---- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def _tls_server(ca, require_client: bool = False) -> Server:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    if require_client:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return Server(tls=ctx)


@pytest.fixture
def tls_server(ca):
    s = _tls_server(ca)
    yield s
    s.close()


def _ca_file(ca, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_https_verified_with_ca(tls_server, make, ca, tmp_path):
    make(tls_server.url, ca=_ca_file(ca, tmp_path)).send(events(1))
    assert len(tls_server.requests) == 1


def test_https_untrusted_certificate_retries_later(tls_server, make):
    with pytest.raises(RetryLater) as info:
        make(tls_server.url).send(events(1))
    assert "certificate verify failed" in str(info.value)
    assert tls_server.requests == []


def test_https_verify_false_skips_checks_and_warns(tls_server, make):
    with structlog.testing.capture_logs() as logs:
        make(tls_server.url, verify=False, logger=structlog.get_logger()).send(events(1))
    assert len(tls_server.requests) == 1
    assert [e["event"] for e in logs] == ["webhook_tls_unverified"]


def test_mutual_tls_with_client_certificate(ca, make, tmp_path):
    server = _tls_server(ca, require_client=True)
    try:
        client = ca.issue_cert("dsrouter-client")
        client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
        client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
        ca_file = _ca_file(ca, tmp_path)
        with pytest.raises(RetryLater):
            make(server.url, ca=ca_file).send(events(1))
        assert server.requests == []
        # relative paths resolve against the config directory (tmp_path here)
        make(server.url, ca="ca.pem", cert="client.pem", key="client.key").send(events(1))
        assert len(server.requests) == 1
    finally:
        server.close()


# ---- registration and `dsrouter check` ------------------------------------------------------


def test_registered_as_disk_queued_builtin():
    assert KIND.default_queue == "disk" and KIND.plugin == "webhook"
    secret = {o.name for o in KIND.options if o.secret}
    assert secret == {"url", "headers", "bearer_token", "basic_auth"}


def _check(tmp_path, block: str, capsys) -> tuple[int, str]:
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(f"output pager {{ {block} }}\nroute all {{ to pager }}\n")
    code = main(["check", "-c", str(conf)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_check_accepts_webhook_options(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAGER_TOKEN", "tok")
    block = (
        'type = "webhook", url = "http://127.0.0.1:9/x", format = "ndjson", preset = "generic",'
        ' timeout = 3s, headers = ["X-A: b"], bearer_token = env("PAGER_TOKEN"), verify = true,'
        ' retry_statuses = [429, 503], max_in_flight = 2, template = "{{\\"h\\": \\"{host}\\"}}"'
    )
    code, text = _check(tmp_path, block, capsys)
    assert code == 0, text


@pytest.mark.parametrize(
    "block, expected",
    [
        ('type = "webhook", url = "http://h/x", format = "xml"', '"json", "array", "ndjson"'),
        ('type = "webhook", url = "http://h/x", preset = "discord"', '"slack", "teams"'),
        ('type = "webhook", url = "http://h/x", timout = 3s', "unknown option 'timout'"),
        ('type = "webhook", format = "json"', "url"),
        ('type = "webhook", url = "http://h/x", max_in_flight = "4"', "max_in_flight"),
    ],
)
def test_check_rejects_bad_webhook_options(tmp_path, capsys, block, expected):
    code, text = _check(tmp_path, block, capsys)
    assert code == 1 and expected in text


def test_check_never_echoes_a_secret_value(tmp_path, capsys):
    block = 'type = "webhook", url = "http://h/x", bearer_token = ["s3cr3t-in-list"]'
    code, text = _check(tmp_path, block, capsys)
    assert code == 1 and "bearer_token" in text
    assert "s3cr3t-in-list" not in text.split("\n", 1)[0]


def test_docs_example_config_checks(tmp_path, capsys, monkeypatch):
    text = (Path(__file__).resolve().parents[2] / "docs" / "outputs" / "webhook.md").read_text()
    example = re.search(r"```\n(.*?)```", text, re.S).group(1)
    token = tmp_path / "pager.token"
    token.write_text("tok\n")
    monkeypatch.setenv("PAGER_URL", "https://pager.example.com/v1/events")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(example.replace("/etc/dsrouter/pager.token", str(token)))
    assert main(["check", "-c", str(conf)]) == 0, capsys.readouterr().err


def test_docs_template_example_renders_json():
    text = (Path(__file__).resolve().parents[2] / "docs" / "outputs" / "webhook.md").read_text()
    line = re.search(r'^template = "(.*)"$', text, re.M).group(1)
    rendered = Template(line.replace('\\"', '"')).render(EVENT)
    assert json.loads(rendered) == {
        "text": f"{EVENT['name']} on web-01 (web-01)",
        "severity": 8,
    }
