"""The normalized event: header, derived fields, aliases, types, receipt, batch behaviour."""

from __future__ import annotations

import orjson
import pytest

from dsrouter.ds import parse_batch, parse_message
from dsrouter.ds.normalize import _fast, _slow

AGENT = "CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|{sig}|Rule|6|cn1=4 cn1Label=Host ID"
MANAGER = "CEF:0|Trend Micro|{product}|12.0.327|{sig}|Title|3|src=192.168.1.20 suser=System"

MODULES = [
    ("manager system event", MANAGER.format(product="Deep Security Manager", sig=600), "system"),
    (
        "manager low id is still system",
        MANAGER.format(product="Deep Security Manager", sig=21),
        "system",
    ),
    (
        "workload security manager",
        MANAGER.format(product="Workload Security Manager", sig=0),
        "system",
    ),
    ("custom ips rule 10", AGENT.format(sig=10), "intrusion_prevention"),
    ("firewall log rule 20", AGENT.format(sig=20), "firewall"),
    ("firewall deny rule 21", AGENT.format(sig=21), "firewall"),
    ("firewall stateful 150", AGENT.format(sig=150), "firewall"),
    ("custom integrity rule 30", AGENT.format(sig=30), "integrity_monitoring"),
    ("custom log inspection 40", AGENT.format(sig=40), "log_inspection"),
    ("ips engine event 500", AGENT.format(sig=500), "intrusion_prevention"),
    ("ips rule", AGENT.format(sig=1001251), "intrusion_prevention"),
    ("integrity rule", AGENT.format(sig=2002779), "integrity_monitoring"),
    ("log inspection rule", AGENT.format(sig=3002795), "log_inspection"),
    ("anti-malware", AGENT.format(sig=4000000), "anti_malware"),
    ("web reputation", AGENT.format(sig=5000001), "web_reputation"),
    ("application control", AGENT.format(sig=6001200), "application_control"),
    ("device control", AGENT.format(sig=7000000), "device_control"),
    ("agent id outside every range", AGENT.format(sig=9000), "unknown"),
    ("agent non numeric id", AGENT.format(sig="abc"), "unknown"),
    ("other product", MANAGER.format(product="Apex One", sig=600), "unknown"),
    ("not DS at all", "hello world", "unknown"),
]


@pytest.mark.parametrize(("line", "module"), [c[1:] for c in MODULES], ids=[c[0] for c in MODULES])
def test_module(line: str, module: str) -> None:
    assert parse_message(line)["module"] == module


def test_full_ips_event() -> None:
    line = (
        "<190>Jan 19 13:36:47 2K19-va CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1001251|"
        "Disallow WPAD|6|cn1=4 cn1Label=Host ID dvchost=2K19-va.test.local "
        "TrendMicroDsTenant=814726098539 TrendMicroDsTenantId=16005 src=216.160.83.56 in=150 "
        "proto=UDP spt=53 dpt=65535 cnt=1 act=Reset cn2=-309 cn2Label=DPI Reason cn3=16 "
        "cn3Label=DPI Packet Position cs5=16 cs5Label=DPI Stream Position cs1=CVE-2007-5355 "
        "cs1Label=DPI Note cs6=8 cs6Label=DPI Flags cs2=0x00 ACK cs3=DF 0 cs4=11 0"
    )
    ev = parse_message(line, input="udp_in", peer="10.0.0.5:514", received_at="2026-01-19T13:36")
    expected = {
        "format": "cef",
        "vendor": "Trend Micro",
        "product": "Deep Security Agent",
        "product_version": "20.0.1.690",
        "signature_id": 1001251,
        "name": "Disallow WPAD",
        "severity": 6,
        "cef_version": 0,
        "module": "intrusion_prevention",
        "host": "2K19-va.test.local",
        "host_id": 4,
        "tenant": "814726098539",
        "tenant_id": 16005,
        "cn1": 4,
        "spt": 53,
        "dpt": 65535,
        "in": 150,
        "cnt": 1,
        "cn2": -309,
        "cn3": 16,
        "cs5": "16",
        "cs6": "8",
        "cs1Label": "DPI Note",
        "ips_note": "CVE-2007-5355",
        "dpi_reason": -309,
        "packet_position": 16,
        "stream_position": 16,
        "ips_flags": 8,
        "tcp_flags": "0x00 ACK",
        "fragmentation": "DF 0",
        "icmp": "11 0",
        "input": "udp_in",
        "peer": "10.0.0.5:514",
        "received_at": "2026-01-19T13:36",
        "raw": line,
    }
    assert {k: ev[k] for k in expected} == expected
    assert ev["syslog"]["hostname"] == "2K19-va"
    assert "parse_error" not in ev


ALIASES = [
    (
        "firewall slots",
        AGENT.format(sig=21) + " cs2=ACK PSH cs3=DF MF cs4=3 1",
        {"tcp_flags": "ACK PSH", "fragmentation": "DF MF", "icmp": "3 1"},
    ),
    (
        "anti-malware slots",
        AGENT.format(sig=4000000) + " cn2=205 cs3=res cs4=10 cs5=25 cs6=Img | Name | Id",
        {
            "quarantine_file_size": 205,
            "infected_resource": "res",
            "resource_type": 10,
            "risk_level": 25,
            "container": "Img | Name | Id",
        },
    ),
    (
        "application control slots",
        AGENT.format(sig=6001200) + " cs1=notWhitelisted cs2=0CC9 cs3=7EA8",
        {"action_reason": "notWhitelisted", "sha1": "0CC9", "md5": "7EA8"},
    ),
    (
        "log inspection slot",
        AGENT.format(sig=3002795) + " cs1=Multiple Windows Logon Failures",
        {"li_description": "Multiple Windows Logon Failures"},
    ),
    (
        "device control vendor",
        AGENT.format(sig=7000000) + " vendor=Kingston device=usb",
        {"device_vendor": "Kingston", "vendor": "Trend Micro", "device": "usb"},
    ),
    (
        "aliases ignore label text",
        AGENT.format(sig=1000001) + " cs6=4 cs6Label=Whatever",
        {"ips_flags": 4},
    ),
    ("non numeric flags stay text", AGENT.format(sig=1000001) + " cs6=many", {"ips_flags": "many"}),
]


@pytest.mark.parametrize(("line", "fields"), [c[1:] for c in ALIASES], ids=[c[0] for c in ALIASES])
def test_aliases(line: str, fields: dict) -> None:
    ev = parse_message(line)
    assert {k: ev.get(k) for k in fields} == fields


def test_slot_aliases_belong_to_their_module() -> None:
    ev = parse_message(AGENT.format(sig=4000000) + " cs1=x cs2=y")
    assert "ips_note" not in ev and "tcp_flags" not in ev and "action_reason" not in ev


INTS = [
    ("port", "spt=80", 80),
    ("negative", "spt=-1", -1),
    ("not a number stays text", "spt=http", "http"),
    ("empty stays text", "spt=", ""),
    ("too big stays text", "spt=" + "9" * 30, "9" * 30),
    ("plus sign stays text", "spt=+5", "+5"),
    ("non ascii digits stay text", "spt=\u0665", "\u0665"),
    ("spaces stay text", "spt=1 2", "1 2"),
    ("comma stays text", "spt=1,2", "1,2"),
]


@pytest.mark.parametrize(("pair", "value"), [c[1:] for c in INTS], ids=[c[0] for c in INTS])
def test_integer_fields_only_when_valid(pair: str, value: int | str) -> None:
    ev = parse_message(AGENT.format(sig=21) + " dpt=443 " + pair)
    assert ev["spt"] == value
    assert ev["dpt"] == 443


HOSTS = [
    ("dvchost first", "dvc=10.0.0.1 dvchost=web01", "web01"),
    ("dvc next", "dvc=10.0.0.1", "10.0.0.1"),
    ("empty dvchost falls through", "dvchost= dvc=10.0.0.1", "10.0.0.1"),
    ("syslog host last", "x=1", "sender"),
]


@pytest.mark.parametrize(("ext", "host"), [c[1:] for c in HOSTS], ids=[c[0] for c in HOSTS])
def test_host(ext: str, host: str) -> None:
    line = f"<134>Nov 27 23:18:32 sender {AGENT.format(sig=21)} {ext}"
    assert parse_message(line)["host"] == host


def test_no_host_anywhere() -> None:
    assert "host" not in parse_message("CEF:0|Trend Micro|Deep Security Manager|1|600|x|3|a=1")


def test_reserved_extension_keys_cannot_override() -> None:
    line = AGENT.format(sig=21) + " module=system raw=x syslog=y severity=1 input=z act=Deny"
    ev = parse_message(line, input="udp_in")
    assert ev["module"] == "firewall"
    assert ev["severity"] == 6
    assert ev["input"] == "udp_in"
    assert ev["raw"] == line
    assert isinstance(ev["syslog"], dict)
    assert ev["ext_shadowed"] == {
        "module": "system",
        "raw": "x",
        "syslog": "y",
        "severity": "1",
        "input": "z",
    }
    assert ev["act"] == "Deny"


def test_leef_event_maps_keys_to_cef_names() -> None:
    line = (
        "<182>Jul 14 01:32:31 dsm LEEF:2.0|Trend Micro|Deep Security Agent|11.0|20|cat=Firewall\t"
        "name=Log\tdesc=Log\tsev=6\tusrName=bob\tsrcPort=51000\tdstPort=80\tsrcMAC=AA\tdstMAC=BB\t"
        "cn1=9\tTrendMicroDsTenantId=0"
    )
    ev = parse_message(line)
    assert ev["format"] == "leef" and ev["leef_version"] == "2.0"
    assert ev["module"] == "firewall"
    assert (ev["name"], ev["severity"], ev["desc"], ev["cat"]) == ("Log", 6, "Log", "Firewall")
    assert (ev["suser"], ev["spt"], ev["dpt"], ev["smac"], ev["dmac"]) == (
        "bob",
        51000,
        80,
        "AA",
        "BB",
    )
    assert (ev["host_id"], ev["tenant_id"]) == (9, 0)
    assert not {"usrName", "srcPort", "sev"} & ev.keys()


FORMATS = [
    ("cef", "CEF:0|Trend Micro|Deep Security Manager|1|600|x|3|", "cef", False),
    ("leef", "LEEF:2.0|Trend Micro|Deep Security Manager|1|600|a=1", "leef", False),
    ("plain syslog", "<13>Oct 11 22:14:15 host su: failed", "syslog", False),
    ("junk", "hello world", "unknown", True),
    ("empty", "", "unknown", True),
    ("broken cef header", "<13>Oct 11 22:14:15 host CEF:0|a|b", "cef", True),
    ("broken leef header", "LEEF:2.0|a", "leef", True),
]


@pytest.mark.parametrize(
    ("line", "fmt", "error"), [c[1:] for c in FORMATS], ids=[c[0] for c in FORMATS]
)
def test_format_and_parse_error(line: str, fmt: str, error: bool) -> None:
    ev = parse_message(line)
    assert ev["format"] == fmt
    assert ("parse_error" in ev) is error
    assert ev["raw"] == line
    if error:
        assert ev["module"] == "unknown"


def test_plain_syslog_keeps_its_text_in_msg() -> None:
    ev = parse_message("<13>Oct 11 22:14:15 host su: 'su root' failed")
    assert ev["msg"] == "'su root' failed"
    assert ev["syslog"]["appname"] == "su"


SEVERITIES = [
    ("number", "8", 8),
    ("word", "High", 8),
    ("very high", "Very-High", 10),
    ("garbage", "bad", None),
]


@pytest.mark.parametrize(
    ("text", "value"), [c[1:] for c in SEVERITIES], ids=[c[0] for c in SEVERITIES]
)
def test_header_severity(text: str, value: int | None) -> None:
    ev = parse_message(f"CEF:0|Trend Micro|Deep Security Manager|1|600|x|{text}|a=1")
    assert ev.get("severity") == value


def test_octet_count_is_stripped() -> None:
    body = "<86>2020-09-21T13:51:11+06:30 DeepSec Logs " + AGENT.format(sig=5000000)
    ev = parse_message(f"{len(body)} {body}")
    assert ev["module"] == "web_reputation"
    assert ev["syslog"]["hostname"] == "DeepSec Logs"
    assert ev["raw"].startswith(f"{len(body)} <86>")


def test_parse_batch_keeps_order_and_receipt() -> None:
    msgs = [AGENT.format(sig=21).encode(), b"\xff\xfe junk", b"", AGENT.format(sig=20).encode()]
    events = parse_batch(msgs, "tcp_in", "192.0.2.1:5000", "2026-01-01T00:00:00Z")
    assert [e["module"] for e in events] == ["firewall", "unknown", "unknown", "firewall"]
    assert all(e["input"] == "tcp_in" and e["peer"] == "192.0.2.1:5000" for e in events)
    assert all(e["received_at"] == "2026-01-01T00:00:00Z" for e in events)
    assert events[1]["raw"] == "\ufffd\ufffd junk"
    assert orjson.loads(orjson.dumps(events))[0]["signature_id"] == 21


def test_lone_surrogates_are_replaced() -> None:
    ev = parse_message("CEF:0|Trend Micro|Deep Security Manager|1|600|x|3|msg=a\udcff")
    assert ev["msg"].startswith("a\ufffd")
    assert "\udcff" not in ev["msg"] and "\udcff" not in ev["raw"]
    orjson.dumps(ev)


FAST_SHAPES = [
    "<134>Nov 27 23:18:32 web-07 " + AGENT.format(sig=21) + " spt=1 cs3=DF",
    "<134>2021-10-06T01:29:43-07:00 10.0.0.1 " + AGENT.format(sig=1001) + " cs1=a\\=b\\\\c",
    "<133>1 2025-11-27T23:18:32.014522Z node ds_agent - CEF - " + AGENT.format(sig=1000128),
    '<133>1 2025-11-27T23:18:32Z node app 12 CEF [x@1 a="b"] ' + AGENT.format(sig=20) + " q=1 ",
    "<134>Nov  7 23:18:32 h "
    + MANAGER.format(product="Deep Security Manager", sig=192)
    + " msg=Alert\\\\nSubject  x=1",
    # a repeated key whose first value held the backslashes: fewer left in the kept values
    "<134>Nov 27 23:18:32 h " + AGENT.format(sig=21) + " cs1=a\\=b\\\\ cs2=c\\|d cs1=e",
]


@pytest.mark.parametrize("line", FAST_SHAPES)
def test_fast_path_agrees_with_the_careful_path(line: str) -> None:
    now = 1_764_285_512.0
    receipt = ("r", "p", "i", line)
    fast = _fast(line, receipt, now, {})
    assert fast is not None
    assert fast == _slow(line, receipt, now)
