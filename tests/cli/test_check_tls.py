"""`dsrouter check-tls` against real TLS servers on loopback, one per failure an operator meets."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import subprocess
import sys
import threading

import pytest
import trustme


class Server(threading.Thread):
    """Accepts TLS connections with ``ctx`` until closed; reads until the peer goes."""

    def __init__(self, ctx: ssl.SSLContext | None) -> None:
        super().__init__(daemon=True)
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError, ssl.SSLError):
                conn.settimeout(3)
                if self.ctx is not None:
                    conn = self.ctx.wrap_socket(conn, server_side=True)
                    conn.recv(100)
                else:  # a plain syslog receiver: reads the ClientHello, never answers
                    while conn.recv(100):
                        pass
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def server_ctx(ca, tmp_path, *, require_client=False, expired=False, names=("127.0.0.1",)):
    kw = {}
    if expired:
        kw["not_after"] = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = ca.issue_cert(*names, **kw)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    if require_client:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture
def serve():
    started = []

    def start(ctx):
        s = Server(ctx)
        s.start()
        started.append(s)
        return s.port

    yield start
    for s in started:
        s.stop.set()
        s.join(timeout=5)
        s.sock.close()


def check_tls(*args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "dsrouter", "check-tls", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_ok(serve, ca, tmp_path, ca_file):
    port = serve(server_ctx(ca, tmp_path))
    code, out = check_tls(f"127.0.0.1:{port}", "--ca", ca_file)
    assert code == 0 and out.startswith("OK: TLSv1.") and "127.0.0.1" in out


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("wrong-ca", "not signed by a CA you trust"),
        ("expired", "has expired"),
        ("name", "name mismatch"),
        ("no-client-cert", "requires a client certificate"),
        ("plain", "did not answer the TLS handshake"),
    ],
)
def test_failures_in_plain_words(kind, expected, serve, ca, tmp_path, ca_file):
    args = ["--ca", ca_file]
    if kind == "wrong-ca":
        args = ["--ca", _other_ca(tmp_path)]
        port = serve(server_ctx(ca, tmp_path))
    elif kind == "expired":
        port = serve(server_ctx(ca, tmp_path, expired=True))
    elif kind == "name":
        port = serve(server_ctx(ca, tmp_path, names=("dsm.example.com",)))
    elif kind == "no-client-cert":
        port = serve(server_ctx(ca, tmp_path, require_client=True))
    else:
        port = serve(None)
    code, out = check_tls(f"127.0.0.1:{port}", "--timeout", "1", *args)
    assert code == 1, out
    assert out.startswith("FAILED: ") and expected in out, out


def test_client_certificate_accepted(serve, ca, tmp_path, ca_file):
    port = serve(server_ctx(ca, tmp_path, require_client=True))
    client = tmp_path / "client.pem"
    ca.issue_cert("dsm.example.com").private_key_and_cert_chain_pem.write_to_path(str(client))
    code, out = check_tls(f"127.0.0.1:{port}", "--ca", ca_file, "--cert", str(client))
    assert code == 0, out


def test_refused_and_bad_target_are_one_line_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = check_tls(f"127.0.0.1:{port}")
    assert code == 1 and "cannot connect" in out
    code, out = check_tls("no-port-here")
    assert code == 2 and "expected HOST:PORT" in out


def _other_ca(tmp_path) -> str:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)
