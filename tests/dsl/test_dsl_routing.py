"""Routing semantics: first match, continue, drop, _unmatched, null and kind-aware comparisons."""

from __future__ import annotations

import ipaddress
import re

import pytest

from dsrouter.dsl import Decision, compile_routes, load_config_text

from .conftest import OUTPUTS, SPECS


def table(routes: str):
    return compile_routes(load_config_text(OUTPUTS + routes, "t.conf", SPECS))


_LOOSE = re.compile(r'(?<!["\w.])\b(x|y|n|m|a|b|flag)\b(?!["\w])')


def loose(cond: str) -> str:
    """Single-letter test fields are not in the schema: write them as untyped ext keys."""
    return _LOOSE.sub(r'ext["\1"]', cond)


ROUTES = """
route critical { when severity >= 8; to pager, siem; continue }
route noise { when module == "firewall" and dpt in [137, 138, 139]; drop }
route web { when module == "web_reputation"; to siem }
route everything { to archive, siem }
"""

ROUTING = [
    (
        "critical-continues",
        {"severity": 9},
        (("critical", "everything"), ("pager", "siem", "archive"), False),
    ),
    ("drop-stops", {"module": "firewall", "dpt": 137}, (("noise",), (), True)),
    (
        "critical-then-drop",
        {"severity": 9, "module": "firewall", "dpt": 138},
        (("critical", "noise"), ("pager", "siem"), True),
    ),
    ("first-match-wins", {"module": "web_reputation"}, (("web",), ("siem",), False)),
    ("catch-all", {}, (("everything",), ("archive", "siem"), False)),
    (
        "port-as-string-is-not-a-number",
        {"module": "firewall", "dpt": "137"},
        (("everything",), ("archive", "siem"), False),
    ),
    (
        "severity-float",
        {"severity": 8.0},
        (("critical", "everything"), ("pager", "siem", "archive"), False),
    ),
    ("severity-string", {"severity": "9"}, (("everything",), ("archive", "siem"), False)),
    (
        "severity-bool-is-not-a-number",
        {"severity": True},
        (("everything",), ("archive", "siem"), False),
    ),
]


@pytest.mark.parametrize("event, expected", [c[1:] for c in ROUTING], ids=[c[0] for c in ROUTING])
def test_routing_table(event, expected):
    assert table(ROUTES).decide(event) == Decision(*expected)


def test_decisions_are_interned():
    t = table(ROUTES)
    assert t.decide({"severity": 9}) is t.decide({"severity": 10})
    assert t.decide({}) is t.decide({"dpt": 1})


def test_unmatched_route():
    t = table("route a { when dpt == 1; to pager }\nroute _unmatched { to archive }\n")
    assert t.route_names == ("a", "_unmatched")
    assert t.decide({"dpt": 1}) == Decision(("a",), ("pager",), False)
    assert t.decide({"dpt": 2}) == Decision(("_unmatched",), ("archive",), False)


def test_unmatched_drop_and_continue_only_match():
    t = table("route a { when dpt == 1; to pager; continue }\nroute _unmatched { drop }\n")
    assert t.decide({"dpt": 2}) == Decision(("_unmatched",), (), True)
    assert t.decide({"dpt": 1}) == Decision(("a",), ("pager",), False)


NULLS = [
    ("eq", 'x == "a"', False),
    ("ne", 'x != "a"', True),
    ("lt", "x < 5", False),
    ("ge", "x >= 5", False),
    ("in", 'x in ["a", 1]', False),
    ("not-in", 'x not in ["a", 1]', True),
    ("ne-number", "x != 5", True),
    ("not-eq", 'not x == "a"', True),
    ("nested-missing", 'syslog.hostname == "h"', False),
    ("nested-ne", 'syslog.hostname != "h"', True),
    ("ext-missing", 'ext["odd key"] == "v"', False),
]


@pytest.mark.parametrize("cond, expected", [c[1:] for c in NULLS], ids=[c[0] for c in NULLS])
def test_null_semantics(cond, expected):
    t = table(f"route r {{ when {loose(cond)}; to pager }}\nroute _unmatched {{ drop }}\n")
    assert (t.decide({"y": 1, "syslog": "not-a-dict"}).routes == ("r",)) is expected


COMPARISONS = [
    ("int-eq-int", "n == 5", {"n": 5}, True),
    ("float-eq-int", "n == 5", {"n": 5.0}, True),
    ("int-lt-float", "n < 5.5", {"n": 5}, True),
    ("str-eq-number", "n == 5", {"n": "5"}, False),
    ("str-ne-number", "n != 5", {"n": "5"}, True),
    ("number-eq-str", 'n == "5"', {"n": 5}, False),
    ("str-order", 'n < "b"', {"n": "a"}, True),
    ("str-vs-number-order", 'n < "b"', {"n": 1}, False),
    ("literal-left", "8 <= n", {"n": 9}, True),
    ("bool-eq", "flag == true", {"flag": True}, True),
    ("bool-not-int", "flag == true", {"flag": 1}, False),
    ("int-not-bool", "n == 1", {"n": True}, False),
    ("field-vs-field", "a == b", {"a": 3, "b": 3.0}, True),
    ("field-vs-field-kinds", "a != b", {"a": "3", "b": 3}, True),
    ("field-vs-field-null", "a < b", {"a": 3}, False),
    ("nested", 'syslog.hostname == "web-01"', {"syslog": {"hostname": "web-01"}}, True),
    ("ext-key", 'ext["odd key"] == "v"', {"odd key": "v"}, True),
    ("in-mixed", 'n in ["a", 3]', {"n": 3}, True),
    ("in-mixed-str", 'n in ["a", 3]', {"n": "3"}, False),
    ("ip-eq-str", "src == 192.0.2.1", {"src": "192.0.2.1"}, True),
    ("ip-eq-object", "src == 192.0.2.1", {"src": ipaddress.ip_address("192.0.2.1")}, True),
    ("ipv6-long-form", "src in [fe80::fc50:1]", {"src": "fe80:0:0:0:0:0:fc50:1"}, True),
    ("ip-not-in", "src not in [10.1.1.1]", {"src": "10.1.1.2"}, True),
    ("and-short-circuit", "n == 1 and m == 2", {"n": 1, "m": 2}, True),
    ("or", "n == 1 or m == 2", {"n": 0, "m": 2}, True),
    ("paren", "not (n == 1 or m == 2)", {"n": 0, "m": 0}, True),
    ("const-fold", "1 == 1", {}, True),
]


@pytest.mark.parametrize(
    "cond, event, expected", [c[1:] for c in COMPARISONS], ids=[c[0] for c in COMPARISONS]
)
def test_comparisons(cond, event, expected):
    t = table(f"route r {{ when {loose(cond)}; to pager }}\nroute _unmatched {{ drop }}\n")
    assert (t.decide(event).routes == ("r",)) is expected


def test_no_unmatched_and_nothing_matched_is_empty_decision():
    from dataclasses import replace

    t = table("route a { when dpt == 1; to pager }\nroute _unmatched { to archive }\n")
    config = load_config_text(
        OUTPUTS + "route a { when dpt == 1; to pager }\nroute _unmatched { to archive }\n",
        "t.conf",
        SPECS,
    )
    assert t.decide({"dpt": 1}) == Decision(("a",), ("pager",), False)
    empty = compile_routes(replace(config, unmatched=None, routes=config.routes[:1]))
    assert empty.decide({"dpt": 2}) == Decision((), (), False)


def test_outputs_deduplicated_in_order():
    t = table("route a { to siem, pager, siem; continue }\nroute b { to pager, archive }\n")
    assert t.decide({}).outputs == ("siem", "pager", "archive")
