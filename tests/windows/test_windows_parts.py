"""The Windows-only parts' logic, on this (Linux) interpreter: the TCP control channel Windows
uses, the service's default configuration and log file, the console-event table, and the clear
refusal of ``dsrouter service`` elsewhere. The Wine tests run them for real."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from dsrouter import runtime
from dsrouter.cli.main import main
from dsrouter.control import ControlServer, DaemonLock, NoDaemon, endpoint_path, request
from dsrouter.dsl import load_config_text
from dsrouter.plugin import Plugins
from dsrouter.service import LogFile, default_config_text, dsl_string, host_args


def test_tcp_control_channel_needs_the_token_and_leaves_no_endpoint(tmp_path):
    lock = DaemonLock(tmp_path)
    lock.acquire()  # as the daemon does: clients only talk to a data_dir whose lock is held
    seen: list[dict] = []

    async def handler(req: dict) -> dict:
        seen.append(req)
        return {"ok": True}

    async def scenario() -> dict:
        server = ControlServer(tmp_path, handler, transport="tcp")
        await server.start()
        endpoint = endpoint_path(tmp_path)
        info = json.loads(endpoint.read_bytes())
        assert stat.S_IMODE(os.stat(endpoint).st_mode) == 0o600
        loop = asyncio.get_running_loop()
        results = {
            "good": await loop.run_in_executor(None, request, tmp_path, {"cmd": "status"}),
            "bad": await loop.run_in_executor(
                None, _raw, info["port"], {"cmd": "x", "token": "no"}
            ),
            "none": await loop.run_in_executor(None, _raw, info["port"], {"cmd": "x"}),
        }
        server.close()
        results["left"] = endpoint.exists()
        return results

    try:
        results = asyncio.run(scenario())
    finally:
        lock.release()
    assert results["good"] == {"ok": True}
    assert seen == [{"cmd": "status"}], "the token reached the handler, or a refused one did"
    for refused in (results["bad"], results["none"]):
        assert refused["ok"] is False and "not authorized" in refused["error"]
    assert results["left"] is False


def _raw(port: int, req: dict) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        return json.loads(s.makefile("rb").readline())


def test_a_stale_endpoint_gets_no_token_when_no_daemon_holds_the_lock(tmp_path):
    """A crashed daemon's control.json may name a port another program has taken since."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        other.setblocking(False)
        port = other.getsockname()[1]
        endpoint_path(tmp_path).write_text(json.dumps({"port": port, "token": "secret"}))
        with pytest.raises(NoDaemon):
            request(tmp_path, {"cmd": "status"})
        with pytest.raises(BlockingIOError):
            other.accept()  # nobody connected


def test_service_commands_refuse_elsewhere_in_one_line(capsys):
    assert main(["service", "install"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Windows only" in err and sys.platform in err


def test_the_service_host_refuses_elsewhere():
    done = subprocess.run(
        [sys.executable, "-m", "dsrouter.service", "-c", "x.conf"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "Windows" in done.stderr


def test_the_default_service_config_is_valid_and_names_its_data_dir(tmp_path):
    where = "C:\\ProgramData\\dsrouter\\data"
    text = default_config_text(where)
    assert f"data_dir = {dsl_string(where)}" in text
    config = load_config_text(text, "svc.conf", Plugins().option_specs(), base_dir=tmp_path)
    assert str(config.settings["data_dir"]).endswith(where)  # relative on POSIX: joined
    assert [b.name for b in config.inputs] == ["udp_in", "tcp_in"]
    assert dsl_string('a"b\\c') == '"a\\"b\\\\c"'


def test_host_args_name_the_module_and_the_config(tmp_path):
    assert host_args(tmp_path / "d.conf") == [
        "-m",
        "dsrouter.service",
        "-c",
        str(tmp_path / "d.conf"),
    ]


def test_the_service_log_file_shifts_its_backups(tmp_path):
    log = LogFile(tmp_path / "dsrouter.log", max_bytes=100, backups=2)
    for n in range(7):
        log.write(f"{n}" * 60 + "\n")  # every second write crosses 100 bytes
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["dsrouter.log", "dsrouter.log.1", "dsrouter.log.2"]
    assert (tmp_path / "dsrouter.log").read_text() == "6" * 60 + "\n"
    assert (tmp_path / "dsrouter.log.1").read_text().startswith("4" * 60)
    assert not log.isatty()


@pytest.mark.parametrize(
    ("event", "service", "action"),
    [
        (runtime.CTRL_C, False, "signal"),
        (runtime.CTRL_BREAK, False, "signal"),
        (runtime.CTRL_CLOSE, False, "drain"),
        (runtime.CTRL_LOGOFF, False, "drain"),
        (runtime.CTRL_SHUTDOWN, False, "drain"),
        (runtime.CTRL_LOGOFF, True, "ignore"),
        (runtime.CTRL_SHUTDOWN, True, "ignore"),
    ],
    ids=["c", "break", "close", "logoff", "shutdown", "service-logoff", "service-shutdown"],
)
def test_console_events(event, service, action):
    assert runtime.console_action(event, service) == action


def test_no_console_handler_outside_windows():
    assert runtime.install_console_handler(lambda _: True) is False
