"""The control channel's ``stop`` request: the drain of Ctrl-C / SIGTERM without a signal
(how Windows scripts stop a console daemon), and the TCP channel Windows uses, on Linux."""

from __future__ import annotations

import socket
import time

from dsrouter.control import request

from .conftest import wait_for_lines

CONF = """\
settings { data_dir = "./data", shutdown_timeout = 10s }
input tcp_in { type = "tcp", listen = "127.0.0.1:0" }
output archive { type = "file", path = "archive.jsonl" }
route all { to archive }
"""


def _line(n: int) -> bytes:
    return (
        f"<134>Jan  1 00:00:00 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0|4000000|"
        f"Test {n}|6|act=blocked\n"
    ).encode()


def test_stop_request_drains_an_open_connection_and_exits_0(start_daemon, tmp_path):
    d = start_daemon(CONF)
    with socket.create_connection(("127.0.0.1", d.ports["tcp_in"]), timeout=10) as conn:
        for n in range(5):
            conn.sendall(_line(n))
        wait_for_lines("data/archive.jsonl", 5, tmp_path)
        # the connection is active when the stop comes (the wait above may be longer than the
        # drain's idle grace while the parser processes start)
        conn.sendall(_line(5))
        answer = request(tmp_path / "data", {"cmd": "stop"})
        assert answer["ok"] is True and answer["pid"] == d.proc.pid
        # the daemon now drains: it still reads the open connection while it is busy
        for n in range(6, 25):
            conn.sendall(_line(n))
            time.sleep(0.02)
    rc, err = d.proc.wait(timeout=30), d.proc.stderr.read().decode()
    assert rc == 0, err
    assert '"daemon_stopping"' in err and '"daemon_stopped"' in err
    names = {e["name"] for e in wait_for_lines("data/archive.jsonl", 25, tmp_path)}
    assert names == {f"Test {n}" for n in range(25)}


def test_control_socket_is_for_the_daemons_user_only(start_daemon, tmp_path):
    import os
    import stat

    d = start_daemon(CONF)
    mode = stat.S_IMODE(os.stat(tmp_path / "data" / "control.sock").st_mode)
    assert mode & 0o077 == 0, oct(mode)
    assert d.stop()[0] == 0
