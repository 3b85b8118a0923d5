"""The complete language: IPs and CIDRs, regexes, string tests, functions, env(), set."""

from __future__ import annotations

import pytest

from dsrouter.dsl import compile_routes, load_config_text

from .conftest import OUTPUTS, SPECS

TAIL = "route _unmatched { drop }\n"


def matches(cond: str, event: dict, environ: dict | None = None) -> bool:
    text = OUTPUTS + f"route r {{ when {cond}; to pager }}\n" + TAIL
    table = compile_routes(load_config_text(text, "t.conf", SPECS, environ=environ or {}))
    return table.decide(event).routes == ("r",)


CASES = [
    ("cidr-v4", "src in 10.0.0.0/8", {"src": "10.1.2.3"}, True),
    ("cidr-v4-out", "src in 10.0.0.0/8", {"src": "11.1.2.3"}, False),
    ("cidr-v6", "src in 2001:db8::/32", {"src": "2001:db8::1"}, True),
    ("cidr-version-mismatch", "src in 2001:db8::/32", {"src": "10.0.0.1"}, False),
    ("cidr-not-an-address", "dvc in 10.0.0.0/8", {"dvc": "web-01"}, False),
    ("cidr-not-in-non-address", "dvc not in [10.0.0.0/8]", {"dvc": "web-01"}, True),
    ("cidr-missing", "src in 10.0.0.0/8", {}, False),
    ("cidr-not-in-missing", "src not in [10.0.0.0/8]", {}, True),
    ("mixed-list-net", "src not in [10.99.0.0/16, 192.0.2.10]", {"src": "10.99.1.1"}, False),
    ("mixed-list-ip", "src not in [10.99.0.0/16, 192.0.2.10]", {"src": "192.0.2.10"}, False),
    ("mixed-list-other", "src not in [10.99.0.0/16, 192.0.2.10]", {"src": "192.0.2.11"}, True),
    ("mixed-list-v6", "src in [10.0.0.0/8, 2001:db8::/32]", {"src": "2001:db8::5"}, True),
    ("ext-cidr", 'ext["c6a2"] in 10.0.0.0/8', {"c6a2": "10.0.0.9"}, True),
    ("regex", "msg matches /x+s/", {"msg": "aXSSxxs"}, True),
    ("regex-case", "msg matches /XSS/", {"msg": "xss"}, False),
    ("regex-i", "msg matches /XSS/i", {"msg": "xss"}, True),
    ("regex-string", 'msg matches "^a\\\\d"', {"msg": "a1"}, True),
    ("regex-s", "msg matches /a.b/s", {"msg": "a\nb"}, True),
    ("regex-no-s", "msg matches /a.b/", {"msg": "a\nb"}, False),
    ("regex-null", "msg matches /./", {}, False),
    ("regex-ip-field", "src matches /^10\\./", {"src": "10.0.0.1"}, True),
    ("contains", 'msg contains "SS"', {"msg": "XSS"}, True),
    ("contains-case", 'msg contains "ss"', {"msg": "XSS"}, False),
    ("contains-null", 'msg contains "a"', {}, False),
    ("startswith", 'filePath startswith "C:\\\\"', {"filePath": "C:\\x"}, True),
    ("endswith", 'filePath endswith ".exe"', {"filePath": "a.exe"}, True),
    ("endswith-no", 'filePath endswith ".exe"', {"filePath": "a.dll"}, False),
    ("field-vs-field", "suser contains duser", {"suser": "admin1", "duser": "admin"}, True),
    ("exists", "exists(src)", {"src": "1.2.3.4"}, True),
    ("exists-missing", "exists(src)", {}, False),
    ("exists-nested", "exists(syslog.hostname)", {"syslog": {"hostname": "h"}}, True),
    ("exists-ext", 'not exists(ext["a b"])', {}, True),
    ("lower", 'lower(suser) == "admin"', {"suser": "ADMIN"}, True),
    ("upper", 'upper(act) == "DENY"', {"act": "Deny"}, True),
    ("lower-null", 'lower(suser) == "admin"', {}, False),
    ("lower-null-ne", 'lower(suser) != "admin"', {}, True),
    ("len", "len(msg) > 3", {"msg": "abcd"}, True),
    ("int", "int(cs1) >= 10", {"cs1": "12"}, True),
    ("int-bad", "int(cs1) >= 10", {"cs1": "twelve"}, False),
    ("str", 'str(dpt) == "80"', {"dpt": 80}, True),
    ("str-startswith", 'str(dpt) startswith "8"', {"dpt": 8080}, True),
    ("nested-call", 'lower(upper(act)) in ["deny"]', {"act": "Deny"}, True),
    ("size", "fsize > 1KiB", {"fsize": 2048}, True),
    ("size-small", "fsize > 1KiB", {"fsize": 10}, False),
    ("duration", "cn2 >= 5m", {"cn2": 300}, True),
    ("const-fold", 'lower("ABC") == "abc"', {}, True),
]


@pytest.mark.parametrize("cond, event, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_expression_forms(cond, event, expected):
    assert matches(cond, event) is expected


def test_env_constant_in_expression():
    env = {"TEAM": "blue"}
    assert matches('cs1 == env("TEAM")', {"cs1": "blue"}, env)
    assert not matches('cs1 == env("TEAM")', {"cs1": "red"}, env)
    assert matches('cs1 == env("NOPE", "dflt")', {"cs1": "dflt"}, env)


def test_file_constant_in_expression(tmp_path):
    (tmp_path / "team.txt").write_text("green\n")
    text = OUTPUTS + 'route r { when cs1 == file("team.txt"); to pager }\n' + TAIL
    config = load_config_text(text, "t.conf", SPECS, base_dir=tmp_path)
    assert compile_routes(config).decide({"cs1": "green"}).routes == ("r",)


def test_ip_cache_is_bounded():
    from dsrouter.dsl import compiler

    for i in range(compiler._IP_CACHE_MAX + 10):
        compiler.as_ip(f"10.0.{i // 256 % 256}.{i % 256}x")
    assert len(compiler._IP_CACHE) <= compiler._IP_CACHE_MAX


# ---- set ----


def table(routes: str, **kwargs):
    return compile_routes(load_config_text(OUTPUTS + routes, "t.conf", SPECS), **kwargs)


def test_set_adds_and_overwrites_fields_in_order():
    t = table(
        'route tag { when severity >= 8; set team = "sec"; set severity = 10; to pager; continue }\n'
        'route by_team { when team == "sec" and severity == 10; set note = lower(act); to siem }\n'
        "route rest { to archive }\n"
    )
    event = {"severity": 8, "act": "Deny"}
    assert t.decide(event).routes == ("tag", "by_team")
    assert event == {"severity": 10, "act": "Deny", "team": "sec", "note": "deny"}


def test_set_runs_only_when_the_route_matches_and_null_removes():
    t = table(
        'route a { when dpt == 1; set team = "x"; to pager }\n'
        "route b { set act = lower(suser); to archive }\n"
    )
    event = {"dpt": 2, "act": "Deny"}
    assert t.decide(event).routes == ("b",)
    assert event == {"dpt": 2}


def test_set_ext_and_syslog_fields():
    t = table('route a { set ext["my key"] = "v"; set syslog.tag = "t"; to pager }\n')
    event = {"syslog": {"hostname": "h"}}
    t.decide(event)
    assert event == {"syslog": {"hostname": "h", "tag": "t"}, "my key": "v"}
    bare: dict = {}
    t.decide(bare)
    assert bare == {"syslog": {"tag": "t"}, "my key": "v"}


def test_set_on_unmatched_runs():
    t = table(
        'route a { when dpt == 1; to pager }\nroute _unmatched { set why = "none"; to archive }\n'
    )
    event: dict = {}
    assert t.decide(event).routes == ("_unmatched",)
    assert event == {"why": "none"}
