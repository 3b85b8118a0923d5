"""TLS (server verified, client certificate) and user/password to a real nats-server, and
no secret in logs, errors or reprs."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from dsrouter.delivery.jetstream import JetStreamQueue
from dsrouter.delivery.jetstream_conn import ClusterOptions, JetStreamClient, redact

from ..delivery.support import Log
from .natsrig import Rig
from .test_jetstream_queue import drain, events, ids

PASSWORD = "s3cret-Pa55-never-logged"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("router.example")
    files = {
        "ca": root / "ca.pem",
        "server": root / "server.pem",
        "server_key": root / "server.key",
        "client": root / "client.pem",
        "client_key": root / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    return files


@pytest.fixture(scope="module")
def tls_node(nats_binary: str, pki: dict[str, Path], tmp_path_factory) -> Iterator[Rig]:
    extra = (
        f'tls {{\n  cert_file: "{pki["server"]}"\n  key_file: "{pki["server_key"]}"\n'
        f'  ca_file: "{pki["ca"]}"\n  verify: true\n}}\n'
        f'authorization {{\n  user: "router"\n  password: "{PASSWORD}"\n}}\n'
    )
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    ctx.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
    ready = {"tls": ctx, "user": "router", "password": PASSWORD}
    rig = Rig(nats_binary, tmp_path_factory.mktemp("tls"), 1, extra, ready)
    try:
        rig.start()
        yield rig
    finally:
        rig.close()


def options(rig: Rig, pki: dict[str, Path], **kw) -> ClusterOptions:
    base = dict(
        stream="tls",
        replicas=1,
        tls_ca=str(pki["ca"]),
        tls_cert=str(pki["client"]),
        tls_key=str(pki["client_key"]),
        user="router",
        password=PASSWORD,
        connect_timeout=2,
    )
    base.update(kw)
    return ClusterOptions((rig.nodes[0].url.replace("nats://", "tls://"),), **base)


def test_tls_with_a_client_certificate_and_a_password(tls_node: Rig, pki) -> None:
    client = JetStreamClient(options(tls_node, pki)).start()
    try:
        assert client.wait_connected(10), client.last_error
        q = JetStreamQueue("siem", client)
        q.publish(events(0, 5))
        assert sorted(ids(drain(q, 5))) == list(range(5))
        q.close()
    finally:
        client.close()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"password": "wrong-" + PASSWORD}, "Authorization Violation"),
        ({"tls_cert": None, "tls_key": None}, "BAD_CERTIFICATE"),  # no client certificate
    ],
)
def test_refused_connections_say_why_without_secrets(tls_node: Rig, pki, change, why) -> None:
    log = Log()
    opts = options(tls_node, pki, **change)
    client = JetStreamClient(opts, log).start()
    try:
        assert not client.wait_connected(1.5)
        q = JetStreamQueue("siem", client)
        with pytest.raises(OSError):
            q.publish(events(0, 1))
        reasons = [kw["reason"] for _, ev, kw in log.records if ev == "cluster_unreachable"]
        assert any(why in r for r in reasons), reasons
        assert len(reasons) == len(set(reasons))  # each once, not once per retry
        seen = [client.last_error, q.last_error, repr(opts), repr(log.records)]
        assert not any(PASSWORD in text for text in seen)
    finally:
        client.close()


def test_server_urls_are_redacted_for_display() -> None:
    opts = ClusterOptions(("nats://router:pw@10.0.0.1:4222", "tls://10.0.0.2:4222"), token="t0k")
    assert opts.display_servers == ["nats://***@10.0.0.1:4222", "tls://10.0.0.2:4222"]
    assert "t0k" not in repr(opts) and "pw" not in redact("nats://u:pw@h:1")
    with pytest.raises(ValueError, match="one of creds"):
        ClusterOptions(("nats://h:1",), token="t", user="u", password="p")
