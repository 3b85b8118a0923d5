"""Inputs under hostile or mistaken senders, through the real daemon: TLS with client
certificates, allow-lists, per-peer connection limits, slow senders, bad octet counts."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import subprocess
import sys
import time

import orjson
import pytest
import trustme

from .conftest import wait_for_lines
from .delivery_support import wait_metric

LINE = (
    "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0|1000552|"
    "XSS|8|cn1=12 dvchost=web-01 msg=seq-{n}"
)


def reached(d, sample: str, value: float) -> None:
    """Wait until ``name{k="v",...}`` on the daemon's /metrics is at least ``value``."""
    name, _, rest = sample.partition("{")
    labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    wait_metric(d.metrics, name, lambda v: v >= value, **labels)


def archive(tmp_path, count, timeout=15.0):
    return wait_for_lines("data/archive/*.jsonl", count, tmp_path, timeout=timeout)


def config(inputs: str, metrics: bool = False) -> str:
    settings = 'settings { data_dir = "data"%s }\n' % (
        ', metrics = "127.0.0.1:0"' if metrics else ""
    )
    return (
        settings
        + inputs
        + '\noutput archive { type = "file", path = "archive/all.jsonl" }\n'
        + "route all { to archive }\n"
    )


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def pki(ca, tmp_path):
    files = {}
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    for name in ("dsm.example.com", "intruder.example.org"):
        cert = ca.issue_cert(name)
        path = tmp_path / f"{name}.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(path))
        files[name] = path
    files["server"] = tmp_path / "server.pem"
    files["ca"] = tmp_path / "ca.pem"
    return files


def tls_send(port, lines, pki, client=None, minimum=None):
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    if client is not None:
        ctx.load_cert_chain(str(pki[client]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"".join(b"%d %s" % (len(x), x) for x in lines))
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError, ssl.SSLError):
                sock.recv(1)


def tls_input(pki, extra=""):
    return (
        'input tls_in { type = "tls", listen = "127.0.0.1:0", '
        f'cert = "{pki["server"]}", key = "{pki["server"]}", client_ca = "{pki["ca"]}", '
        f'client_cert = "required"{extra} }}'
    )


def test_tls_with_client_certificates_and_peer_names(start_daemon, tmp_path, pki):
    d = start_daemon(config(tls_input(pki, ', peer_names = ["*.example.com"]')))
    port = d.ports["tls_in"]
    tls_send(port, [LINE.format(n=1).encode()], pki, client="dsm.example.com")
    events = archive(tmp_path, 1)
    assert events[0]["msg"] == "seq-1" and events[0]["input"] == "tls_in"
    for client in (None, "intruder.example.org"):  # no certificate; a name not allowed
        with contextlib.suppress(OSError, ssl.SSLError):
            tls_send(port, [LINE.format(n=2).encode()], pki, client=client)
    time.sleep(0.5)
    assert len(archive(tmp_path, 1)) == 1
    code, err = d.stop()
    assert code == 0
    reasons = [orjson.loads(x)["reason"] for x in err.splitlines() if "tls_refused" in x]
    assert any("presented no client certificate" in r for r in reasons), err
    assert any("intruder.example.org" in r and "peer_names" in r for r in reasons), err


def test_tls_input_refuses_old_protocols_and_plain_text(start_daemon, tmp_path, pki):
    d = start_daemon(config(tls_input(pki).replace('"required"', '"optional"'), metrics=True))
    port = d.ports["tls_in"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(LINE.format(n=9).encode() + b"\n")  # plain syslog on a TLS port
        with contextlib.suppress(OSError):
            sock.recv(1)
    tls_send(port, [LINE.format(n=1).encode()], pki)  # optional: no certificate is fine
    assert [e["msg"] for e in archive(tmp_path, 1)] == ["seq-1"]
    code, err = d.stop()
    assert code == 0
    assert "does not speak TLS" in err


def test_tls_client_hello_on_a_plain_tcp_input_is_refused_with_one_warning(
    start_daemon, tmp_path, pki
):
    d = start_daemon(config('input tcp_in { type = "tcp", listen = "127.0.0.1:0" }', True))
    port = d.ports["tcp_in"]
    for _ in range(3):
        with contextlib.suppress(OSError, ssl.SSLError):
            tls_send(port, [LINE.format(n=1).encode()], pki)
    reached(d, 'dsrouter_input_refused_total{input="tcp_in",reason="tls_on_plain"}', 3)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(LINE.format(n=2).encode() + b"\n")
    assert [e["msg"] for e in archive(tmp_path, 1)] == ["seq-2"]  # no garbage events
    code, err = d.stop()
    assert err.count("tls_on_plain_tcp") == 1


def test_allow_list_refuses_other_senders(start_daemon, tmp_path):
    d = start_daemon(
        config(
            'input udp_in { type = "udp", listen = "127.0.0.1:0", allow = [127.0.0.1] }\n'
            'input tcp_in { type = "tcp", listen = "127.0.0.1:0", allow = [127.0.0.0/30] }',
            metrics=True,
        )
    )
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.2", 0))
    udp.sendto(LINE.format(n=1).encode(), ("127.0.0.1", d.ports["udp_in"]))
    reached(d, 'dsrouter_input_refused_total{input="udp_in",reason="not_allowed"}', 1)
    udp.close()
    with socket.create_connection(
        ("127.0.0.1", d.ports["tcp_in"]), source_address=("127.0.0.5", 0)
    ) as s:
        with contextlib.suppress(OSError):
            s.sendall(LINE.format(n=2).encode() + b"\n")
            s.recv(1)
    reached(d, 'dsrouter_input_refused_total{input="tcp_in",reason="not_allowed"}', 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ok:
        ok.sendto(LINE.format(n=3).encode(), ("127.0.0.1", d.ports["udp_in"]))
    assert [e["msg"] for e in archive(tmp_path, 1)] == ["seq-3"]
    assert d.stop()[0] == 0


def test_one_peer_holding_every_connection_cannot_lock_others_out(start_daemon, tmp_path):
    d = start_daemon(
        config(
            'input tcp_in { type = "tcp", listen = "127.0.0.1:0", max_connections = 20, '
            "max_connections_per_peer = 0 }",
            metrics=True,
        )
    )
    port = d.ports["tcp_in"]
    hogs = [
        socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
        for _ in range(20)
    ]
    try:
        reached(d, 'dsrouter_input_connections_active{input="tcp_in"}', 20)
        for n in range(5):  # a well-behaved sender gets in, five times over
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(LINE.format(n=n).encode() + b"\n")
                s.shutdown(socket.SHUT_WR)
                with contextlib.suppress(OSError):
                    s.recv(1)
        assert sorted(e["msg"] for e in archive(tmp_path, 5)) == [f"seq-{n}" for n in range(5)]
        reached(d, 'dsrouter_input_refused_total{input="tcp_in",reason="evicted"}', 1)
    finally:
        for h in hogs:
            h.close()
    assert d.stop()[0] == 0


def test_per_peer_limit(start_daemon, tmp_path):
    d = start_daemon(
        config(
            'input tcp_in { type = "tcp", listen = "127.0.0.1:0", max_connections_per_peer = 3 }',
            metrics=True,
        )
    )
    port = d.ports["tcp_in"]
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        reached(d, 'dsrouter_input_refused_total{input="tcp_in",reason="per_peer"}', 2)
        reached(d, 'dsrouter_input_connections_active{input="tcp_in"}', 3)
    finally:
        for h in held:
            h.close()
    assert d.stop()[0] == 0


def test_slow_sender_is_cut_and_its_partial_message_kept_as_truncated(start_daemon, tmp_path):
    d = start_daemon(
        config(
            'input tcp_in { type = "tcp", listen = "127.0.0.1:0", partial_timeout = 1s }',
            metrics=True,
        )
    )
    with socket.create_connection(("127.0.0.1", d.ports["tcp_in"]), timeout=10) as s:
        s.sendall(LINE.format(n=1).encode() + b"\n")
        partial = LINE.format(n=2).encode()
        for i in range(40):  # one byte every 0.1 s: never finishes, never idle
            try:
                s.sendall(partial[i : i + 1])
            except OSError:
                break
            time.sleep(0.1)
    events = archive(tmp_path, 2)
    assert [e.get("truncated", False) for e in events] == [False, True]
    assert events[1]["raw"] == partial[: len(events[1]["raw"])].decode()
    reached(d, 'dsrouter_input_refused_total{input="tcp_in",reason="slow_sender"}', 1)
    assert d.stop()[0] == 0


def test_a_huge_octet_count_does_not_swallow_the_stream(start_daemon, tmp_path):
    d = start_daemon(config('input tcp_in { type = "tcp", listen = "127.0.0.1:0" }'))
    lines = [LINE.format(n=n).encode() for n in range(11)]
    with socket.create_connection(("127.0.0.1", d.ports["tcp_in"]), timeout=10) as s:
        s.sendall(b"999999999 " + b"".join(x + b"\n" for x in lines))
        s.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            s.recv(1)
    assert [e["msg"] for e in archive(tmp_path, 11)] == [f"seq-{n}" for n in range(11)]
    assert d.stop()[0] == 0


def test_rate_limit_drops_udp_and_slows_tcp_without_loss(start_daemon, tmp_path):
    d = start_daemon(
        config(
            'input udp_in { type = "udp", listen = "127.0.0.1:0", rate_limit = 20 }\n'
            'input tcp_in { type = "tcp", listen = "127.0.0.1:0", rate_limit = 200 }',
            metrics=True,
        )
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for n in range(100):
            udp.sendto(LINE.format(n=n).encode(), ("127.0.0.1", d.ports["udp_in"]))
    reached(d, 'dsrouter_input_dropped_total{input="udp_in",reason="rate_limited"}', 50)
    lines = [LINE.format(n=1000 + n).encode() for n in range(600)]
    with socket.create_connection(("127.0.0.1", d.ports["tcp_in"]), timeout=30) as s:
        for i in range(0, 600, 20):
            s.sendall(b"".join(x + b"\n" for x in lines[i : i + 20]))
        s.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            s.recv(1)
    events = archive(tmp_path, 600, timeout=30)
    got = {e["msg"] for e in events}
    assert {f"seq-{1000 + n}" for n in range(600)} <= got  # every TCP event, none lost
    reached(d, 'dsrouter_input_refused_total{input="tcp_in",reason="throttled"}', 1)
    assert d.stop()[0] == 0


def test_renewed_certificate_taken_on_reload_without_dropping_connections(
    start_daemon, tmp_path, ca
):
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    d = start_daemon(
        config(
            'input tls_in { type = "tls", listen = "127.0.0.1:0", cert = "server.pem", '
            'key = "server.pem" }'
        )
    )
    port = d.ports["tls_in"]
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    held = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    held.sendall(LINE.format(n=1).encode() + b"\n")
    archive(tmp_path, 1)

    renewed = trustme.CA()  # the renewed certificate comes from another CA
    renewed.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    renewed.cert_pem.write_to_path(str(tmp_path / "renewed-ca.pem"))
    done = subprocess.run(
        [sys.executable, "-m", "dsrouter", "reload", "-c", str(tmp_path / "dsrouter.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    held.sendall(LINE.format(n=2).encode() + b"\n")  # the established connection goes on
    assert [e["msg"] for e in archive(tmp_path, 2)] == ["seq-1", "seq-2"]
    held.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_send(port, [b"x"], {"ca": tmp_path / "ca.pem"})
    tls_send(port, [LINE.format(n=3).encode()], {"ca": tmp_path / "renewed-ca.pem"})
    assert [e["msg"] for e in archive(tmp_path, 3)][-1] == "seq-3"
    assert d.stop()[0] == 0
