"""The daemon itself on Windows CPython + pywin32 under Wine 8.0, fed from Linux.

``dsrouter run`` with a UDP and a TCP input (asyncio's proactor loop), a ``file`` output and a
``windows_eventlog`` one (asserted through Wine's Event Log trace); events come from Linux
(``dsrouter send`` and raw sockets). Stopping the Windows way, with the drain checked each
time (events sent on an open connection *after* the daemon logged ``daemon_stopping`` are in
the archive, and the exit code is 0):

* Ctrl-C: Wine turns SIGINT to the ``wine`` process into a CTRL_C_EVENT for the console's
  processes, the C runtime into SIGINT (SIGTERM is not translated: Wine dies of it);
* Ctrl-Break: ``raise(SIGBREAK)`` inside the Windows process (Wine 8's
  GenerateConsoleCtrlEvent delivers only CTRL_C_EVENT, and only on a real console);
* closing the console: the handler registered with SetConsoleCtrlHandler, called with
  CTRL_CLOSE_EVENT (Wine cannot close a console window), must return only once drained;
* the control channel (loopback TCP + the token in data_dir): ``stop``, with ``reload`` and
  ``queue status`` through the real CLI.

The Windows service runs in a Wine prefix of its own (services.exe, the registry, auto-start
at the next session) with a copy of the interpreter where dsrouter is installed in
site-packages, as pip would: install, start, receive, stop (drain), remove, and a start that
fails. A keeper process holds the Wine session open: when the last ordinary process exits,
Wine ends services.exe and the services with it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import EVENTLOG_TRACE, stage_dsrouter, winpath

HAVE_EVENTLOG = importlib.util.find_spec("dsrouter.plugins.eventlog") is not None
# Wine writes its trace to the same stderr as Python, so a trace line can land inside one of
# the daemon's log lines (Python writes the text and its newline apart): search, not match.
REPORT_EVENT = re.compile(r"[0-9a-f]{4,}:fixme:advapi:ReportEventW \(")
TRACE_STRING = re.compile(
    r'[0-9a-f]{4,}:(?:err|warn|trace):eventlog:ReportEventW L"(.*?)"(?:\.\.\.)?$'
)


def log_events(lines: list[str], event: str) -> list[dict]:
    """The daemon's JSON log records named ``event`` (trailing trace text ignored)."""
    decode = json.JSONDecoder().raw_decode
    return [decode(x)[0] for x in lines if x.startswith("{") and f'"event": "{event}"' in x]


def line(tag: str) -> str:
    stamp = time.strftime("%b %e %H:%M:%S")
    return (
        f"<134>{stamp} dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0|4000000|"
        f"Test {tag}|6|act=blocked"
    )


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    where: Path, path: str = "archive/{module}.jsonl", extra: str = "", settings: str = ""
) -> dict:
    """A config with a UDP and a TCP input on free ports and a file output; its ports."""
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    to = ", ev" if "output ev" in extra else ""
    where.write_text(
        f'settings {{ data_dir = "./data", shutdown_timeout = 15s {settings} }}\n'
        f'input udp_in {{ type = "udp", listen = "127.0.0.1:{udp}" }}\n'
        f'input tcp_in {{ type = "tcp", listen = "127.0.0.1:{tcp}" }}\n'
        f'output archive {{ type = "file", path = "{path}" }}\n'
        f"{extra}\n"
        f"route all {{ to archive{to} }}\n"
    )
    return {"udp": udp, "tcp": tcp}


def names(data: Path, pattern: str = "archive/*.jsonl") -> list[str]:
    """The event names in the archive files (one per archived event)."""
    return [
        json.loads(raw)["name"]
        for p in sorted(data.glob(pattern))
        for raw in p.read_text(encoding="utf-8").splitlines()
        if raw.strip()
    ]


def wait_names(data: Path, want: set[str], pattern: str = "archive/*.jsonl", timeout=60.0):
    deadline = time.monotonic() + timeout
    while not want <= set(names(data, pattern)):
        assert time.monotonic() < deadline, f"missing {sorted(want - set(names(data, pattern)))}"
        time.sleep(0.1)


def send_linux(proto: str, port: int, lines: list[str], tmp_path: Path) -> None:
    """``dsrouter send`` from Linux (this checkout, Linux CPython)."""
    src = tmp_path / f"send-{proto}-{port}.log"
    src.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "dsrouter", "send", f"--{proto}", f"127.0.0.1:{port}", str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


class Streams:
    """Reads a process's stdout and stderr lines as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [
            threading.Thread(target=self._read, args=(s, sink), daemon=True)
            for s, sink in ((proc.stdout, self.out), (proc.stderr, self.err))
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the readers catch the last lines
                if cond():
                    return
                pytest.fail(f"exited ({self.proc.returncode}) before {what}: {self.tail()}")
            assert time.monotonic() < deadline, f"no {what} after {timeout}s: {self.tail()}"
            time.sleep(0.05)

    def logged(self, event: str) -> list[dict]:
        return log_events(self.err, event)

    def finish(self, timeout: float = 90.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.close()
        return rc

    def close(self) -> None:
        """Kill the process if it still runs; close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for t in self.threads:
            t.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def tail(self) -> str:
        return "\n".join(self.err[-25:] + self.out[-10:])


class _LogWatcher:
    """The service's log file read like :class:`Streams` (``logged`` only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def err(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def logged(self, event: str) -> list[dict]:
        start = [i for i, x in enumerate(self.err) if '"event": "listener_started"' in x]
        tail = self.err[start[-1] :] if start else self.err  # this run's lines only
        return log_events(tail, event)

    def tail(self) -> str:
        return "\n".join(self.err[-25:])


@pytest.fixture
def started():
    """Every process a test started: killed (when still running) and closed afterwards."""
    procs: list[Streams] = []
    yield procs
    for d in procs:
        d.close()


def run_daemon(win, started, conf: Path, winedebug: str = "-all") -> Streams:
    proc = win.popen("-m", "dsrouter", "run", "-c", winpath(conf), winedebug=winedebug)
    d = Streams(proc)
    started.append(d)
    d.wait_for(lambda: any(x.startswith("Stop with") for x in d.out), "the start-up banner")
    return d


def drain_check(d: Streams | _LogWatcher, tcp_port: int, stop: Callable[[], None]) -> list[str]:
    """Keep sending on an open TCP connection, ``stop()`` the daemon, and go on sending 10
    events after it logged ``daemon_stopping``; every name sent."""
    sent: list[str] = []
    conn = socket.create_connection(("127.0.0.1", tcp_port), timeout=30)

    def push(n: int) -> None:
        for _ in range(n):
            tag = f"drain-{len(sent)}"
            conn.sendall(line(tag).encode() + b"\n")
            sent.append(f"Test {tag}")
            time.sleep(0.05)

    push(5)
    stop()
    deadline = time.monotonic() + 60
    while not d.logged("daemon_stopping"):
        assert time.monotonic() < deadline, f"no daemon_stopping: {d.tail()}"
        push(1)  # the drain reads an open connection while it is busy
    push(10)
    conn.close()
    return sent


@pytest.fixture(scope="module")
def eventlog_source(win):
    """A registered Event Log source for a ``windows_eventlog`` output (when the plugin is
    there), removed afterwards."""
    if not HAVE_EVENTLOG:
        yield None
        return
    name = f"dsrouter-daemon-test-{os.getpid()}"
    done = win.run("-m", "dsrouter", "eventlog", "install-source", "--source", name)
    assert done.returncode == 0, done.stderr
    yield name
    win.run("-m", "dsrouter", "eventlog", "remove-source", "--source", name)


def test_run_receives_udp_and_tcp_and_ctrl_c_drains(win, started, tmp_path, eventlog_source):
    conf = tmp_path / "dsrouter.conf"
    extra = f'output ev {{ type = "windows_eventlog", source = "{eventlog_source}" }}'
    ports = write_config(conf, extra=extra if eventlog_source else "")
    d = run_daemon(win, started, conf, winedebug=EVENTLOG_TRACE if eventlog_source else "-all")
    first = {
        "udp": [line(f"udp-{i}") for i in range(5)],
        "tcp": [line(f"tcp-{i}") for i in range(5)],
    }
    for proto, lines in first.items():
        send_linux(proto, ports[proto], lines, tmp_path)
    want = {f"Test {p}-{i}" for p in first for i in range(5)}
    wait_names(tmp_path / "data", want)

    # Ctrl-C: SIGINT to the wine process reaches Windows as CTRL_C_EVENT
    sent = drain_check(d, ports["tcp"], lambda: d.proc.send_signal(signal.SIGINT))
    assert d.finish() == 0, d.tail()
    archived = names(tmp_path / "data")
    assert sorted(archived) == sorted(want | set(sent)), "lost or duplicated events"
    (stopped,) = d.logged("daemon_stopped")
    assert all(n == 0 for n in stopped["queued"].values()), stopped["queued"]
    assert any(x.startswith("Stop with Ctrl+C or Ctrl+Break") for x in d.out)
    if eventlog_source:  # one ReportEventW per event (the source registered beforehand)
        assert len(REPORT_EVENT.findall("\n".join(d.err))) == len(archived)


def test_parser_processes_start_with_spawn_and_drain(win, started, tmp_path):
    """``workers = 1`` on Windows: the parser process is spawned (re-imports dsrouter, gets
    the pickled configuration); events flow through it, and Ctrl-C drains it."""
    conf = tmp_path / "dsrouter.conf"
    ports = write_config(conf, settings="workers = 1")
    d = run_daemon(win, started, conf)
    lines = [line(f"spawn-{i}") for i in range(20)]
    send_linux("tcp", ports["tcp"], lines, tmp_path)
    want = {f"Test spawn-{i}" for i in range(20)}
    wait_names(tmp_path / "data", want)
    sent = drain_check(d, ports["tcp"], lambda: d.proc.send_signal(signal.SIGINT))
    assert d.finish() == 0, d.tail()
    assert sorted(names(tmp_path / "data")) == sorted(want | set(sent))
    ids = {json.loads(x)["event_id"].split("-")[0] for x in _archived_lines(tmp_path / "data")}
    assert len(ids) == 1, "one parser process stamped every event"
    (started,) = d.logged("parser_process_started")  # it said so, with or without numba
    assert started["index"] == 0 and started["compiled"] in (True, False), started


def _archived_lines(data: Path) -> list[str]:
    return [x for p in sorted(data.glob("archive/*.jsonl")) for x in p.read_text().splitlines()]


def test_reload_queue_status_and_stop_over_the_control_channel(win, started, tmp_path):
    conf = tmp_path / "dsrouter.conf"
    ports = write_config(conf, path="a/{module}.jsonl")
    d = run_daemon(win, started, conf)
    data = tmp_path / "data"
    send_linux("udp", ports["udp"], [line("before")], tmp_path)
    wait_names(data, {"Test before"}, "a/*.jsonl")

    status = win.run("-m", "dsrouter", "queue", "status", "-c", winpath(conf))
    assert status.returncode == 0 and "daemon running" in status.stdout, status.stderr

    conf.write_text(conf.read_text().replace('"a/{module}.jsonl"', '"b/{module}.jsonl"'))
    reload = win.run("-m", "dsrouter", "reload", "-c", winpath(conf))
    assert reload.returncode == 0 and "reloaded" in reload.stdout, reload.stderr
    send_linux("tcp", ports["tcp"], [line("after")], tmp_path)
    wait_names(data, {"Test after"}, "b/*.jsonl")

    endpoint = json.loads((data / "control.json").read_text())
    assert _control(endpoint["port"], {"cmd": "stop"})["ok"] is False  # no token: refused
    assert d.proc.poll() is None
    sent = drain_check(
        d, ports["tcp"], lambda: _control(endpoint["port"], {"cmd": "stop", **endpoint})
    )
    assert d.finish() == 0, d.tail()
    assert set(sent) <= set(names(data, "b/*.jsonl"))
    assert not (data / "control.json").exists() and not (data / "dsrouter.pid").exists()
    again = win.run("-m", "dsrouter", "reload", "-c", winpath(conf))
    assert again.returncode == 3 and "no dsrouter daemon is running" in again.stderr


def _control(port: int, request: dict) -> dict:
    req = {k: v for k, v in request.items() if k in ("cmd", "token")}
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        return json.loads(s.makefile("rb").readline())


DRIVER = r"""
import argparse, asyncio, json, signal, sys, threading
from dsrouter import logs, runtime
from dsrouter.cli.common import load
from dsrouter.daemon import Daemon

def main(conf, how):
    logs.configure("info", json=True)
    config, plugins, source = load(argparse.Namespace(config=conf))
    daemon = Daemon(config, plugins, logs.get_logger(), source)
    result = {}

    def drive():
        sys.stdin.readline()  # the test is sending: stop now
        if how == "break":
            signal.raise_signal(signal.SIGBREAK)
        else:  # what Windows calls when the console window closes
            result["returned"] = bool(runtime._HANDLERS[-1](runtime.CTRL_CLOSE))
            result["drained_first"] = daemon.stopped.is_set()

    threading.Thread(target=drive, daemon=True).start()
    asyncio.run(daemon.run())
    for t in threading.enumerate():
        if t is not threading.main_thread() and t.daemon:
            t.join(30)
    print("RESULT " + json.dumps(result), flush=True)

# Windows starts parser processes by "spawn": each one imports this script again (as
# __mp_main__), so the daemon must only start under the guard, as in any such script.
if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("how", ["break", "close"], ids=["ctrl-break", "console-close"])
def test_ctrl_break_and_closing_the_console_drain(win, started, tmp_path, how):
    conf = tmp_path / "dsrouter.conf"
    ports = write_config(conf)
    script = tmp_path / "drive.py"
    script.write_text(DRIVER)
    proc = win.popen(winpath(script), winpath(conf), how)
    d = Streams(proc)
    started.append(d)
    d.wait_for(lambda: any(x.startswith("Stop with") for x in d.out), "the start-up banner")
    send_linux("udp", ports["udp"], [line(f"udp-{i}") for i in range(5)], tmp_path)

    def stop() -> None:
        proc.stdin.write(b"go\n")
        proc.stdin.flush()

    sent = drain_check(d, ports["tcp"], stop)
    assert d.finish() == 0, d.tail()
    want = {f"Test udp-{i}" for i in range(5)} | set(sent)
    assert sorted(names(tmp_path / "data")) == sorted(want)
    assert not d.logged("parser_process_died"), d.tail()  # the parsers ran as spawned
    (result,) = [json.loads(x[7:]) for x in d.out if x.startswith("RESULT ")]
    if how == "close":
        assert result == {"returned": True, "drained_first": True}
        assert d.logged("console_closing")


def test_service_install_refuses_an_interpreter_that_cannot_import_dsrouter(win, tmp_path):
    """The shared rig reaches dsrouter through a boot script only: the service's command
    (``python.exe -m dsrouter.service``) could not, so nothing is installed."""
    conf = tmp_path / "dsrouter.conf"
    write_config(conf)
    done = win.run("-m", "dsrouter", "service", "install", "-c", winpath(conf))
    assert done.returncode == 1
    assert "cannot import dsrouter on its own" in done.stderr, done.stderr


# ---- the Windows service, in a Wine prefix of its own --------------------------------------

KEEPER = (
    "import sys, win32service; win32service.OpenSCManager(None, None, 1); "
    "print('ready', flush=True); sys.stdin.read()"
)
READ_SERVICE = r"""
import json, winreg
def value(path, name):
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as k:
            return winreg.QueryValueEx(k, name)[0]
    except OSError:
        return None
base = "SYSTEM\\CurrentControlSet\\Services\\"
print(json.dumps({
    "image": value(base + "dsrouter", "ImagePath"),
    "start": value(base + "dsrouter", "Start"),
    "source": value(base + "EventLog\\Application\\dsrouter", "EventMessageFile"),
}))
"""


class ServiceRig:
    """A fresh Wine prefix, an interpreter with dsrouter in site-packages, and the keeper."""

    def __init__(self, root: Path, python: Path) -> None:
        self.root, self.python, self.prefix = root, python, root / "prefix"
        self.keeper: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.trace: list[str] = []

    def env(self, winedebug: str = "-all") -> dict[str, str]:
        return dict(
            os.environ,
            WINEPREFIX=str(self.prefix),
            WINEDEBUG=winedebug,
            WINEDLLOVERRIDES="mscoree,mshtml=",
            PYTHONUTF8="1",
        )

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["wine", str(self.python), "-X", "utf8", *args],
            capture_output=True,
            stdin=subprocess.PIPE,
            text=True,
            errors="replace",
            timeout=timeout,
            env=self.env(),
            check=False,
        )

    def service(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "dsrouter", "service", *args)

    def registry(self) -> dict:
        script = self.root / "read_service.py"
        script.write_text(READ_SERVICE)
        done = self.run(winpath(script))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def program_data(self) -> Path:
        return self.prefix / "drive_c" / "ProgramData" / "dsrouter"

    def event_log(self) -> list[str]:
        """What the service wrote to the event log (Wine's trace on the session's stderr)."""
        return [m.group(1) for x in self.trace if (m := TRACE_STRING.search(x))]

    def wait_event(self, prefix: str, timeout: float = 30.0) -> str:
        """The first event log string starting with ``prefix`` (the trace arrives apart)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.event_log() if e.startswith(prefix)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no {prefix!r} in {self.event_log()}"
            time.sleep(0.1)

    def open_session(self) -> None:
        """Start Wine's session (services.exe) from the keeper, so no later command's pipes
        are inherited by services.exe and the service."""
        self.keeper = subprocess.Popen(
            ["wine", str(self.python), "-c", KEEPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(EVENTLOG_TRACE),
        )
        ready: list[bytes] = []
        reader = threading.Thread(target=lambda: ready.append(self.keeper.stdout.readline()))
        reader.start()
        reader.join(180)
        assert ready and ready[0].startswith(b"ready"), "the Wine session did not start"
        self.reader = threading.Thread(target=self._read_trace, daemon=True)
        self.reader.start()

    def _read_trace(self) -> None:
        assert self.keeper is not None
        for raw in iter(self.keeper.stderr.readline, b""):
            self.trace.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def close(self) -> None:
        subprocess.run(["wineserver", "-k"], env=self.env(), timeout=60, check=False)
        if self.keeper is not None:
            self.keeper.stdin.close()
            self.keeper.wait(timeout=60)
            if self.reader is not None:
                self.reader.join(30)  # EOF once every Wine process of the prefix is gone
            self.keeper.stdout.close()
            self.keeper.stderr.close()


@pytest.fixture(scope="module")
def service_rig(wine_rig, tmp_path_factory):
    root = tmp_path_factory.mktemp("winservice")
    python = root / "cp312" / "python.exe"
    shutil.copytree(wine_rig.python.parent, python.parent, symlinks=True)
    stage_dsrouter(python.parent / "Lib" / "site-packages")  # as `pip install dsrouter` would
    rig = ServiceRig(root, python)
    boot = subprocess.run(
        ["wine", "wineboot", "-u"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=rig.env(),
        timeout=300,
        check=False,
    )
    assert boot.returncode == 0, "wineboot could not create the prefix"
    subprocess.run(["wineserver", "-w"], env=rig.env(), timeout=120, check=False)
    rig.open_session()
    yield rig
    rig.service("remove")
    rig.close()
    shutil.rmtree(root, ignore_errors=True)  # ~700 MB


def test_service_install_start_receive_stop_remove(service_rig, tmp_path):
    rig = service_rig
    conf = tmp_path / "dsrouter.conf"
    ports = write_config(conf)
    data = tmp_path / "data"

    done = rig.service("install", "-c", winpath(conf))
    assert done.returncode == 0 and "installed service" in done.stdout, done.stderr
    reg = rig.registry()
    assert reg["image"].startswith(f'"{winpath(rig.python)}"'), reg
    assert reg["image"].endswith(f"-m dsrouter.service -c {winpath(conf)}"), reg
    assert reg["start"] == 2 and reg["source"].lower().endswith("servicemanager.pyd"), reg

    done = rig.service("start")
    assert done.returncode == 0 and "is running" in done.stdout, done.stderr + done.stdout
    for proto in ("udp", "tcp"):
        send_linux(proto, ports[proto], [line(f"{proto}-{i}") for i in range(5)], tmp_path)
    wait_names(data, {f"Test {p}-{i}" for p in ("udp", "tcp") for i in range(5)})

    log = rig.program_data() / "dsrouter.log"
    stopper: list[subprocess.CompletedProcess] = []
    watcher = _LogWatcher(log)
    sent = drain_check(
        watcher,
        ports["tcp"],
        lambda: threading.Thread(target=lambda: stopper.append(rig.service("stop"))).start(),
    )
    deadline = time.monotonic() + 180
    while not stopper:
        assert time.monotonic() < deadline, "service stop did not return"
        time.sleep(0.1)
    assert stopper[0].returncode == 0 and "drained and stopped" in stopper[0].stdout
    assert set(sent) <= set(names(data)), "events sent during the stop were lost"
    (stopped,) = watcher.logged("daemon_stopped")
    assert all(n == 0 for n in stopped["queued"].values())
    assert winpath(conf).replace("\\", "\\\\") in rig.wait_event("dsrouter is running with")
    rig.wait_event("dsrouter has stopped")

    done = rig.service("remove")
    assert done.returncode == 0 and "removed service" in done.stdout, done.stderr
    assert rig.registry()["image"] is None
    done = rig.service("stop")
    assert done.returncode == 1 and "not installed" in done.stderr


def test_the_service_command_outside_the_service_manager_says_what_to_run(service_rig, tmp_path):
    done = service_rig.run("-m", "dsrouter.service", "-c", winpath(tmp_path / "x.conf"))
    assert done.returncode == 2
    assert "dsrouter service start" in done.stderr, done.stderr


def test_service_without_config_writes_the_default_and_a_failed_start_says_why(
    service_rig, tmp_path
):
    rig = service_rig
    done = rig.service("install")
    assert done.returncode == 0, done.stderr
    default = rig.program_data() / "dsrouter.conf"
    assert 'data_dir = "C:\\\\ProgramData\\\\dsrouter\\\\data"' in default.read_text()
    check = rig.run("-m", "dsrouter", "check", "-c", "C:\\ProgramData\\dsrouter\\dsrouter.conf")
    assert check.returncode == 0, check.stderr + check.stdout
    assert "updated service" in rig.service("install").stdout  # installing again updates

    conf = tmp_path / "dsrouter.conf"
    ports = write_config(conf)
    assert rig.service("install", "-c", winpath(conf)).returncode == 0
    with socket.socket() as taken:  # the TCP input's port is in use: start-up fails
        taken.bind(("127.0.0.1", ports["tcp"]))
        taken.listen()
        done = rig.service("start")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "stopped during start-up" in done.stderr and "cannot listen on" in done.stderr
    assert "cannot listen on" in rig.wait_event("dsrouter cannot start: ")
    assert rig.service("remove").returncode == 0
