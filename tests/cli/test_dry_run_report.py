"""dry-run --explain, --coverage, the closing summary table, and the progress bar."""

from __future__ import annotations

import io
import re

import orjson
import pytest

from dsrouter import report
from dsrouter.cli import main

CONTRACT_KEYS = ["line", "event", "routes", "outputs", "dropped"]


def _route_blocks(out: str) -> dict[str, str]:
    """The explain text of each input line, keyed by ``line N``."""
    parts = re.split(r"^(line \d+): ", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _verdicts(block: str) -> dict[str, str]:
    """``route -> verdict`` from one event's explain block."""
    found = re.findall(r"^    (\w+)\s+(.+?)\s+\((\S+:\d+:\d+)\)$", block, flags=re.M)
    return {name: verdict for name, verdict, _ in found}


# ---- --explain --------------------------------------------------------------------------


def test_explain_lists_every_route_in_order_with_verdict_and_outcome(conf, capture, lines, capsys):
    cap = capture([lines["ips"], lines["fw"]])
    assert main(["dry-run", "--explain", "-c", conf(), cap]) == 0
    blocks = _route_blocks(capsys.readouterr().out)
    ips, fw = _verdicts(blocks["line 1"]), _verdicts(blocks["line 2"])
    assert list(ips) == ["critical", "netbios_noise", "spare_route", "everything"]
    assert ips == {
        "critical": "matched, continue",
        "netbios_noise": "no match",
        "spare_route": "no match",
        "everything": "matched",
    }
    assert fw["critical"] == "no match" and fw["netbios_noise"] == "dropped"
    assert fw["spare_route"] == fw["everything"] == "not reached"
    assert "=> routes: critical, everything; outputs: pager, archive" in blocks["line 1"]
    assert "=> routes: netbios_noise; DROPPED" in blocks["line 2"]


def test_explain_shows_route_locations_and_the_steps(conf, capture, lines, capsys):
    path = conf()
    assert main(["dry-run", "--explain", "-c", path, capture([lines["ips"]])]) == 0
    out = capsys.readouterr().out
    assert f"({path}:5:1)" in out  # route critical starts on line 5
    assert f"({path}:18:1)" in out  # route everything
    critical = out.split("critical", 1)[1].split("netbios_noise", 1)[0]
    assert "severity >= 8" in critical and "true" in critical


def test_explain_json_adds_explain_after_the_contract_keys(conf, capture, lines, capsys):
    path = conf()
    assert main(["dry-run", "--json", "--explain", "-c", path, capture([lines["fw"]])]) == 0
    (rec,) = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert list(rec) == [*CONTRACT_KEYS, "explain"]
    trace = rec["explain"]
    assert [t["route"] for t in trace] == ["critical", "netbios_noise", "spare_route", "everything"]
    assert [t["verdict"] for t in trace][:2] == ["no match", "dropped"]
    assert trace[1]["at"] == f"{path}:10:1"
    assert set(trace[0]) == {"route", "at", "verdict", "steps", "throttle"}
    assert trace[3]["steps"] == [] and trace[3]["throttle"] is None


def test_json_without_explain_keeps_the_contract_exactly(conf, capture, lines, capsys):
    assert main(["dry-run", "--json", "-c", conf(), capture([lines["ips"]])]) == 0
    captured = capsys.readouterr()
    assert list(orjson.loads(captured.out)) == CONTRACT_KEYS
    assert captured.err == ""  # no summary beside JSON unless --coverage


# ---- summary table and coverage ---------------------------------------------------------


def _table(out: str) -> dict[str, list[int]]:
    rows = re.findall(r"^  (\w+)\s+(\d+)(?:\s+(\d+)\s+(\d+))?$", out, flags=re.M)
    return {name: [int(x) for x in nums if x] for name, *nums in rows}


def test_summary_counts_per_route_and_per_output(conf, capture, lines, capsys):
    cap = capture([lines["ips"], lines["fw"], lines["am"], lines["fw"], "not syslog at all"])
    assert main(["dry-run", "-c", conf(), cap]) == 0
    out = capsys.readouterr().out
    assert "5 event(s); 2 dropped" in out
    summary = out.split("5 event(s)", 1)[1]
    table = _table(summary)
    assert table["critical"] == [1, 0, 0]
    assert table["netbios_noise"] == [2, 2, 0]
    assert table["spare_route"] == [0, 0, 0]
    assert table["everything"] == [3, 0, 0]
    assert table["_unmatched"] == [0, 0, 0]
    assert table["pager"] == [3] and table["archive"] == [3] and table["spare"] == [0]


def test_coverage_lists_routes_that_never_matched(conf, capture, lines, capsys):
    cap = capture([lines["ips"], lines["am"]])
    assert main(["dry-run", "--coverage", "-c", conf(), cap]) == 0
    out = capsys.readouterr().out
    assert "coverage: 2 of 5 route(s) matched over 2 event(s)" in out
    never = re.search(r"^never matched: (.*)$", out, flags=re.M).group(1)
    assert never.split(", ") == ["netbios_noise", "spare_route", "_unmatched"]
    assert re.search(r"^  everything\s+2\s+100\.0%$", out, flags=re.M)


def test_coverage_counts_unmatched_events_under_unmatched(conf, capture, lines, capsys):
    text = 'output o { type = "stdout" }\nroute fw { when module == "firewall"; to o }\n'
    text += "route _unmatched { drop }\n"
    assert main(["dry-run", "--coverage", "-c", conf(text), capture([lines["ips"]])]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  _unmatched\s+1\s+1\s+0$", out, flags=re.M)
    assert re.search(r"^never matched: fw$", out, flags=re.M)


def test_json_with_coverage_puts_the_summary_on_stderr_only(conf, capture, lines, capsys):
    cap = capture([lines["ips"], lines["fw"]])
    assert main(["dry-run", "--json", "--coverage", "-c", conf(), cap]) == 0
    captured = capsys.readouterr()
    recs = [orjson.loads(x) for x in captured.out.splitlines()]  # every stdout line is JSON
    assert [r["line"] for r in recs] == [1, 2]
    assert "2 event(s); 1 dropped" in captured.err
    assert "never matched: spare_route, _unmatched" in captured.err


THROTTLED = """\
output o { type = "stdout" }
route limited { when module == "intrusion_prevention"; throttle 1 per 5m by host; to o }
route everything { to o }
"""


def test_summary_and_explain_report_throttling(conf, capture, lines, capsys):
    cap = capture([lines["ips"]] * 3)
    assert main(["dry-run", "--explain", "-c", conf(THROTTLED), cap]) == 0
    out = capsys.readouterr().out
    blocks = _route_blocks(out)
    assert _verdicts(blocks["line 1"])["limited"] == "matched"
    assert _verdicts(blocks["line 3"])["limited"] == "throttled"
    assert "throttle:" in blocks["line 3"]
    table = _table(out.split("3 event(s)", 1)[1])
    assert table["limited"] == [1, 0, 2] and table["everything"] == [2, 0, 0]


# ---- progress bar -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "expected"),
    [
        (0, 4000, 0.0, "\r[------------------------------]   0%  0/4,000 lines  -/s"),
        (2000, 4000, 2.0, "\r[###############---------------]  50%  2,000/4,000 lines  1,000/s"),
        (4000, 4000, 0.5, "\r[##############################] 100%  4,000/4,000 lines  8,000/s"),
        (9, 0, 1.0, "\r[##############################] 100%  9/0 lines  9/s"),
    ],
    ids=["start", "half", "done", "empty-total"],
)
def test_render_progress(done, total, elapsed, expected):
    assert report.render_progress(done, total, elapsed) == expected


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_at_most_once_per_interval():
    now = [0.0]
    stream = FakeTTY()
    bar = report.Progress(10_000, stream, interval=0.25, clock=lambda: now[0])
    for _ in range(10):  # ten batches within 0.09 s: one draw
        bar.update(1000)
        now[0] += 0.01
    now[0] = 0.5
    bar.update(0)
    assert stream.getvalue().count("\r[") == 2
    bar.close()
    text = stream.getvalue()
    assert "100%  10,000/10,000 lines" in text
    assert text.endswith("\r") and text.rstrip("\r").endswith(" ")  # line cleared


@pytest.mark.parametrize(
    ("total", "tty", "shown"),
    [(5000, True, True), (2000, True, False), (5000, False, False)],
    ids=["long-tty", "short-tty", "long-pipe"],
)
def test_progress_only_for_long_input_on_a_terminal(total, tty, shown):
    stream = FakeTTY() if tty else io.StringIO()
    assert (report.progress_for(total, stream) is not None) is shown


def test_dry_run_shows_no_progress_on_a_non_tty(conf, capture, lines, capsys):
    cap = capture([lines["fw"]] * 2500)
    assert main(["dry-run", "--json", "-c", conf(), cap]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert len(captured.out.splitlines()) == 2500


def test_dry_run_draws_progress_on_a_terminal(conf, capture, lines, capsys, monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    assert main(["dry-run", "--json", "-c", conf(), capture([lines["fw"]] * 2500)]) == 0
    assert "\r[" in tty.getvalue() and "2,500/2,500 lines" in tty.getvalue()
    assert all(line.startswith("{") for line in capsys.readouterr().out.splitlines())
