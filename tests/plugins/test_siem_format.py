"""The ``siem`` output's encoders: every format parses back with dsrouter's own parsers."""

from __future__ import annotations

import json
import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsrouter.ds import parse_message
from dsrouter.ds.catalog import INT_KEYS, LEEF_TO_CEF, RESERVED
from dsrouter.ds.cef import parse_cef
from dsrouter.ds.leef import parse_leef
from dsrouter.plugins.siem_format import (
    DEV_TIME_FORMAT,
    Encoder,
    cef_body,
    event_stamp,
    frame,
    leef_body,
    truncate,
)
from dsrouter.samples import sample_lines

LINE = (
    "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
    "Generic Cross Site Scripting(XSS) Prevention|8|cn1=12 cn1Label=Host ID dvchost=web-01 "
    "src=203.0.113.9 spt=51234 dst=198.51.100.7 dpt=443 proto=TCP act=Reset suser=alice"
)
#: Fields of the normalized event that describe the message, not the event.
ENVELOPE = {"syslog", "raw", "format", "cef_version", "leef_version", "received_at", "peer"}


def event(line: str = LINE) -> dict:
    return parse_message(
        line, input="in", peer="192.0.2.1", received_at="2026-11-28T01:00:00+00:00"
    )


def fields(ev: dict) -> dict:
    return {k: v for k, v in ev.items() if k not in ENVELOPE and k != "input"}


def again(message: bytes) -> dict:
    """What dsrouter's own receiving side makes of a message this output sent."""
    return parse_message(message.decode(), input="in", peer="p", received_at="x")


# ---- syslog headers -------------------------------------------------------------------------


def test_rfc5424_header_keeps_the_event_time_host_and_pri():
    ev = event("<134>1 2026-11-27T23:18:32.250+01:00 dsm01 - - - - " + LINE.split(" ", 4)[4])
    message = Encoder("cef", "rfc5424", app_name="dsrouter")(ev)
    assert message.startswith(b"<134>1 2026-11-27T23:18:32.250+01:00 dsm01 dsrouter - - - CEF:0|")
    back = again(message)
    assert back["syslog"]["timestamp"] == "2026-11-27T23:18:32.250+01:00"
    assert back["syslog"]["appname"] == "dsrouter" and fields(back) == fields(ev)


def test_rfc3164_header_writes_the_wall_clock_time_of_the_stamp():
    ev = event()
    ev["syslog"]["timestamp"] = "2026-11-07T03:04:05+09:00"
    message = Encoder("cef", "rfc3164", facility=4)(ev)
    assert message.startswith(b"<38>Nov  7 03:04:05 dsm01 CEF:0|Trend Micro|")
    tagged = Encoder("leef", "rfc3164", app_name="dsr")(ev)
    assert tagged.startswith(b"<134>Nov  7 03:04:05 dsm01 dsr: LEEF:2.0|")
    assert again(tagged)["syslog"]["appname"] == "dsr"


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("original", "dsm01"),
        ("host", "web-01"),
        ("local", socket.gethostname()),
        ("siem-relay.example.com", "siem-relay.example.com"),
    ],
)
def test_hostname_rules(rule, expected):
    message = Encoder("json", "rfc5424", hostname=rule)(event())
    assert message.split(b" ")[2].decode() == expected


def test_hostname_with_spaces_is_made_one_word():
    ev = event(LINE.replace("dsm01", "DeepSec Logs"))
    assert ev["syslog"]["hostname"] == "DeepSec Logs"
    assert Encoder("cef")(ev).split(b" ")[2] == b"DeepSec_Logs"


def test_event_without_envelope_gets_receipt_time_and_defaults():
    ev = event(LINE.split(" ", 4)[4])  # bare CEF: no syslog header at all
    assert ev["syslog"] == {}
    message = Encoder("cef", "rfc5424")(ev)
    assert message.startswith(b"<134>1 2026-11-28T01:00:00+00:00 web-01 - - - - CEF:0|")


# ---- raw --------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", sample_lines(), ids=lambda s: s.split("|")[4])
def test_raw_with_a_pri_is_sent_byte_for_byte(line):
    assert Encoder("raw", "rfc3164", app_name="x")(event(line)) == line.encode()


def test_raw_without_pri_gets_a_header_and_stays_whole():
    bare = LINE.split(" ", 4)[4]
    message = Encoder("raw", "rfc5424")(event(bare))
    assert message == b"<134>1 2026-11-28T01:00:00+00:00 web-01 - - - - " + bare.encode()
    assert Encoder("raw", "rfc3164")(event(bare)).endswith(b" web-01 " + bare.encode())


def test_raw_keeps_non_ascii_and_replacement_characters():
    line = LINE + " msg=caf\u00e9 \ufffd"
    assert Encoder("raw")(event(line)) == line.encode()


# ---- CEF --------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", sample_lines(), ids=lambda s: s.split("|")[4])
def test_cef_of_every_sample_parses_back_to_the_same_fields(line):
    ev = event(line)
    back = again(Encoder("cef")(ev))
    assert back["format"] == "cef" and "parse_error" not in back
    assert fields(back) == fields(ev)


@pytest.mark.parametrize(
    "field, value, written",
    [
        ("name", "a|b", "a\\|b"),
        ("name", "back\\slash", "back\\\\slash"),
        ("product", "two\nlines", "two lines"),
        ("name", "\\|", "\\\\\\|"),
    ],
)
def test_cef_header_escapes(field, value, written):
    ev = {**event(), field: value}
    head = cef_body(ev).split("|")
    assert written in "|".join(head[:8])
    head_fields, _, problem = parse_cef(cef_body(ev))
    assert problem is None and head_fields is not None
    assert value.replace("\n", " ") in head_fields


@pytest.mark.parametrize(
    "value, written",
    [
        ("a=b", "a\\=b"),
        ("C:\\Temp", "C:\\\\Temp"),
        ("two\nlines\r", "two\\nlines\\r"),
        ("x dpt=1", "x dpt\\=1"),
        ("pipes | stay", "pipes | stay"),
        ("\\n", "\\\\n"),
    ],
)
def test_cef_extension_escapes(value, written):
    body = cef_body({**event(), "msg": value})
    assert f"msg={written}" in body
    _, ext, problem = parse_cef(body)
    assert problem is None and ext["msg"] == value and ext["dpt"] == "443"


def test_cef_of_leef_event_uses_cef_names():
    leef = next(line for line in sample_lines() if "LEEF:" in line)
    ev = event(leef)
    body = cef_body(ev)
    assert body.endswith(" suser=System") and "usrName" not in body
    assert fields(again(Encoder("cef")(ev))) == fields(ev)


def test_cef_of_unparsed_message_carries_it_in_msg():
    ev = event("just some text")
    body = cef_body(ev)
    assert body.startswith("CEF:0|dsrouter|dsrouter||0|unparsed message|Unknown|")
    assert again(Encoder("cef")(ev))["msg"] == "just some text"


def test_cef_keeps_shadowed_keys_and_odd_keys():
    ev = event(LINE + " host=spoofed")
    assert ev["ext_shadowed"] == {"host": "spoofed"}
    ev["odd key"] = "v"
    back = again(Encoder("cef")(ev))
    assert back["ext_shadowed"] == {"host": "spoofed"} and back["odd_key"] == "v"


# ---- LEEF -------------------------------------------------------------------------------------


def test_leef_uses_qradar_names_and_parses_back():
    ev = event()
    body = leef_body(ev, event_stamp({"received_at": "2026-11-27T23:18:32.5+01:00"}).dev_time)
    attrs = dict(a.split("=", 1) for a in body.split("|", 5)[5].split("\t"))
    assert body.startswith("LEEF:2.0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|name=")
    assert attrs["sev"] == "8" and attrs["srcPort"] == "51234" and attrs["dstPort"] == "443"
    assert attrs["usrName"] == "alice" and attrs["src"] == "203.0.113.9"
    assert attrs["proto"] == "TCP"
    assert attrs["devTime"] == "2026-11-27T23:18:32.500+0100"
    assert attrs["devTimeFormat"] == DEV_TIME_FORMAT
    back = again(Encoder("leef")(ev))
    assert back["format"] == "leef" and "parse_error" not in back
    assert fields(back) == fields(ev) | {
        "devTime": back["devTime"],
        "devTimeFormat": DEV_TIME_FORMAT,
    }


@pytest.mark.parametrize("line", sample_lines(), ids=lambda s: s.split("|")[4])
def test_leef_of_every_sample_parses_back(line):
    ev = event(line)
    back = fields(again(Encoder("leef")(ev)))
    assert back.pop("devTimeFormat") == DEV_TIME_FORMAT and back.pop("devTime")
    assert back == fields(ev)


def test_leef_replaces_what_it_cannot_escape():
    ev = {**event(), "product": "a|b", "msg": "tab\there\\n\nend"}
    body = leef_body(ev, None)
    assert "|a_b|" in body and "msg=tab here\\\\n\\nend" in body
    head, attrs, problem = parse_leef(body)
    assert problem is None and head is not None and head[2] == "a_b"
    assert attrs["msg"] == "tab here\\n\nend"


# ---- JSON -------------------------------------------------------------------------------------


def test_json_is_the_normalized_event():
    ev = event()
    message = Encoder("json", "rfc5424")(ev)
    head, _, body = message.partition(b" - - - - ")
    assert head.startswith(b"<134>1 ") and json.loads(body) == ev


# ---- framing and size -----------------------------------------------------------------------


def test_octet_counting_counts_bytes_not_characters():
    assert frame("é€".encode(), "octet-counted") == b"5 " + "é€".encode()


def test_lf_framing_keeps_one_message_per_line():
    assert frame(b"a\nb\n", "lf") == b"a#012b\n"
    assert frame(b"plain", "lf") == b"plain\n"


def test_truncate_never_cuts_a_character():
    text = "ab€€".encode()  # 2 + 3 + 3 bytes
    assert truncate(text, 6) == "ab€".encode() and truncate(text, 5) == "ab€".encode()
    assert truncate(text, 4) == b"ab"


# ---- round trip (Hypothesis) ----------------------------------------------------------------

_LEEF_NAMES = set(LEEF_TO_CEF) | {"name", "sev", "devTime", "devTimeFormat"}
_CHARS = st.characters(blacklist_categories=("Cs",))
#: Pieces that make escaping matter, mixed with any text.
_TRICKY = st.sampled_from(
    ["=", "\\", "\\n", "\\=", " ", "  ", " k=", " dpt=", "|", "\t", "\n", "\r", "é"]
)
_TEXT = st.lists(_TRICKY | st.text(_CHARS, max_size=4), max_size=6).map("".join)
KEY = st.from_regex(r"[A-Za-z0-9_.\[\]-]{1,12}", fullmatch=True).filter(
    lambda k: k not in RESERVED and k not in INT_KEYS and k not in _LEEF_NAMES
)
#: CEF cannot carry trailing blanks of a value (a value runs to the next key): none generated.
VALUE = _TEXT.filter(lambda v: not v or not v[-1].isspace() or v[-1] in "\r\n")
HEADER = _TEXT.map(lambda s: s.replace("\n", "").replace("\r", ""))
SIGNATURE = st.integers(0, 10**9) | HEADER.filter(lambda s: not re.fullmatch(r"-?[0-9]+", s))


@st.composite
def events(draw) -> dict:
    ev = {
        "vendor": draw(HEADER),
        "product": draw(st.sampled_from(["Deep Security Agent", "Deep Security Manager"]) | HEADER),
        "product_version": draw(HEADER),
        "signature_id": draw(SIGNATURE),
        "name": draw(HEADER),
    }
    if draw(st.booleans()):
        ev["severity"] = draw(st.integers(0, 10))
    ev.update(draw(st.dictionaries(KEY, VALUE, max_size=6)))
    ev.update(
        draw(
            st.dictionaries(
                st.sampled_from(sorted(INT_KEYS)), st.integers(-(10**9), 10**9), max_size=3
            )
        )
    )
    ev["syslog"] = {"hostname": "dsm01", "timestamp": "2026-11-27T23:18:32+01:00"}
    return ev


def _expected(ev: dict, leef: bool) -> dict:
    if not leef:
        return ev
    out = {k: v.replace("\t", " ") if isinstance(v, str) else v for k, v in ev.items()}
    for k in ("vendor", "product", "product_version", "signature_id"):
        if isinstance(out[k], str):
            out[k] = out[k].replace("|", "_")
    return out


@pytest.mark.parametrize("fmt", ["cef", "leef"])
@pytest.mark.parametrize("header", ["rfc5424", "rfc3164"])
@settings(max_examples=150, deadline=None)
@given(ev=events())
def test_encode_then_dsroutes_parser_gives_the_same_fields(fmt, header, ev):
    back = again(Encoder(fmt, header, app_name="dsrouter")(ev))
    assert back["format"] == fmt and "parse_error" not in back, back
    expected = _expected(ev, fmt == "leef")
    for key, value in expected.items():
        if key != "syslog":
            assert back.get(key) == value, (key, back)
    extra = {k for k in back if k not in RESERVED and k not in expected}
    assert extra == ({"devTime", "devTimeFormat"} if fmt == "leef" else set())
    assert back["syslog"]["hostname"] == "dsm01"
