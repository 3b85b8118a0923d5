"""DS messages as rsyslog and syslog-ng relays re-send them, parsed like the direct ones."""

from __future__ import annotations

import pytest

from dsrouter.ds import parse_message
from dsrouter.ds.normalize import _fast, _slow

DIRECT_CEF = "<134>Nov 27 23:18:32 web-01 CEF:0|Trend Micro|Deep Security Agent|20.0|1000552|XSS|8|cn1=12 dvchost=web-01 src=203.0.113.9"
DIRECT_LEEF = "<134>Nov 27 23:18:32 web-01 LEEF:2.0|Trend Micro|Deep Security Agent|20.0|1000552|cat=IPS\tdvchost=web-01\tname=XSS\tsev=8\tsrc=203.0.113.9\tmsg=a\nb"
BODY_FIELDS = (
    "format",
    "module",
    "name",
    "severity",
    "signature_id",
    "src",
    "host",
    "host_id",
    "msg",
)


def same_fields(a: dict, b: dict) -> None:
    assert {k: a.get(k) for k in BODY_FIELDS} == {k: b.get(k) for k in BODY_FIELDS}
    assert "parse_error" not in a


@pytest.mark.parametrize(
    "relayed",
    [
        "<134>1 2026-11-27T23:18:32.123456+00:00 relay CEF - - - 0|Trend Micro|Deep Security Agent|20.0|1000552|XSS|8|cn1=12 dvchost=web-01 src=203.0.113.9",
        '<134>1 2026-11-27T23:18:32Z relay CEF - - [x@1 a="b"] 0|Trend Micro|Deep Security Agent|20.0|1000552|XSS|8|cn1=12 dvchost=web-01 src=203.0.113.9',
        "<134>Nov 27 23:18:32 relay CEF: 0|Trend Micro|Deep Security Agent|20.0|1000552|XSS|8|cn1=12 dvchost=web-01 src=203.0.113.9",
    ],
)
def test_cef_with_the_relay_taking_cef_as_app_name(relayed):
    ev = parse_message(relayed)
    same_fields(ev, parse_message(DIRECT_CEF))
    assert ev["syslog"]["hostname"] == "relay"  # the relay's header stays under syslog.*


@pytest.mark.parametrize(
    "relayed",
    [
        "<134>1 2026-11-27T23:18:32Z relay LEEF - - - 2.0|Trend Micro|Deep Security Agent|20.0|1000552|cat=IPS#011dvchost=web-01#011name=XSS#011sev=8#011src=203.0.113.9#011msg=a#012b",
        "<134>Nov 27 23:18:32 relay LEEF:2.0|Trend Micro|Deep Security Agent|20.0|1000552|cat=IPS#011dvchost=web-01#011name=XSS#011sev=8#011src=203.0.113.9#011msg=a#012b",
    ],
)
def test_leef_with_rsyslog_control_character_escapes(relayed):
    ev = parse_message(relayed)
    same_fields(ev, parse_message(DIRECT_LEEF))
    assert ev["msg"] == "a\nb"


def test_escapes_are_left_alone_when_the_message_has_real_tabs():
    ev = parse_message(DIRECT_LEEF.replace("msg=a\nb", "msg=issue #011 is open"))
    assert ev["msg"] == "issue #011 is open"


def test_an_app_name_cef_with_other_text_stays_plain_syslog():
    ev = parse_message("<134>1 2026-11-27T23:18:32Z relay CEF - - - hello 0|x")
    assert ev["format"] == "syslog" and ev["msg"] == "hello 0|x"


def test_relayed_shapes_take_the_same_path_result_both_ways():
    line = "<134>1 2026-11-27T23:18:32Z relay CEF - - - 0|Trend Micro|Deep Security Agent|20.0|1000552|XSS|8 |cn1=12"
    receipt = ("r", "p", "i", line)
    fast = _fast(line, receipt, 1_764_285_512.0, {})
    assert fast is None or fast == _slow(line, receipt, 1_764_285_512.0)
