"""The ``windows_eventlog`` output and ``dsrouter eventlog`` on Windows CPython + pywin32 (Wine).

Wine 8.0 registers sources in its registry for real, and its ``ReportEventW`` stores nothing
but traces every call (``EVENTLOG_TRACE``): the type, category, 32-bit event ID, number of
strings, raw data length and each string (cut by Wine at about 290 characters). These tests
register a source with the real command, read the key back, run the real daemon with a UDP
input fed from Linux, and compare what reached ``ReportEventW`` with the documented mapping.
Errors of ``ReportEventW`` cannot be provoked under Wine (it always succeeds): their
classification is tested on Linux (``tests/plugins/test_eventlog.py``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dsrouter.ds import parse_batch
from dsrouter.plugins.eventlog import MESSAGE_FILES
from dsrouter.plugins.eventlog_format import Layout, render
from dsrouter.samples import sample_lines

from .conftest import EVENTLOG_TRACE, winpath

# Wine's own trace lines (``../shared/windows/README.md``); nothing else on stderr is parsed.
REGISTER = re.compile(
    r'^[0-9a-f]{4,}:fixme:advapi:RegisterEventSourceW \(\(null\),L"(.*)"\): stub$'
)
REPORT = re.compile(
    r"^([0-9a-f]{4,}):fixme:advapi:ReportEventW \([0-9A-F]+,0x([0-9a-f]{4}),0x([0-9a-f]{4}),"
    r"0x([0-9a-f]{8}),[0-9A-F]+,0x([0-9a-f]{4}),0x([0-9a-f]{8}),[0-9A-F]+,[0-9A-F]+\): stub$"
)
STRING = re.compile(r'^([0-9a-f]{4,}):(?:err|warn|trace):eventlog:ReportEventW L"(.*)"(\.\.\.)?$')
ESCAPE = re.compile(r'\\(?:([nrt"\\])|([0-9a-f]{4}))')
WINE_CUT = 200  # strings are compared up to here: Wine cuts its trace at about 290 characters

STEPS = r"""
import contextlib, io, json, sys, winreg
from dsrouter.cli import main

def read(log, source):
    path = "SYSTEM\\CurrentControlSet\\Services\\EventLog\\" + log + "\\" + source
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as k:
            return {n: winreg.QueryValueEx(k, n)[0] for n in ("EventMessageFile", "TypesSupported")}
    except FileNotFoundError:
        return None

results = []
for kind, *args in json.loads(sys.stdin.readline()):
    if kind == "read":
        results.append(read(*args))
        continue
    if kind == "problem":
        from dsrouter.plugins.eventlog import source_problem
        results.append(source_problem(*args))
        continue
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


@dataclass
class Reported:
    """One ReportEventW call as Wine traced it."""

    type: int
    category: int
    event_id: int
    count: int
    data_size: int
    strings: list[str] = field(default_factory=list)
    cut: list[bool] = field(default_factory=list)


def unescape(text: str) -> str:
    def one(m: re.Match) -> str:
        if m.group(1):
            return {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), m.group(1))
        return chr(int(m.group(2), 16))

    return ESCAPE.sub(one, text)


def parse_trace(stderr: str) -> tuple[list[str], list[Reported]]:
    """Sources registered and ReportEventW calls, each with the strings its thread traced."""
    sources: list[str] = []
    calls: list[Reported] = []
    current: dict[str, Reported] = {}
    for line in stderr.splitlines():
        line = line.rstrip("\r")
        if m := REGISTER.match(line):
            sources.append(unescape(m.group(1)))
        elif m := REPORT.match(line):
            tid, *nums = m.groups()
            typ, cat, eid, count, size = (int(n, 16) for n in nums)
            current[tid] = Reported(typ, cat, eid, count, size)
            calls.append(current[tid])
        elif (m := STRING.match(line)) and m.group(1) in current:
            current[m.group(1)].strings.append(unescape(m.group(2)))
            current[m.group(1)].cut.append(bool(m.group(3)))
    return sources, calls


def run_steps(win, tmp_path: Path, name: str, steps) -> tuple[str, list]:
    """Run ``steps(name)`` (``dsrouter`` commands via ``main(argv)``, registry reads and the
    output's source check) in one Windows process: one Wine start instead of one per step.

    A process that exits non-zero having printed nothing at all never reached Python (Wine
    failed to start it, seen once in CI after the service rig's prefix was torn down): that is
    retried once, with a fresh source name so no half-run step is seen, and Wine's errors on.
    """
    script = tmp_path / "steps.py"
    script.write_text(STEPS)
    for attempt, winedebug in enumerate(("-all", "err+all")):
        proc = subprocess.run(
            win.argv(winpath(script)),
            input=json.dumps(steps(name)) + "\n",
            capture_output=True,
            text=True,
            errors="replace",
            timeout=120,
            env=win.env(winedebug),
            check=False,
        )
        if proc.returncode == 0 or proc.stdout or proc.stderr:
            break
        name = f"{name} retry{attempt + 1}"
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    return name, json.loads(proc.stdout.strip().splitlines()[-1])


def eventlog_cmd(win, action: str, source: str, log: str = "Application"):
    return win.run("-m", "dsrouter", "eventlog", action, "--source", source, "--log", log)


@pytest.fixture(scope="module")
def source(win):
    """A source registered for this module's tests with the real command; removed after."""
    name = f"dsrouter test {os.getpid()}"
    proc = eventlog_cmd(win, "install-source", name)
    assert proc.returncode == 0, proc.stderr[-2000:]
    yield name
    eventlog_cmd(win, "remove-source", name)


class Daemon:
    """``dsrouter run`` under Wine, its stdout and stderr collected by two reader threads."""

    def __init__(self, win, conf: Path) -> None:
        self.proc = win.popen(
            "-m", "dsrouter", "run", "-c", winpath(conf), winedebug=EVENTLOG_TRACE
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode("utf-8", "replace"))

    def wait_for(self, what, timeout: float = 90.0):
        """Poll ``what()`` until it is truthy, the daemon exits, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = what()
            if result or self.proc.poll() is not None:
                return result or what()
            time.sleep(0.1)
        return what()

    def stop(self) -> None:
        """Kill it (queues are crash-safe; the trace is already out) and close the pipes."""
        self.proc.kill()
        self.proc.wait(timeout=30)
        for reader in self.readers:
            reader.join(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def config(tmp_path: Path, source: str, extra: str = "") -> Path:
    data = winpath(tmp_path / "data").replace("\\", "/")
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(
        f'settings {{ data_dir = "{data}" }}\n'
        'input u { type = "udp", listen = "127.0.0.1:0" }\n'
        f'output ev {{ type = "windows_eventlog", source = "{source}"{extra} }}\n'
        "route all { to ev }\n"
    )
    return conf


def test_install_source_registers_and_remove_source_deletes_the_key(win, tmp_path):
    cmd = ["cli", "eventlog"]

    def steps(name: str) -> list:
        return [
            [*cmd, "install-source", "--source", name],
            [*cmd, "install-source", "--source", name, "--log", "Application"],
            [*cmd, "install-source", "--source", name, "--log", "System"],
            ["read", "Application", name],
            ["read", "System", name],
            ["problem", name, "Application"],
            ["problem", name, "System"],
            [*cmd, "remove-source", "--source", name],
            [*cmd, "remove-source", "--source", name],
            ["read", "Application", name],
            [*cmd, "install-source", "--source", "a\\b"],
        ]

    name, results = run_steps(win, tmp_path, f"dsrouter install {os.getpid()}", steps)
    install, again, elsewhere, key, other, fine, moved, remove, twice, gone, bad = results
    assert install["code"] == 0, install
    assert f'registered event source "{name}" in the "Application" log' in install["out"]
    assert "is not on this machine" in install["err"]  # Wine has no .NET Framework 4
    assert again["code"] == 0
    assert elsewhere["code"] == 1
    assert 'already registered for the "Application" log' in elsewhere["err"]
    assert key == {"EventMessageFile": MESSAGE_FILES[0], "TypesSupported": 7}
    assert other is None
    assert fine is None  # what the output's open() checks
    assert moved.startswith(
        f'event source "{name}" is registered for the "Application" log, not "System"'
    )
    assert remove["code"] == 0 and "removed event source" in remove["out"]
    assert twice["code"] == 0 and "nothing to remove" in twice["out"]
    assert gone is None
    assert bad["code"] == 2 and "--source: must not contain" in bad["err"]


def _sent_events(lines: list[str]) -> list[dict]:
    events = parse_batch([x.encode() for x in lines], "u", "127.0.0.1", "2026-01-01T00:00:00+00:00")
    for ev in events:  # stamped by the daemon: not known here
        ev.pop("received_at")
    return events


def test_the_daemon_writes_udp_events_through_report_event(win, source, tmp_path):
    odd = (
        "<134>Jan  1 00:00:00 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0|1000999|"
        "Détection 日本 %%1|10|dvchost=web-02 src=198.51.100.9 act=Block msg=line1\\nline2"
    )
    lines = [*sample_lines(), odd]
    daemon = Daemon(win, config(tmp_path, source, ", raw_data = true, max_raw_data = 64"))
    try:
        banner = daemon.wait_for(lambda: any("Stop with" in x for x in daemon.out))
        assert banner, f"daemon did not start: {daemon.stderr[-3000:]}"
        port = int(re.search(r"input  u  udp  127\.0\.0\.1:(\d+)", "".join(daemon.out)).group(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for line in lines:
                sock.sendto(line.encode(), ("127.0.0.1", port))
        daemon.wait_for(lambda: len(parse_trace(daemon.stderr)[1]) >= len(lines))
    finally:
        daemon.stop()
    sources, calls = parse_trace(daemon.stderr)
    assert source in sources
    assert len(calls) == len(lines), daemon.stderr[-3000:]
    got = {c.event_id: c for c in calls}
    # The documented table, spelled out: type (1 error, 2 warning, 4 information), category,
    # event ID = 1000 x category + signature ID mod 1000.
    assert {eid: (c.type, c.category) for eid, c in got.items()} == {
        9600: (4, 9),  # system, severity 3
        1000: (2, 1),  # anti_malware, 6
        2000: (2, 2),  # web_reputation, 5
        3021: (2, 3),  # firewall, 5
        4552: (1, 4),  # intrusion_prevention, 8
        5779: (2, 5),  # integrity_monitoring, 6
        6795: (1, 6),  # log_inspection, 8
        7200: (2, 7),  # application_control, 6
        8200: (2, 8),  # device_control, 6
        9192: (4, 9),  # system (LEEF), 3
        4999: (1, 4),  # the odd one: intrusion_prevention, 10
    }
    ips = got[4552]
    assert ips.count == 13 and ips.data_size == 64
    assert ips.strings[1:11] == [
        "Generic Cross Site Scripting(XSS) Prevention",
        "8",
        "intrusion_prevention",
        "1000552",
        "web-01.example.com",
        "203.0.113.9",
        "51234",
        "192.0.2.15",
        "80",
        "Reset",
    ]
    assert ips.strings[0].startswith(
        "Generic Cross Site Scripting(XSS) Prevention\r\n\r\nSeverity: 8"
    )
    weird = got[4999]
    assert weird.strings[1] == "Détection 日本 %\u200b%1"
    assert weird.strings[0].startswith("Détection 日本 %\u200b%1\r\n")
    # Everything else matches the pure mapping the Linux tests pin down, string by string.
    layout = Layout(raw_data=True, max_raw_data=64)
    for ev in _sent_events(lines):
        rec = render(ev, layout)
        call = got[rec.event_id]
        assert (call.type, call.category, call.count) == (rec.type, rec.category, len(rec.strings))
        assert call.data_size == len(rec.data or b"")
        for n, (seen, sent) in enumerate(zip(call.strings, rec.strings, strict=True)):
            if n in (0, 11, 12):  # the message, event_id and received_at: the daemon's own
                continue
            assert seen[:WINE_CUT] == sent[:WINE_CUT], (rec.event_id, n)


def test_a_missing_source_stops_the_daemon_at_start_up_with_the_fix(win, tmp_path):
    name = f"dsrouter never registered {os.getpid()}"
    proc = win.run("-m", "dsrouter", "run", "-c", winpath(config(tmp_path, name)))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f'event source "{name}" is not registered in the "Application" event log' in proc.stderr
    fix = (
        f'dsrouter eventlog install-source --source "{name}" --log "Application"` as administrator'
    )
    assert fix in proc.stderr
