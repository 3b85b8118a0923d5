"""The syslog envelope: RFC 3164, RFC 5424, DS's own shapes, time stamps, structured data."""

from __future__ import annotations

from datetime import datetime

import pytest

from dsrouter.syslog import (
    parse_envelope,
    parse_structured_data,
    rfc3164_to_iso,
    strip_octet_count,
)

NOW = datetime(2026, 3, 15, 12, 0, 0).timestamp()  # local time, like the sender's clock
CEF = "CEF:0|Trend Micro|Deep Security Agent|20.0|21|Deny|5|act=Deny"


def local_iso(*args: int) -> str:
    return datetime(*args).astimezone().isoformat()


ENVELOPES = [
    (
        "rfc3164 with pri",
        f"<190>Jan 19 13:36:47 2K19-va {CEF}",
        {
            "facility": 23,
            "severity": 6,
            "timestamp": local_iso(2026, 1, 19, 13, 36, 47),
            "hostname": "2K19-va",
        },
        CEF,
    ),
    (
        "space padded day, no host",
        f"<142>Oct  2 16:41:16 {CEF}",
        {"facility": 17, "severity": 6, "timestamp": local_iso(2025, 10, 2, 16, 41, 16)},
        CEF,
    ),
    (
        "one digit day without padding, no pri",
        f"Aug 2 12:30:38 Innotim-PC {CEF}",
        {"timestamp": local_iso(2025, 8, 2, 12, 30, 38), "hostname": "Innotim-PC"},
        CEF,
    ),
    (
        "iso time stamp with zone (include time zone option)",
        f"<190>2021-10-06T01:29:43-07:00 192.168.1.20 {CEF}",
        {
            "facility": 23,
            "severity": 6,
            "timestamp": "2021-10-06T01:29:43-07:00",
            "hostname": "192.168.1.20",
        },
        CEF,
    ),
    (
        "host with a space",
        f"<86>2020-09-21T13:51:11+06:30 DeepSec Logs {CEF}",
        {
            "facility": 10,
            "severity": 6,
            "timestamp": "2020-09-21T13:51:11+06:30",
            "hostname": "DeepSec Logs",
        },
        CEF,
    ),
    (
        "relay tag before CEF",
        f"<14>Sep 18 14:58:29 logstream syslog: {CEF}",
        {
            "facility": 1,
            "severity": 6,
            "timestamp": local_iso(2025, 9, 18, 14, 58, 29),
            "hostname": "logstream",
            "appname": "syslog",
        },
        CEF,
    ),
    (
        "tag with pid and no host",
        f"<14>Mar 15 11:00:00 relay[42]: {CEF}",
        {
            "facility": 1,
            "severity": 6,
            "timestamp": local_iso(2026, 3, 15, 11, 0, 0),
            "appname": "relay",
            "procid": "42",
        },
        CEF,
    ),
    (
        "CEF: 0 with a space",
        "Sep 10 14:30:16 TrendMicro CEF: 0|Trend Micro|x|1|0|Test|3|a=b",
        {"timestamp": local_iso(2025, 9, 10, 14, 30, 16), "hostname": "TrendMicro"},
        "CEF: 0|Trend Micro|x|1|0|Test|3|a=b",
    ),
    (
        "LEEF body",
        "<182>Jul 14 01:32:31 dsm.test LEEF:2.0|Trend Micro|x|1|851|cat=System",
        {
            "facility": 22,
            "severity": 6,
            "timestamp": local_iso(2025, 7, 14, 1, 32, 31),
            "hostname": "dsm.test",
        },
        "LEEF:2.0|Trend Micro|x|1|851|cat=System",
    ),
    (
        "rfc5424 with structured data and BOM",
        '<134>1 2025-11-27T23:18:32.014522Z node-1 ds_agent 77 CEF [a@1 k="v \\" \\] \\\\"]'
        f" \ufeff{CEF}",
        {
            "facility": 16,
            "severity": 6,
            "version": 1,
            "timestamp": "2025-11-27T23:18:32.014522Z",
            "hostname": "node-1",
            "appname": "ds_agent",
            "procid": "77",
            "msgid": "CEF",
            "structured_data": {"a@1": {"k": 'v " ] \\'}},
        },
        CEF,
    ),
    (
        "rfc5424 all nil",
        "<13>1 - - - - - - hello",
        {"facility": 1, "severity": 5, "version": 1},
        "hello",
    ),
    (
        "rfc3164 plain message with tag",
        "<13>Oct 11 22:14:15 mymachine su: 'su root' failed",
        {
            "facility": 1,
            "severity": 5,
            "timestamp": local_iso(2025, 10, 11, 22, 14, 15),
            "hostname": "mymachine",
            "appname": "su",
        },
        "'su root' failed",
    ),
    ("pri only", f"<13>{CEF}", {"facility": 1, "severity": 5}, CEF),
    ("bare CEF", CEF, {}, CEF),
    ("not syslog", "hello world", {}, "hello world"),
]


@pytest.mark.parametrize(
    ("text", "env", "body"), [c[1:] for c in ENVELOPES], ids=[c[0] for c in ENVELOPES]
)
def test_envelope_shapes(text: str, env: dict, body: str) -> None:
    got_env, got_body, error = parse_envelope(text, NOW)
    assert error is None
    assert got_env == env
    assert got_body == body


BROKEN = [
    ("pri above 191", "<192>Oct 11 22:14:15 h x", "invalid syslog PRI"),
    ("february 30", "<13>Feb 30 22:14:15 h x", "invalid RFC 3164 time stamp"),
    ("unclosed structured data", '<13>1 - h a p m [x@1 k="v" rest', "structured data"),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_envelopes_report_a_reason(text: str, reason: str) -> None:
    _, _, error = parse_envelope(text, NOW)
    assert error is not None and reason in error


YEARS = [
    ("earlier this year", "Mar  1 10:00:00", (2026, 3, 1, 10, 0, 0)),
    ("one day ahead is clock skew", "Mar 16 10:00:00", (2026, 3, 16, 10, 0, 0)),
    ("far ahead means last year", "Mar 20 10:00:00", (2025, 3, 20, 10, 0, 0)),
    ("december seen in march", "Dec 31 23:59:59", (2025, 12, 31, 23, 59, 59)),
    ("leap day falls back to a leap year", "Feb 29 00:00:00", (2024, 2, 29, 0, 0, 0)),
]


@pytest.mark.parametrize(("stamp", "when"), [c[1:] for c in YEARS], ids=[c[0] for c in YEARS])
def test_rfc3164_year_and_zone(stamp: str, when: tuple[int, ...]) -> None:
    assert rfc3164_to_iso(stamp, NOW) == local_iso(*when)


def test_rfc3164_result_carries_the_local_offset() -> None:
    iso = rfc3164_to_iso("Mar  1 10:00:00", NOW)
    assert iso is not None
    assert datetime.fromisoformat(iso).utcoffset() is not None


@pytest.mark.parametrize(
    "stamp", ["Foo  1 10:00:00", "Feb 30 10:00:00", "Jan 32 10:00:00", "Jan  1 25:00:00"]
)
def test_rfc3164_rejects_impossible_dates(stamp: str) -> None:
    assert rfc3164_to_iso(stamp, NOW) is None


OCTETS = [
    ("count before pri", "194 <86>x", "<86>x"),
    ("no count", "<86>x", "<86>x"),
    ("digits not followed by pri", "194 hello", "194 hello"),
]


@pytest.mark.parametrize(("text", "out"), [c[1:] for c in OCTETS], ids=[c[0] for c in OCTETS])
def test_strip_octet_count(text: str, out: str) -> None:
    assert strip_octet_count(text) == out


def test_structured_data_several_elements() -> None:
    sd = '[a@1 x="1" y=""][b@2 z="q\\"uote"][c@3]'
    assert parse_structured_data(sd) == {
        "a@1": {"x": "1", "y": ""},
        "b@2": {"z": 'q"uote'},
        "c@3": {},
    }


@pytest.mark.parametrize(
    "text",
    [
        "<13>1 - h a p m " + "[" * 20000,
        "<13>1 - h a p m [x@1 " + 'k="' * 20000,
        '<13>1 - h a p m [x@1 k="' + "\\" * 40001,
        "<13>Oct 11 22:14:15 " + "a" * 50000 + ": " + "CEF:0|" * 5000,
        "<13>Oct 11 22:14:15 " + " " * 50000 + "x",
    ],
    ids=["brackets", "open quotes", "backslashes", "long tag", "spaces"],
)
def test_hostile_envelopes_parse(text: str) -> None:
    env, body, _ = parse_envelope(text, NOW)
    assert env["facility"] == 1
    assert isinstance(body, str)
