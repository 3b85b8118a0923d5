"""What the SNS tests share: a signing key, a local HTTPS "cert host", messages, the daemon.

Nothing is mocked: messages are signed in the test with an RSA key whose certificate (issued
for ``sns.amazonaws.com`` by a throw-away CA) is served by a real HTTPS server on loopback,
which also answers SubscribeURLs; the daemon is ``python -m dsrouter run`` and the client is
httpx over real TLS.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from dsrouter.ingest.sns_verify import SIGNED

TOPIC = "arn:aws:sns:us-east-1:123456789012:ds-events"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-else"
CERT_PATH = "/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
#: A firewall event as Deep Security publishes it to SNS.
FIREWALL = {
    "EventType": "PacketLog",
    "Action": 1,
    "Reason": "Out Of Allowed Policy",
    "Hostname": "192.0.2.15 (file server) [i-0abc]",
    "HostID": 7,
    "SourceIP": "198.51.100.7",
    "DestinationPort": 445,
    "Flags": "SYN DF\u003d1",
    "TenantName": "Primary",
    "TenantID": 0,
}
BANNER = re.compile(r"^\s+input\s+(\S+)\s+(\S+)\s+(\S+):(\d+)(?:\s.*)?$")
CONFIRM_XML = (
    "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>"
    "{topic}:0bbd3a8e-1234</SubscriptionArn></ConfirmSubscriptionResult>"
    "</ConfirmSubscriptionResponse>"
)


def iso(when: datetime) -> str:
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def now_iso(**delta: float) -> str:
    return iso(datetime.now(UTC) + timedelta(**delta))


class Signer:
    """An RSA key and its certificate for ``name`` (PEM), issued by a throw-away CA."""

    def __init__(
        self,
        name: str = "sns.amazonaws.com",
        key_type: trustme.KeyType = trustme.KeyType.RSA,
        **validity: datetime,
    ) -> None:
        ca = trustme.CA(key_type=key_type)
        leaf = ca.issue_cert(name, key_type=key_type, **validity)
        self.cert_pem = leaf.cert_chain_pems[0].bytes()
        self.key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)

    def sign(self, message: dict, version: str = "2") -> dict:
        """``message`` with SignatureVersion and Signature over its canonical string."""
        fields = SIGNED[message["Type"]]
        text = "".join(f"{k}\n{message[k]}\n" for k in fields if k in message)
        digest = hashes.SHA256() if version == "2" else hashes.SHA1()
        raw = self.key.sign(text.encode(), padding.PKCS1v15(), digest)
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(raw).decode(),
        }


class CertHost:
    """A real HTTPS server on 127.0.0.1 serving ``routes`` (path → (status, body)); records
    every request's path and query."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        self.ca_file = tmp_path / "cert-host-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.requests: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append(self.path)
                status, body = host.routes.get(self.path.split("?", 1)[0], (404, b"no"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(ctx)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://{self.host}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Messages:
    """Signed SNS messages whose SigningCertURL is the cert host's."""

    def __init__(self, signer: Signer, certs: CertHost) -> None:
        self.signer, self.certs = signer, certs
        certs.routes[CERT_PATH] = (200, signer.cert_pem)
        self.cert_url = certs.url(CERT_PATH)

    def notification(self, events, topic: str = TOPIC, version: str = "2", **over) -> dict:
        message = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": events if isinstance(events, str) else json.dumps(events),
            "Timestamp": now_iso(),
            "SigningCertURL": self.cert_url,
            "UnsubscribeURL": self.certs.url("/?Action=Unsubscribe"),
        }
        message.update(over)
        return self.signer.sign(message, version)

    def confirmation(self, kind: str = "SubscriptionConfirmation", topic: str = TOPIC) -> dict:
        token = uuid.uuid4().hex * 4
        message = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm...",
            "SubscribeURL": self.certs.url(
                f"/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}"
            ),
            "Timestamp": now_iso(),
            "SigningCertURL": self.cert_url,
        }
        self.certs.routes["/"] = (200, CONFIRM_XML.format(topic=topic).encode())
        return self.signer.sign(message, "1")


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def cert_host(tmp_path):
    host = CertHost(tmp_path)
    yield host
    host.close()


@pytest.fixture
def messages(signer, cert_host) -> Messages:
    return Messages(signer, cert_host)


# ---- the daemon --------------------------------------------------------------------------------


class Router:
    """``python -m dsrouter run`` with an sns input; stderr (JSON log lines) goes to a file."""

    def __init__(self, workdir: Path, config: str) -> None:
        (workdir / "dsrouter.conf").write_text(config)
        self.workdir = workdir
        self.log_path = workdir / "dsrouter.log"
        self.ports: dict[str, int] = {}
        self.metrics: str | None = None
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dsrouter", "run", "-c", "dsrouter.conf"],
                cwd=workdir,
                stdout=subprocess.PIPE,
                stderr=log,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        self._read_banner()

    def _read_banner(self, timeout: float = 20.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise AssertionError(f"daemon exited early: {self.log_path.read_text()}")
            m = BANNER.match(line.rstrip("\n"))
            if m:
                self.ports[m.group(1)] = int(m.group(4))
            m = re.match(r"^\s+metrics\s+http://([^/]+)/metrics", line)
            if m:
                self.metrics = m.group(1)
            if line.startswith("Stop with"):
                return
        raise AssertionError("no start-up banner")

    def logs(self) -> list[dict]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                pass
        return out

    def wait_log(self, event: str, timeout: float = 10.0, **match) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in self.logs():
                if rec.get("event") == event and all(rec.get(k) == v for k, v in match.items()):
                    return rec
            time.sleep(0.05)
        raise AssertionError(f"no log line {event} {match}: {self.log_path.read_text()[-3000:]}")

    def archived(self, pattern: str = "data/archive*.jsonl") -> list[dict]:
        return [
            orjson.loads(x)
            for p in sorted(self.workdir.glob(pattern))
            for x in p.read_bytes().splitlines()
        ]

    def wait_archived(self, count: int, pattern: str = "data/archive*.jsonl", timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.archived(pattern)
            if len(events) >= count:
                return events
            time.sleep(0.05)
        raise AssertionError(f"expected {count} archived events, got {len(self.archived(pattern))}")

    def stop(self, timeout: float = 20.0) -> int:
        self.proc.terminate()
        self.proc.communicate(timeout=timeout)
        return self.proc.returncode


@pytest.fixture
def start_router(tmp_path):
    started: list[Router] = []

    def start(config: str) -> Router:
        router = Router(tmp_path, config)
        started.append(router)
        return router

    yield start
    for router in started:
        if router.proc.poll() is None:
            router.proc.kill()
        router.proc.communicate(timeout=10)


@pytest.fixture
def server_cert(tmp_path):
    """The sns input's own certificate (for 127.0.0.1) and the CA a client trusts."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "sns.pem", tmp_path / "sns.key", tmp_path / "client-ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert, key, ca_file


class HookSink:
    """A plain-HTTP webhook receiver on loopback answering ``status`` (200 records bodies)."""

    def __init__(self) -> None:
        self.status = 503
        self.bodies: list[bytes] = []
        self.attempts = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.attempts += 1
                status = sink.status
                if status < 300:
                    sink.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [e for body in list(self.bodies) for e in json.loads(body)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
