"""The CLI through its public entry point: check, dry-run --json, test, plugins, help."""

from __future__ import annotations

import re

import orjson
import pytest

from dsrouter.cli import main

from .conftest import FW, IPS

GOOD = """\
output archive { type = "file", path = "a.jsonl" }
output pager   { type = "stdout" }

route critical {
  when severity >= 8 and module in ["intrusion_prevention", "anti_malware"]
  to pager
  continue
}
route netbios_noise {
  when module == "firewall" and dpt in [137, 138, 139]
  drop
}
route everything { to archive, pager }
"""


def test_check_valid(conf, capsys):
    assert main(["check", "-c", conf(GOOD)]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_reports_unknown_output_with_position_and_caret(conf, capsys):
    path = conf(GOOD.replace("to archive, pager", "to archiv, pager"))
    assert main(["check", "-c", path]) == 1
    err = capsys.readouterr().err
    m = re.search(re.escape(path) + r":13:(\d+): error\[(E\d+)\]: (.*)", err)
    assert m, err
    assert int(m.group(1)) == GOOD.splitlines()[12].index("archive") + 1
    assert "archiv" in m.group(3)
    assert "route everything { to archiv, pager }" in err
    assert "help:" in err and "archive" in err.split("help:")[1]


def test_check_rejects_config_that_does_not_account_for_every_event(conf, capsys):
    assert (
        main(["check", "-c", conf(GOOD.replace("route everything { to archive, pager }", ""))]) == 1
    )
    assert "every event" in capsys.readouterr().err


def test_check_json(conf, capsys):
    assert main(["check", "--json", "-c", conf('output x { type = "file", pth = "a" }\n')]) == 1
    result = orjson.loads(capsys.readouterr().out)
    assert result["valid"] is False
    assert any(d["line"] == 1 and d["severity"] == "error" for d in result["diagnostics"])


def test_check_embedded_default(capsys):
    assert main(["check"]) == 0


def test_dry_run_json_shape_and_order(conf, tmp_path, capsys):
    cap = tmp_path / "cap.log"
    body = IPS.encode()
    cap.write_bytes(
        body + b"\n\n" + FW.encode() + b"\n" + str(len(body)).encode() + b" " + body + b"\n"
    )
    assert main(["dry-run", "--json", "-c", conf(GOOD), str(cap)]) == 0
    recs = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in recs] == [1, 3, 4]
    assert list(recs[0]) == ["line", "event", "routes", "outputs", "dropped"]
    assert recs[0]["routes"] == ["critical", "everything"]
    assert recs[0]["outputs"] == ["pager", "archive"]
    assert recs[0]["dropped"] is False and recs[0]["event"]["host"] == "web-01"
    assert recs[1]["routes"] == ["netbios_noise"] and recs[1]["dropped"] is True
    assert recs[1]["outputs"] == []
    assert recs[2]["event"]["signature_id"] == 1000552  # octet count stripped


def test_dry_run_several_files_names_them(conf, tmp_path, capsys):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(IPS + "\n")
    b.write_text(FW + "\n")
    assert main(["dry-run", "--json", "-c", conf(GOOD), str(a), str(b)]) == 0
    recs = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["file"], r["line"]) for r in recs] == [(str(a), 1), (str(b), 1)]


def test_dry_run_human_output_has_summary(conf, tmp_path, capsys):
    cap = tmp_path / "cap.log"
    cap.write_text(IPS + "\n" + FW + "\n")
    assert main(["dry-run", "-c", conf(GOOD), str(cap)]) == 0
    out = capsys.readouterr().out
    assert "2 event(s); 1 dropped" in out and "DROPPED" in out


TESTS = f"""
test "XSS pages the on-call" {{
  input  "{IPS}"
  expect routes  == ["critical", "everything"]
  expect outputs == ["pager", "archive"]
  expect host == "web-01"
}}
test "NetBIOS noise is dropped" {{
  input "{FW}"
  expect dropped
}}
"""


def test_test_command_passes(conf, capsys):
    assert main(["test", "-c", conf(GOOD + TESTS)]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out


def test_test_command_shows_expected_and_actual(conf, capsys):
    broken = GOOD + TESTS.replace('expect host == "web-01"', 'expect host == "web-99"')
    assert main(["test", "-c", conf(broken)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  XSS pages the on-call" in out
    assert "'web-99'" in out and "'web-01'" in out
    assert "1 passed, 1 failed" in out


def test_plugins_lists_builtin_types(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind in ("input udp", "input tcp", "output file", "output stdout"):
        assert kind in out


def test_help_explains_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("run", "check", "dry-run", "test", "plugins", "send"):
        assert cmd in out
