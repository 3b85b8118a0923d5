"""The ``siem`` output against real rsyslog and syslog-ng receivers, over TCP and TLS.

What the receiver wrote is checked, not what was sent: ``raw`` must arrive byte for byte;
``cef``, ``leef`` and ``json`` must parse back (with dsrouter's own parser, or json) to the
event's fields from the host, app, time and message the receiver understood. One daemon of
each kind serves the whole module (conftest.py).
"""

from __future__ import annotations

import json
import socket
from datetime import datetime

import orjson
import pytest
import trustme

from dsrouter.api import Duration, OutputContext, RetryLater
from dsrouter.ds import parse_message
from dsrouter.plugin import Plugins
from dsrouter.samples import sample_lines

from ..conftest import free_port
from ..e2e.conftest import Daemon
from ..e2e.delivery_support import wait_metric
from .conftest import start_rsyslog

KIND = Plugins(entry_points=False).outputs["siem"]
EXTRA = [
    # non-ASCII, escaped backslashes and "=", raw pipes in a value, a TAB in LEEF
    "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|4000000|"
    "Eicar_test_file|6|cn1=12 cn1Label=Host ID dvchost=caf\u00e9-01 "
    "filePath=C:\\\\Users\\\\j\u00fcrgen\\\\eicar.com msg=a\\=b "
    "cs6=ContainerImageName | ContainerName | ContainerID act=Quarantine",
    "<134>Nov 27 23:18:32 dsm01 LEEF:2.0|Trend Micro|Deep Security Manager|20.0.913|192|"
    "cat=System\tname=Alert Ended\tsev=3\tusrName=System\tmsg=Alert: \u00e9t\u00e9\\\\n",
]
LINES = sample_lines() + EXTRA
ENVELOPE = {"syslog", "raw", "format", "cef_version", "leef_version", "received_at", "peer"}

#: (receiver fixture, its input, endpoint scheme, framing, header)
PATHS = [
    pytest.param("rsyslog", "tcp", "tcp", "lf", "rfc3164", id="rsyslog-tcp-lf-3164"),
    pytest.param("rsyslog", "tcp", "tcp", "octet-counted", "rfc5424", id="rsyslog-tcp-octet-5424"),
    pytest.param("rsyslog", "tls", "tls", "octet-counted", "rfc5424", id="rsyslog-tls-octet-5424"),
    pytest.param("rsyslog", "tls", "tls", "lf", "rfc3164", id="rsyslog-tls-lf-3164"),
    pytest.param(
        "syslog_ng_receiver",
        "tcp5424",
        "tcp",
        "octet-counted",
        "rfc5424",
        id="syslog-ng-tcp-octet-5424",
    ),
    pytest.param(
        "syslog_ng_receiver", "lf5424", "tcp", "lf", "rfc5424", id="syslog-ng-tcp-lf-5424"
    ),
    pytest.param(
        "syslog_ng_receiver", "lf3164", "tcp", "lf", "rfc3164", id="syslog-ng-tcp-lf-3164"
    ),
    pytest.param(
        "syslog_ng_receiver",
        "tls",
        "tls",
        "octet-counted",
        "rfc5424",
        id="syslog-ng-tls-octet-5424",
    ),
]


def events() -> list[dict]:
    received = "2026-11-28T01:00:00+00:00"
    return [
        parse_message(line, input="in", peer="192.0.2.1", received_at=received) for line in LINES
    ]


@pytest.fixture
def output(tmp_path, certs):
    made = []

    def make(scheme: str, port: int, **opts):
        options = {o.name: o.default for o in KIND.options if not o.required}
        options.update(endpoint=f"{scheme}://127.0.0.1:{port}", timeout=Duration(5), **opts)
        if scheme == "tls" and not options["ca"]:
            options["ca"] = str(certs.ca)
        out = KIND.factory("siem", options, OutputContext(tmp_path, tmp_path))
        out.open()
        made.append(out)
        return out

    yield make
    for out in made:
        out.close()


def fields(ev: dict) -> dict:
    return {k: v for k, v in ev.items() if k not in ENVELOPE and k != "input"}


def understood(got: dict) -> str:
    """The message rebuilt from the parts the receiver parsed (host, app, time, body)."""
    when = datetime.fromisoformat(got["time"])
    msg = got["msg"].lstrip(" ")  # rsyslog keeps the space after an RFC 3164 TAG
    return f"<134>1 {when.isoformat()} {got['host']} {got['app']} - - - {msg}"


@pytest.mark.parametrize("receiver, input, scheme, framing, header", PATHS)
def test_raw_arrives_byte_for_byte(request, output, receiver, input, scheme, framing, header):
    r = request.getfixturevalue(receiver)
    batch = events()
    output(scheme, r.ports[input], framing=framing, header=header).send(batch)
    raw, _ = r.take(input, len(batch))
    assert raw == [line.encode() for line in LINES]


@pytest.mark.parametrize("fmt", ["cef", "leef", "json"])
@pytest.mark.parametrize("receiver, input, scheme, framing, header", PATHS)
def test_reencoded_formats_parse_back(
    request, output, receiver, input, scheme, framing, header, fmt
):
    r = request.getfixturevalue(receiver)
    batch = events()
    out = output(
        scheme, r.ports[input], framing=framing, header=header, format=fmt, app_name="dsrouter"
    )
    out.send(batch)
    raw, parsed = r.take(input, len(batch))
    for sent, line, got in zip(batch, raw, parsed, strict=True):
        assert got["host"] == sent["syslog"]["hostname"] and got["app"] == "dsrouter"
        stamp = datetime.fromisoformat(sent["syslog"]["timestamp"]).replace(microsecond=0)
        assert datetime.fromisoformat(got["time"]).replace(microsecond=0) == stamp
        assert line == out.encode(sent)  # the receiver kept what it was sent, too
        if fmt == "json":
            assert json.loads(got["msg"]) == orjson.loads(orjson.dumps(sent))
            continue
        back = parse_message(understood(got))
        assert back["format"] == fmt and "parse_error" not in back
        extra = {"devTime", "devTimeFormat"} if fmt == "leef" else set()
        assert {k: v for k, v in fields(back).items() if k not in extra} == fields(sent)


@pytest.mark.parametrize("receiver", ["rsyslog", "syslog_ng_receiver"])
def test_mutual_tls_needs_the_client_certificate(request, output, certs, receiver):
    r = request.getfixturevalue(receiver)
    port = r.ports["mtls"]
    with pytest.raises(RetryLater):
        output("tls", port).send(events()[:1])
    out = output("tls", port, cert=str(certs.client_cert), key=str(certs.client_key))
    out.send(events()[:3])
    raw, _ = r.take("mtls", 3)
    assert raw == [line.encode() for line in LINES[:3]]
    assert r.nothing_more("mtls")  # the refused attempt left nothing


def test_untrusted_receiver_is_refused(output, rsyslog, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(RetryLater, match="certificate verify failed"):
        output("tls", rsyslog.ports["tls"], ca=str(other)).send(events()[:1])


# ---- the real daemon ------------------------------------------------------------------------

DAEMON_CONF = """\
settings {{ data_dir = "{data}", shutdown_timeout = 3s }}
input tcp_in {{ type = "tcp", listen = "127.0.0.1:0" }}
output to_rsyslog {{
  type = "siem", endpoint = "tls://127.0.0.1:{rsyslog}", ca = "{ca}"
  retry_initial = 50ms, retry_max = 300ms
}}
output to_syslog_ng {{
  type = "siem", endpoint = "tcp://127.0.0.1:{syslog_ng}", format = "cef", header = "rfc3164",
  app_name = "dsrouter", retry_initial = 50ms, retry_max = 300ms
}}
route all {{ to to_rsyslog, to_syslog_ng }}
"""


def test_daemon_forwards_to_both_receivers(rsyslog, syslog_ng_receiver, certs, tmp_path):
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(
        DAEMON_CONF.format(
            data=tmp_path / "data",
            rsyslog=rsyslog.ports["tls"],
            syslog_ng=syslog_ng_receiver.ports["lf3164"],
            ca=certs.ca,
        )
    )
    daemon = Daemon(["run", "-c", str(conf)], tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", daemon.ports["tcp_in"])) as s:
            s.sendall(b"".join(line.encode() + b"\n" for line in LINES))
        raw, _ = rsyslog.take("tls", len(LINES))
        assert raw == [line.encode() for line in LINES]  # byte for byte, in order
        _, parsed = syslog_ng_receiver.take("lf3164", len(LINES))
        for line, got in zip(LINES, parsed, strict=True):
            assert got["app"] == "dsrouter"
            back = parse_message(understood(got))
            assert fields(back) == fields(parse_message(line))
        code, err = daemon.stop()
        assert code == 0, err
    finally:
        _kill(daemon)


LATE_CONF = """\
settings {{ data_dir = "{data}", metrics = "127.0.0.1:0", shutdown_timeout = 3s }}
input tcp_in {{ type = "tcp", listen = "127.0.0.1:0" }}
output late {{ type = "siem", endpoint = "tcp://127.0.0.1:{port}", retry_initial = 50ms, retry_max = 200ms }}
route all {{ to late }}
"""


def test_daemon_keeps_events_until_a_late_receiver_starts(rsyslogd, certs, tmp_path):
    port = free_port()  # where the SIEM will listen, once it is up
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(LATE_CONF.format(data=tmp_path / "data", port=port))
    daemon = Daemon(["run", "-c", str(conf)], tmp_path)
    receiver = None
    try:
        with socket.create_connection(("127.0.0.1", daemon.ports["tcp_in"])) as s:
            s.sendall(b"".join(line.encode() + b"\n" for line in LINES))
        assert daemon.metrics is not None
        wait_metric(daemon.metrics, "dsrouter_output_retried_total", lambda v: v > 0, output="late")
        work = tmp_path / "rsyslog"
        work.mkdir()
        receiver = start_rsyslog(rsyslogd, certs, work, tcp=port)  # the SIEM comes up
        raw, _ = receiver.take("tcp", len(LINES))
        assert raw == [line.encode() for line in LINES]
        assert daemon.stop()[0] == 0
    finally:
        _kill(daemon)
        if receiver is not None:
            receiver.stop()


def _kill(daemon: Daemon) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.kill()
        daemon.proc.communicate(timeout=10)
