"""Hostile and mistaken configurations through `dsrouter check`, `test` and `dry-run`.

Huge conditions, absurd nesting, env()/file() everywhere check accepts them, reserved words
and the wording of syntax errors. Every case asserts the exit code and what stderr says; none
may end in a traceback (an exception escaping ``main`` fails the test by itself).
"""

from __future__ import annotations

import orjson
import pytest

from dsrouter.cli.main import main

from .conftest import IPS

OUTS = 'output hit { type = "stdout" }\noutput miss { type = "stdout" }\n'
UNMATCHED = "route _unmatched { to miss }\n"
N = 10_000


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def routed(capsys, conf: str, capture: str) -> list[list[str]]:
    code, out, _ = run(capsys, "dry-run", "--json", "-c", conf, capture)
    assert code == 0
    return [orjson.loads(line)["routes"] for line in out.splitlines()]


def ips(severity: int) -> str:
    return IPS.replace("|8|", f"|{severity}|")


# ---- 10,000-term conditions ---------------------------------------------------------------


@pytest.mark.parametrize("op", ["or", "and"])
def test_ten_thousand_terms_check_compile_and_route(op, conf, capture, capsys):
    if op == "or":
        when = " or ".join(f"severity == {i}" for i in range(1, N + 1))
        expected = [["r"], ["r"], ["_unmatched"]]  # 1 and 10000 are terms, 10001 is not
    else:
        when = " and ".join(f"severity != {i}" for i in range(1, N + 1))
        expected = [["_unmatched"], ["_unmatched"], ["r"]]
    path = conf(OUTS + f"route r {{ when {when}; to hit }}\n" + UNMATCHED)
    code, out, _ = run(capsys, "check", "-c", path)
    assert code == 0 and "2 route(s)" in out
    lines = capture([ips(1), ips(N), ips(N + 1)])
    assert routed(capsys, path, lines) == expected


def test_ten_thousand_terms_explain_stops_at_the_deciding_term(conf, capture, capsys):
    when = " or ".join(f"severity == {i}" for i in range(N))
    path = conf(OUTS + f"route r {{ when {when}; to hit }}\n" + UNMATCHED)
    code, out, _ = run(capsys, "dry-run", "--explain", "-c", path, capture([ips(3)]))
    assert code == 0
    steps = [line for line in out.splitlines() if "severity ==" in line]
    assert len(steps) == 4 and steps[-1].endswith("true")  # 0, 1, 2 false; 3 decides


# ---- nesting --------------------------------------------------------------------------------


def _nested(kind: str, depth: int) -> str:
    """A configuration whose deepest expression or value nests ``depth`` levels."""
    if kind == "parens":
        when = "(" * depth + "severity == 8" + ")" * depth
    elif kind == "not":
        when = "not " * depth + "severity == 8"
    elif kind == "calls":
        when = "lower(" * depth + "host" + ")" * depth + ' == "web-01"'
    elif kind == "option-list":
        value = "[" * depth + '"x"' + "]" * depth
        return OUTS.replace("{ type", f"{{ extra = {value}, type", 1) + UNMATCHED
    else:  # a test expectation
        value = "[" * depth + '"x"' + "]" * depth
        return OUTS + UNMATCHED + f'test "t" {{ input "{IPS}"; expect name == {value} }}\n'
    return OUTS + f"route r {{ when {when}; to hit }}\n" + UNMATCHED


KINDS = ["parens", "not", "calls", "option-list", "expect-list"]


@pytest.mark.parametrize("kind", KINDS)
def test_absurd_nesting_is_one_coded_error(kind, conf, capture, capsys):
    path = conf(_nested(kind, N))
    for argv in (["check"], ["test"], ["dry-run", capture([IPS])]):
        code, _, err = run(capsys, argv[0], "-c", path, *argv[1:])
        assert code == 1
        assert err.count("error[E107]: expression nested too deeply (limit 64 levels)") == 1
        assert "1 error(s)" in err


@pytest.mark.parametrize("kind", ["parens", "not", "calls"])
def test_nesting_at_the_limit_checks_compiles_and_routes(kind, conf, capture, capsys):
    path = conf(_nested(kind, 64))
    assert run(capsys, "check", "-c", path)[0] == 0
    lines = capture([IPS, ips(5)])
    expected = [["r"], ["r"]] if kind == "calls" else [["r"], ["_unmatched"]]
    assert routed(capsys, path, lines) == expected
    code, out, _ = run(capsys, "dry-run", "--explain", "-c", path, lines)
    assert code == 0 and "matched" in out


def test_one_level_past_the_limit_is_refused(conf, capsys):
    code, _, err = run(capsys, "check", "-c", conf(_nested("parens", 65)))
    assert code == 1 and "E107" in err


# ---- env() and file() wherever check accepts them -------------------------------------------

ENV_CONF = """\
output hit { type = "stdout" }
output miss { type = "stdout" }
route r {
  when host == env("DSR_HOST", "web-01") and lower(host) in [env("DSR_HOST", "web-01"), "x"]
  set owner = file("owner.txt")
  set tag = upper(env("DSR_TAG", "ips"))
  to hit
}
route _unmatched { to miss }
test "env and file in expectations" {
  input "%s"
  expect routes == ["r"]
  expect host == env("DSR_HOST", "web-01")
  expect owner == file("owner.txt")
  expect tag == "IPS"
}
test "a failing expectation from env()" {
  input "%s"
  expect host == env("DSR_OTHER", "db-02")
}
"""


def test_env_and_file_work_in_when_set_and_expect(conf, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DSR_HOST", raising=False)
    monkeypatch.delenv("DSR_OTHER", raising=False)
    (tmp_path / "owner.txt").write_text("team-web\n")
    path = conf(ENV_CONF % (IPS, IPS))
    assert run(capsys, "check", "-c", path)[0] == 0
    code, out, _ = run(capsys, "test", "-c", path)
    assert code == 1
    assert "PASS  env and file in expectations" in out
    assert "FAIL  a failing expectation from env()" in out
    assert "1 passed, 1 failed" in out
    monkeypatch.setenv("DSR_OTHER", "web-01")
    code, out, _ = run(capsys, "test", "-c", path)
    assert code == 0 and "2 passed, 0 failed" in out


# ---- reserved words and the wording of E101 -------------------------------------------------


@pytest.mark.parametrize(
    ("when", "column", "message"),
    [
        ('severity >= and module == "x"', 28, "expected a value after '>=', found 'and'"),
        ("severity >= to hit", 28, "expected a value after '>=', found 'to'"),
        ("and == 3", 16, "expected a condition after 'when', found 'and'"),
        ("host matches and", 29, "expected a /regex/ or a string after 'matches', found 'and'"),
        ("severity == 8 or", 32, "expected a condition after 'or', found ';'"),
        ("in > 1000", 16, "expected a condition after 'when', found 'in'"),
    ],
    ids=["and-as-operand", "to-as-operand", "and-as-field", "matches", "or-at-end", "in-field"],
)
def test_missing_operand_is_reported_at_the_word_in_its_place(when, column, message, conf, capsys):
    path = conf(f"route r {{ when {when}; to hit }}\n" + OUTS + UNMATCHED)
    code, _, err = run(capsys, "check", "-c", path)
    assert code == 1
    assert f"dsrouter.conf:1:{column}: error[E101]: {message}" in err, err


def test_reserved_in_points_to_ext(conf, capture, capsys):
    code, _, err = run(capsys, "check", "-c", conf("route r { when in > 1000; to hit }\n" + OUTS))
    assert code == 1 and 'write the field as ext["in"]' in err
    path = conf(f'route r {{ when ext["in"] > 1000; to hit }}\n{OUTS}{UNMATCHED}')
    lines = capture([IPS + " in=5000", IPS + " in=10"])
    assert routed(capsys, path, lines) == [["r"], ["_unmatched"]]


@pytest.mark.parametrize(
    "text",
    [
        'route r { when severity == 3 module == "x"; to hit }',
        "route r { when severity; to hit; }; }",
        "route r { to hit, }",
        'output o { type = "stdout", path = }',
        "output o { type = 1 ] }",
        "settings { x = [1, 2 }",
        'test "t" { input "x"; expect }',
        "route r { throttle 1 per by host; to hit }",
        "test { }",
        "route r { when lower(host == 1; to hit }",
        "}",
    ],
)
def test_expected_lists_use_words_not_token_names(text, conf, capsys):
    code, _, err = run(capsys, "check", "-c", conf(text + "\n"))
    assert code == 1
    line = next(x for x in err.splitlines() if "error[E1" in x)
    for token in ("RBRACE", "LPAR", "NAME", "SEMICOLON", "COMPARE", "$END", "one of:"):
        assert token not in line, line
