"""dsrouter test: failures with locations, expected and actual values, the why, JUnit XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from dsrouter.cli import main


def _tests(lines: dict[str, str], host: str = "web-01", routes: str = '"critical", "everything"'):
    return f"""
test "XSS pages the on-call" {{
  input  "{lines["ips"]}"
  expect routes  == [{routes}]
  expect outputs == ["pager", "archive"]
  expect host == "{host}"
}}
test "NetBIOS noise is dropped" {{
  input "{lines["fw"]}"
  expect dropped
}}
test "Anti-malware is archived" {{
  input "{lines["am"]}"
  expect routes == ["everything"]
  expect filePath == "C:\\\\eicar.exe"
}}
"""


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_passing_suite_exits_0_with_the_count(conf, lines, capsys, routes_text):
    assert main(["test", "-c", conf(routes_text + _tests(lines))]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS  ") == 3
    assert out.splitlines()[-1] == "3 passed, 0 failed"


def test_failure_shows_location_expected_actual_and_why(conf, lines, capsys, routes_text):
    text = routes_text + _tests(lines, host="web-99", routes='"critical"')
    path = conf(text)
    assert main(["test", "-c", path]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  XSS pages the on-call  ({path}:{_line_of(text, 'XSS pages')}:1)" in out
    routes_at = f"{path}:{_line_of(text, 'expect routes  ==')}:3: expect routes"
    assert routes_at in out
    assert "expected: ['critical']" in out and "actual:   ['critical', 'everything']" in out
    assert f"{path}:{_line_of(text, 'expect host')}:3: expect host" in out
    assert "expected: 'web-99'" in out and "actual:   'web-01'" in out
    why = out.split("why:", 1)[1]
    assert re.search(r"critical\s+matched, continue", why)
    assert "=> routes: critical, everything; outputs: pager, archive" in why
    assert out.splitlines()[-1] == "2 passed, 1 failed"


def test_field_only_failure_has_no_why(conf, lines, capsys, routes_text):
    assert main(["test", "-c", conf(routes_text + _tests(lines, host="web-99"))]) == 1
    assert "why:" not in capsys.readouterr().out


def test_each_test_starts_with_fresh_throttle_state(conf, lines, capsys):
    text = """\
output o { type = "stdout" }
route limited { when module == "intrusion_prevention"; throttle 1 per 5m by host; to o }
route everything { to o }
"""
    for n in (1, 2, 3):
        text += (
            f'test "same event {n}" {{ input "{lines["ips"]}"\n expect routes == ["limited"] }}\n'
        )
    assert main(["test", "-c", conf(text)]) == 0
    assert "3 passed, 0 failed" in capsys.readouterr().out


# ---- JUnit XML --------------------------------------------------------------------------


def _junit(tmp_path, conf, text, expect_rc):
    out = tmp_path / "junit.xml"
    path = conf(text)
    assert main(["test", "-c", path, "--junit", str(out)]) == expect_rc
    return path, ET.parse(out).getroot()


def test_junit_records_every_case_and_the_failure(tmp_path, conf, lines, capsys, routes_text):
    text = routes_text + _tests(lines, host="web-99")
    path, root = _junit(tmp_path, conf, text, 1)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == path
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "XSS pages the on-call",
        "NetBIOS noise is dropped",
        "Anti-malware is archived",
    ]
    assert cases[0].get("file") == path
    assert cases[0].get("line") == str(_line_of(text, "XSS pages"))
    assert float(cases[0].get("time")) >= 0
    (failure,) = cases[0].findall("failure")
    host_line = _line_of(text, "expect host")
    assert failure.get("message") == (
        f"{path}:{host_line}:3: expect host: expected 'web-99', actual 'web-01'"
    )
    assert "expected: 'web-99'" in failure.text and "actual:   'web-01'" in failure.text
    assert cases[1].find("failure") is None and cases[2].find("failure") is None
    assert "2 passed, 1 failed" in capsys.readouterr().out


def test_junit_when_everything_passes(tmp_path, conf, lines, routes_text):
    _, root = _junit(tmp_path, conf, routes_text + _tests(lines), 0)
    suite = root.find("testsuite")
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == 3
    assert root.find(".//failure") is None


def test_junit_escapes_descriptions_and_counts_extra_failures(tmp_path, conf, lines, routes_text):
    text = routes_text + _tests(lines, host="web-99", routes='"critical"').replace(
        "XSS pages the on-call", '<XSS> & \\"quotes\\"'
    )
    _, root = _junit(tmp_path, conf, text, 1)
    case = root.find(".//testcase")
    assert case.get("name") == '<XSS> & "quotes"'
    assert case.find("failure").get("message").endswith("(and 1 more)")
    assert "why:" in case.find("failure").text


def test_junit_unwritable_path_is_reported(tmp_path, conf, lines, capsys, routes_text):
    target = tmp_path / "missing-dir" / "junit.xml"
    assert main(["test", "-c", conf(routes_text + _tests(lines)), "--junit", str(target)]) == 1
    assert f"cannot write {target}" in capsys.readouterr().err


SET_ROUTES = """\
output o { type = "stdout" }
route raised { when severity >= 8; set severity = 10; to o }
route everything { to o }
"""


@pytest.mark.parametrize(
    ("expectation", "actual"),
    [
        ("expect severity == 10", None),
        ('expect syslog.hostname == "web-01"', None),
        ('expect routes == ["raised"]', None),
        ("expect severity == 8", "10"),
        ('expect syslog.hostname == "db-02"', "'web-01'"),
        ('expect ext["no such key"] == "x"', "None"),
        ("expect dropped", "False"),
    ],
    ids=["set-applied", "nested", "routes", "set-not-original", "nested-fail", "missing", "drop"],
)
def test_expectations_see_the_event_after_set_actions(conf, lines, capsys, expectation, actual):
    text = SET_ROUTES + f'test "t" {{\n  input "{lines["ips"]}"\n  {expectation}\n}}\n'
    assert main(["test", "-c", conf(text)]) == (0 if actual is None else 1)
    out = capsys.readouterr().out
    if actual is None:
        assert out.splitlines()[-1] == "1 passed, 0 failed"
    else:
        assert re.search(
            rf":6:3: expect .*\n\s+expected: .*\n\s+actual:   {re.escape(actual)}$", out, re.M
        )
