"""Every sample DS message through a real rsyslog or syslog-ng relay into the real daemon.

Each case starts one relay (a template and a protocol), sends every built-in sample
(:func:`dsrouter.samples.sample_lines`: one CEF message per module and a TAB-delimited LEEF
one) to its TCP input as a DS Manager would, and reads what the daemon archived: each event
must be classified as the direct message is, with the same body fields as
``parse_message(original line)``, while the relay's own header lands under ``syslog.*``.

rsyslog runs with its defaults otherwise, so ``escapeControlCharactersOnReceive`` turns the
LEEF TABs into ``#011``; syslog-ng keeps them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
import pytest

from dsrouter.ds import parse_message
from dsrouter.samples import sample_lines

from ..conftest import free_port
from .conftest import Relay

RECEIPT = ("syslog", "raw", "received_at", "peer", "input", "event_id")
HOST = "dsm01.example.com"


@dataclass(frozen=True)
class Shape:
    """What the relay's header holds: PRI, RFC 5424 version, fractional seconds."""

    pri: bool = True
    rfc5424: bool = False
    fraction: bool = False


RSYSLOG_TEMPLATES = {
    "traditional": ("RSYSLOG_TraditionalForwardFormat", Shape()),
    "forward": ("RSYSLOG_ForwardFormat", Shape()),
    "rfc5424": ("RSYSLOG_SyslogProtocol23Format", Shape(rfc5424=True)),
    "highprec": ("highprec", Shape(fraction=True)),
    "fileformat": ("RSYSLOG_FileFormat", Shape(pri=False)),
}
RSYSLOG_CONF = """\
global(workDirectory="{work}"{globals})
module(load="imtcp")
template(name="highprec" type="string"
         string="<%PRI%>%TIMEGENERATED:::date-rfc3339% %HOSTNAME% %syslogtag:1:32%%msg:::sp-if-no-1st-sp%%msg%")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="relay")
ruleset(name="relay") {{
  action(type="omfwd" target="127.0.0.1" port="{target}" protocol="{protocol}"
         template="{template}"{extra})
}}
"""
SYSLOG_NG_CONF = """\
@version: 3.38
options {{ keep-hostname(yes); chain-hostnames(no); use-dns(no); dns-cache(no);
          stats-freq(0); }};
source s_in {{ network(transport("tcp") ip("127.0.0.1") port({port})); }};
destination d_out {{ {driver}("127.0.0.1" transport("{protocol}") port({target})); }};
log {{ source(s_in); destination(d_out); }};
"""


def start_rsyslog(rsyslogd, work, router, template: str, protocol: str, globals: str = "") -> Relay:
    port = free_port()
    extra = ""
    if protocol == "tcp-octet":
        protocol, extra = "tcp", ' TCP_Framing="octet-counted"'
    target = router.ports["udp_in" if protocol == "udp" else "tcp_in"]
    conf = work / "rsyslog.conf"
    conf.write_text(
        RSYSLOG_CONF.format(
            work=work,
            globals=globals,
            port=port,
            target=target,
            protocol=protocol,
            template=template,
            extra=extra,
        )
    )
    argv = [rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslog.pid")]
    return Relay("rsyslog", argv, work, port)


def start_syslog_ng(syslog_ng, work, router, driver: str, protocol: str) -> Relay:
    port = free_port()
    target = router.ports[f"{protocol}_in"]
    conf = work / "syslog-ng.conf"
    conf.write_text(
        SYSLOG_NG_CONF.format(port=port, target=target, driver=driver, protocol=protocol)
    )
    return Relay("syslog-ng", syslog_ng.argv(conf, work), work, port, env=syslog_ng.env())


def body(event: dict) -> dict:
    """The event without the receipt fields and the envelope: what DS itself said."""
    return {k: v for k, v in event.items() if k not in RECEIPT}


def direct(line: str) -> dict:
    """``parse_message`` of the line as DS sent it, as the archive would hold it (JSON)."""
    return orjson.loads(orjson.dumps(parse_message(line)))


def relayed_in_order(relay: Relay, router, lines: list[str], count: int) -> list[dict]:
    """Send ``lines`` through ``relay``, stop it; the next ``count`` archived events."""
    router.skip_to_end()
    try:
        relay.send(lines)
        events = router.take(count)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{relay.name} log:\n{relay.log()}") from None
    finally:
        relay.stop()
    return events


def relayed(relay: Relay, router, lines: list[str]) -> dict[tuple[str, str], dict]:
    """Send ``lines`` through ``relay``; the archived events by (format, module)."""
    events = relayed_in_order(relay, router, lines, len(lines))
    by_kind = {(e["format"], e["module"]): e for e in events}
    assert len(by_kind) == len(lines), [e["raw"][:80] for e in events]
    return by_kind


def check_relayed(by_kind: dict, lines: list[str], shape: Shape) -> None:
    for line in lines:
        want = direct(line)
        got = by_kind.get((want["format"], want["module"]))
        assert got is not None, f"no {want['format']} {want['module']} event archived"
        assert "parse_error" not in got, got["raw"]
        assert body(got) == body(want), got["raw"]
        check_header(got["syslog"], want, shape)


def check_header(env: dict, want: dict, shape: Shape) -> None:
    assert env["hostname"] == HOST
    assert ("facility" in env, "severity" in env) == (shape.pri, shape.pri)
    if shape.pri:
        assert (env["facility"], env["severity"]) == (16, 6)
    if shape.rfc5424:
        assert env["version"] == 1
        assert env["appname"] == want["format"].upper()  # the relay took "CEF:" as APP-NAME
    stamp = datetime.fromisoformat(env["timestamp"])
    sent = datetime.fromisoformat(want["syslog"]["timestamp"])
    assert abs((stamp - sent).total_seconds()) < 5  # same instant, maybe a later clock reading
    assert ("." in env["timestamp"]) == shape.fraction


@pytest.mark.parametrize(
    ("template", "protocol"),
    [(t, p) for t in RSYSLOG_TEMPLATES for p in ("tcp", "udp")]
    + [("forward", "tcp-octet"), ("rfc5424", "tcp-octet")],
    ids=lambda x: x,
)
def test_rsyslog_relays_every_module(rsyslogd, router, tmp_path, template, protocol):
    name, shape = RSYSLOG_TEMPLATES[template]
    relay = start_rsyslog(rsyslogd, tmp_path, router, name, protocol)
    lines = sample_lines()
    by_kind = relayed(relay, router, lines)
    check_relayed(by_kind, lines, shape)
    leef = by_kind["leef", "system"]
    assert "#011" in leef["raw"] and "\t" not in leef["raw"]  # rsyslog escaped the TABs


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
@pytest.mark.parametrize(
    ("driver", "shape"),
    [("network", Shape()), ("syslog", Shape(rfc5424=True))],
    ids=["bsd", "rfc5424"],
)
def test_syslog_ng_relays_every_module(syslog_ng, router, tmp_path, driver, shape, protocol):
    relay = start_syslog_ng(syslog_ng, tmp_path, router, driver, protocol)
    lines = sample_lines()
    by_kind = relayed(relay, router, lines)
    check_relayed(by_kind, lines, shape)
    assert "\t" in by_kind["leef", "system"]["raw"]  # syslog-ng leaves the TABs alone


# ---- long messages --------------------------------------------------------------------------

LONG_TAIL = 20_000


def long_message() -> str:
    """The log inspection sample with a 20 KB ``msg``: past rsyslog's default 8 KiB limit."""
    (line,) = (x for x in sample_lines() if "|3002795|" in x)
    return line + " " + "A" * LONG_TAIL


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_rsyslog_default_size_limit_splits_a_long_message(rsyslogd, router, tmp_path, protocol):
    """rsyslog's default maxMessageSize (8 KiB) cuts a long message into pieces that it then
    parses as new messages from "localhost": the first keeps the DS header, every field and a
    prefix of ``msg``; the rest become plain syslog events, and rsyslog drops part of their text
    (it reads a piece's start as a tag and the template keeps 32 characters of it): here about
    1,000 of the 20,000 characters. Relays should raise maxMessageSize (next test)."""
    relay = start_rsyslog(rsyslogd, tmp_path, router, "RSYSLOG_ForwardFormat", protocol)
    line = long_message()
    first, *rest = relayed_in_order(relay, router, [line], 3)
    want = direct(line)
    assert len(first["raw"]) <= 8 * 1024 < len(line)
    assert body(first) == body(want) | {"msg": first["msg"]}  # every field but msg intact
    assert want["msg"].startswith(first["msg"])
    assert [(e["format"], e["module"], e["syslog"]["hostname"]) for e in rest] == [
        ("syslog", "unknown", "localhost")
    ] * 2
    assert all(set(e["msg"]) <= {"A", " "} for e in rest)
    assert sum(e["msg"].count("A") for e in (first, *rest)) <= LONG_TAIL


def test_rsyslog_with_a_64k_limit_relays_a_long_message_whole(rsyslogd, router, tmp_path):
    relay = start_rsyslog(
        rsyslogd, tmp_path, router, "RSYSLOG_ForwardFormat", "tcp", ' maxMessageSize="64k"'
    )
    line = long_message()
    (event,) = relayed_in_order(relay, router, [line], 1)
    assert body(event) == body(direct(line))


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_syslog_ng_relays_a_long_message_whole(syslog_ng, router, tmp_path, protocol):
    """syslog-ng's default log-msg-size is 64 KiB: a 20 KB DS event arrives whole."""
    relay = start_syslog_ng(syslog_ng, tmp_path, router, "syslog", protocol)
    line = long_message()
    (event,) = relayed_in_order(relay, router, [line], 1)
    assert body(event) == body(direct(line))
