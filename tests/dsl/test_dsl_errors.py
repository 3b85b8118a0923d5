"""Every diagnostic code: a failing config, and the code, line, column and message it yields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsrouter.dsl import load_config, load_config_text

from .conftest import SPECS, diagnostics_of

OUT = 'output archive { type = "file", path = "a" }\noutput pager { type = "stdout" }\n'
END = "route all { to archive }\n"

# (id, config text, code, line, column, text the message contains)
CASES = [
    ("E101-missing-operand", "route r { when x == }", "E101", 1, 21, "expected a value after '=='"),
    (
        "E101-keyword-as-operand",
        'route r { when severity >= and module == "x"; to o }',
        "E101",
        1,
        28,
        "expected a value after '>=', found 'and'",
    ),
    ("E101-keyword-as-field", "route r { when and == 3; to o }", "E101", 1, 16, "after 'when'"),
    (
        "E101-words-not-tokens",
        'route r { when severity == 3 module == "x" }',
        "E101",
        1,
        30,
        "expected 'and', 'or', an action (when, to, continue, drop, throttle, set), ';' or '}'",
    ),
    ("E101-found-word", "route r { to }", "E101", 1, 14, "expected a name after 'to', found '}'"),
    ("E101-keyword-named", "route r { when x == 1 drop }\nroute to", "E101", 2, 7, "found 'to'"),
    ("E101-file-words-are-names", "route r { when x == 1 drop }\nroute test", "E103", 2, 11, "end"),
    ("E102-bad-char", 'output o { type = "a" $ }', "E102", 1, 23, "unexpected character '$'"),
    ("E102-bad-unit", "output o { x = 5min }", "E102", 1, 16, "unexpected character '5'"),
    ("E103-eof", "route r {", "E103", 1, 10, "unexpected end of file"),
    ("E104-escape", 'output o { x = "a\\qb" }', "E104", 1, 18, "unknown escape '\\q'"),
    ("E105-bad-ip", "output o { x = 999.1.1.1 }", "E105", 1, 16, "invalid IP literal"),
    ("E105-host-bits", "output o { x = 10.0.0.1/8 }", "E105", 1, 16, "host bits set"),
    ("E106-expect-op", 'test "t" { input "m"\n expect a != 1 }', "E106", 2, 11, "only '=='"),
    ("E201-to", OUT + "route r { to archiv }", "E201", 3, 14, "unknown output 'archiv'"),
    (
        "E202-type",
        'output o { type = "fiel" }\n' + END,
        "E202",
        1,
        19,
        'unknown output type "fiel"',
    ),
    ("E203-no-type", 'output o { path = "x" }\n' + END, "E203", 1, 8, "output 'o' has no type"),
    (
        "E204-key",
        'output o { type = "file", path = "x", pth = 1 }\n' + END,
        "E204",
        1,
        39,
        "unknown option 'pth' in output 'o'",
    ),
    ("E204-settings", 'settings { data = "x" }\n' + OUT + END, "E204", 1, 12, "unknown option"),
    (
        "E205-missing",
        'output o { type = "file" }\n' + END,
        "E205",
        1,
        8,
        "missing required option 'path'",
    ),
    (
        "E206-kind",
        'output o { type = "file", path = "x", retain = 400 }\n' + END,
        "E206",
        1,
        48,
        "invalid value for option 'retain' in output 'o': expected a duration",
    ),
    (
        "E206-settings-address",
        'settings { metrics = "nope" }\n' + OUT + END,
        "E206",
        1,
        22,
        "option 'metrics'",
    ),
    (
        "E207-dup-output",
        OUT + 'output pager { type = "stdout" }\n' + END,
        "E207",
        3,
        8,
        "duplicate output name 'pager'",
    ),
    ("E207-dup-route", OUT + END + END, "E207", 4, 7, "duplicate route name 'all'"),
    (
        "E208-dup-key",
        'output o { type = "file", path = "a", path = "b" }\n' + END,
        "E208",
        1,
        39,
        "option 'path' is given twice",
    ),
    (
        "E209-reserved",
        OUT + "route _rest { to archive }",
        "E209",
        3,
        7,
        "route name '_rest' is reserved",
    ),
    ("E209-reserved-output", 'output _o { type = "stdout" }\n' + END, "E209", 1, 8, "reserved"),
    (
        "E210-env",
        'output o { type = "file", path = env("NOPE_X1") }\n' + END,
        "E210",
        1,
        34,
        "'NOPE_X1' is not set",
    ),
    (
        "E211-file",
        'output o { type = "file", path = file("nope.txt") }\n' + END,
        "E211",
        1,
        34,
        "cannot read file",
    ),
    (
        "E212-func",
        'output o { type = "file", path = lower("A") }\n' + END,
        "E212",
        1,
        34,
        "unknown function 'lower'",
    ),
    (
        "E212-args",
        'output o { type = "file", path = env(1) }\n' + END,
        "E212",
        1,
        34,
        "wrong arguments to env()",
    ),
    ("E213-glob", 'include "no/such/*.rules"\n' + OUT + END, "E213", 1, 1, "matches no file"),
    (
        "E216-settings",
        "settings { }\nsettings { }\n" + OUT + END,
        "E216",
        2,
        1,
        "only one settings block",
    ),
    (
        "E217-condition",
        OUT + "route r { when severity; to archive }",
        "E217",
        3,
        16,
        "expected a condition, found a field",
    ),
    (
        "E217-list-compare",
        OUT + "route r { when msg == [1]; to archive }",
        "E217",
        3,
        23,
        "found a list",
    ),
    (
        "E217-in-needs-list",
        OUT + "route r { when msg in 5; to archive }",
        "E217",
        3,
        23,
        "'in' needs a list",
    ),
    (
        "E231-order-bool",
        OUT + "route r { when msg < true; to archive }",
        "E231",
        3,
        16,
        "'<' compares numbers or strings, not 'msg' (a string) with true/false (true/false)",
    ),
    (
        "E218-subscript",
        OUT + 'route r { when syslog["a"] == 1; to archive }',
        "E218",
        3,
        16,
        "'syslog' cannot be indexed",
    ),
    ("E222-no-input", OUT + END + 'test "t" { expect dropped }', "E222", 4, 1, "has no input"),
    (
        "E224-expect-route",
        OUT + END + 'test "t" { input "m"; expect routes == ["al"] }',
        "E224",
        4,
        41,
        "unknown route 'al'",
    ),
    (
        "E201-expect-output",
        OUT + END + 'test "t" { input "m"; expect outputs == ["x"] }',
        "E201",
        4,
        42,
        "unknown output 'x'",
    ),
    (
        "E230-unknown-field",
        OUT + "route r { when severty >= 8; to archive }",
        "E230",
        3,
        16,
        "unknown field 'severty'",
    ),
    (
        "E230-did-you-mean",
        OUT + 'route r { when hots == "a"; to archive }',
        "E230",
        3,
        16,
        "unknown field 'hots'",
    ),
    (
        "E230-test-expect-field",
        OUT + END + 'test "t" { input "m"; expect hots == "a" }',
        "E230",
        4,
        30,
        "unknown field 'hots'",
    ),
    (
        "E230-nested",
        OUT + 'route r { when syslog.hostnam == "a"; to archive }',
        "E230",
        3,
        16,
        "'syslog.hostnam'",
    ),
    (
        "E230-exists",
        OUT + "route r { when exists(hostx); to archive }",
        "E230",
        3,
        23,
        "unknown field 'hostx'",
    ),
    (
        "E230-throttle-by",
        OUT + "route r { throttle 1 per 5m by hots; to archive }",
        "E230",
        3,
        32,
        "'hots'",
    ),
    (
        "E230-set-before",
        OUT + 'route r { when tag == "x"; to archive }\nroute s { set tag = "x"; to archive }',
        "E230",
        3,
        16,
        "unknown field 'tag'",
    ),
    (
        "E231-severity-string",
        OUT + 'route r { when severity >= "8"; to archive }',
        "E231",
        3,
        16,
        "'severity' (an integer) with \"8\" (a string)",
    ),
    (
        "E231-eq-string",
        OUT + 'route r { when severity == "8"; to archive }',
        "E231",
        3,
        16,
        "is always false",
    ),
    (
        "E231-regex-int",
        OUT + "route r { when severity matches /8/; to archive }",
        "E231",
        3,
        16,
        "'matches' tests strings, but 'severity' is an integer",
    ),
    (
        "E231-cidr-non-ip",
        OUT + "route r { when host in 10.0.0.0/8; to archive }",
        "E231",
        3,
        24,
        "CIDR test on 'host'",
    ),
    (
        "E231-cidr-in-list",
        OUT + "route r { when dpt not in [10.0.0.0/8, 1]; to archive }",
        "E231",
        3,
        28,
        "CIDR test on 'dpt'",
    ),
    (
        "E231-compare-cidr",
        OUT + "route r { when src == 10.0.0.0/8; to archive }",
        "E231",
        3,
        16,
        "cannot compare with a CIDR",
    ),
    (
        "E231-list-item",
        OUT + 'route r { when module in ["a", 3]; to archive }',
        "E231",
        3,
        32,
        "never equals an integer",
    ),
    (
        "E231-contains-int",
        OUT + 'route r { when dpt contains "1"; to archive }',
        "E231",
        3,
        16,
        "'contains' tests strings",
    ),
    (
        "E231-contains-arg",
        OUT + "route r { when msg contains 1; to archive }",
        "E231",
        3,
        29,
        "'contains' tests strings, but 1 is an integer",
    ),
    (
        "E231-func-arg",
        OUT + 'route r { when lower(severity) == "a"; to archive }',
        "E231",
        3,
        22,
        "lower() expects a string as argument 1, found 'severity' (an integer)",
    ),
    (
        "E231-func-result",
        OUT + 'route r { when len(msg) == "a"; to archive }',
        "E231",
        3,
        16,
        "len() (an integer)",
    ),
    (
        "E231-set-type",
        OUT + 'route r { set severity = "high"; to archive }',
        "E231",
        3,
        26,
        "field 'severity' holds an integer",
    ),
    (
        "E232-unknown-func",
        OUT + 'route r { when lowr(msg) == "a"; to archive }',
        "E232",
        3,
        16,
        "unknown function 'lowr'",
    ),
    (
        "E233-arity",
        OUT + 'route r { when lower(msg, act) == "a"; to archive }',
        "E233",
        3,
        16,
        "lower() takes 1 argument, got 2",
    ),
    (
        "E233-exists-arity",
        OUT + 'route r { when exists("msg"); to archive }',
        "E233",
        3,
        16,
        "exists() takes one field name",
    ),
    (
        "E234-bad-regex",
        OUT + "route r { when msg matches /a(b/; to archive }",
        "E234",
        3,
        28,
        "invalid regex: missing )",
    ),
    (
        "E234-bad-flag",
        OUT + "route r { when msg matches /ab/x; to archive }",
        "E234",
        3,
        28,
        "unknown regex flag 'x'",
    ),
    (
        "E234-backref",
        OUT + 'route r { when msg matches "(a)\\\\1"; to archive }',
        "E234",
        3,
        28,
        "invalid regex",
    ),
    (
        "E235-set-module",
        OUT + 'route r { set module = "x"; to archive }',
        "E235",
        3,
        15,
        "cannot change the field 'module'",
    ),
    (
        "E235-set-syslog",
        OUT + 'route r { set syslog.hostname = "x"; to archive }',
        "E235",
        3,
        15,
        "'syslog.hostname'",
    ),
    (
        "E235-nested",
        OUT + 'route r { set a.b = "x"; to archive }',
        "E235",
        3,
        15,
        "nested field 'a.b'",
    ),
    (
        "E236-throttle-zero",
        OUT + "route r { throttle 0 per 5m; to archive }",
        "E236",
        3,
        11,
        "above zero",
    ),
    (
        "E217-call-not-condition",
        OUT + "route r { when lower(msg); to archive }",
        "E217",
        3,
        16,
        "found lower() (a string)",
    ),
    (
        "E301-last-has-when",
        OUT + "route r { when msg == 1; to archive }",
        "E301",
        3,
        7,
        "does not account for every event",
    ),
    (
        "E301-last-continues",
        OUT + "route r { to archive; continue }",
        "E301",
        3,
        7,
        "does not account",
    ),
    (
        "E302-drop-to",
        OUT + "route r { to archive; drop }\n" + END,
        "E302",
        3,
        23,
        "cannot both 'drop' and send 'to'",
    ),
    (
        "E303-twice",
        OUT + "route r { to archive; to pager }",
        "E303",
        3,
        23,
        "'to' appears twice in route 'r'",
    ),
    (
        "E304-no-action",
        OUT + "route r { when dpt == 1 }\n" + END,
        "E304",
        3,
        7,
        "neither sends 'to' an output nor drops",
    ),
    (
        "E305-unmatched-when",
        OUT + "route r { when dpt == 1; to archive }\nroute _unmatched { when dpt == 2; to pager }",
        "E305",
        4,
        20,
        "cannot use 'when'",
    ),
    (
        "E306-drop-continue",
        OUT + "route r { drop; continue }\n" + END,
        "E306",
        3,
        17,
        "'continue' after 'drop'",
    ),
]


@pytest.mark.parametrize(
    "text, code, line, column, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_error_cases(text, code, line, column, message, monkeypatch, tmp_path):
    monkeypatch.delenv("NOPE_X1", raising=False)
    diags = diagnostics_of(text, base_dir=tmp_path)
    found = [d for d in diags if d.code == code]
    assert found, "\n".join(d.render() for d in diags)
    d = found[0]
    assert (d.span.line, d.span.column) == (line, column), d.render()
    assert message in d.message, d.render()
    assert d.source_line is not None


def test_render_shape():
    (d,) = [d for d in diagnostics_of(OUT + "route r { to archiv }\n" + END) if d.code == "E201"]
    lines = d.render().splitlines()
    assert lines[0] == "t.conf:3:14: error[E201]: unknown output 'archiv'"
    assert lines[1] == "  route r { to archiv }"
    assert lines[2] == "  " + " " * 13 + "^" * 6
    assert lines[3] == "  help: did you mean 'archive'?"


def test_all_errors_collected_in_one_go():
    text = (
        'output o { type = "file", pth = 1 }\n'
        "route a { to x }\n"
        "route a { when dpt == 1; drop; to o }\n"
    )
    codes = sorted(d.code for d in diagnostics_of(text))
    assert codes == ["E201", "E204", "E205", "E207", "E302", "W301"]


def test_syntax_errors_from_several_files(tmp_path):
    (tmp_path / "a.rules").write_text("route a {\n")
    (tmp_path / "b.rules").write_text("route b { to }\n")
    diags = diagnostics_of('include "*.rules"\nroute x { drop }', base_dir=tmp_path)
    got = sorted((Path(d.span.path).name, d.code, d.span.line) for d in diags)
    assert got == [("a.rules", "E103", 2), ("b.rules", "E101", 1)]


def test_secret_and_env_values_never_shown(monkeypatch):
    monkeypatch.setenv("HOOK_URL", "s3cr3t-token")
    text = 'output p { type = "webhook", url = env("HOOK_URL") }\n' + END.replace("archive", "p")
    diags = diagnostics_of(text)
    assert [d.code for d in diags] == ["E206"]
    assert "s3cr3t" not in diags[0].render()


def test_warnings_unreachable_route_and_useless_unmatched():
    text = OUT + END + "route late { when dpt == 1; to pager }\nroute _unmatched { to pager }\n"
    config = load_config_text(text, "t.conf", SPECS)
    got = [(w.code, w.span.line, w.span.column) for w in config.warnings]
    assert got == [("W301", 4, 7), ("W302", 5, 7)]
    assert all(w.severity == "warning" for w in config.warnings)


def test_unreadable_main_file(tmp_path):
    with pytest.raises(Exception) as info:
        load_config(tmp_path / "missing.conf", SPECS)
    assert [d.code for d in info.value.diagnostics] == ["E220"]


def test_codes_in_source_match_docs():
    root = Path(__file__).resolve().parents[2]
    source = "".join(p.read_text() for p in (root / "router" / "dsl").glob("*.py"))
    in_code = set(re.findall(r'"([EW]\d{3})"', source))
    in_docs = set(re.findall(r"^## ([EW]\d{3}) ", (root / "docs" / "errors.md").read_text(), re.M))
    assert in_code == in_docs
