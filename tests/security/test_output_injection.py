"""Event values cannot escape their place in any output, through the real daemon: no path
outside the archive, no extra syslog message or CEF field at the SIEM, no broken JSON or
re-expanded template at the webhook. The values come from the sender."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from pathlib import Path

from dsrouter.ds import parse_message

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from conftest import Daemon, wait_for_lines
from httpsink import HttpSink

HOSTILE_HOST = "../../etc/cron.d/x\r\nX-Injected: 1"
HOSTILE_MSG = "a\n<13>Nov 27 00:00:00 h forged: b|c\\=d cs1=evil {host} {{raw}}"


def hostile_line(n: int) -> bytes:
    host = HOSTILE_HOST.replace("\r", "").replace("\n", " ")
    # CEF-escaped by the sender, so that the parsed msg is HOSTILE_MSG exactly
    msg = HOSTILE_MSG.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n")
    ext = f"dvchost={host} msg={msg} seq={n}"
    return f"<134>Nov 27 23:18:32 dsm CEF:0|Trend Micro|Deep Security Agent|20|1000552|XSS|8|{ext}".encode()


class LineServer(threading.Thread):
    """A TCP server that records every LF-terminated line it receives."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.start()

    def run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    while chunk := conn.recv(65536):
                        self.data += chunk

    def lines(self) -> list[bytes]:
        return [x for x in self.data.split(b"\n") if x]


def test_hostile_values_stay_in_their_place(tmp_path):
    raw_siem, cef_siem, hook = LineServer(), LineServer(), HttpSink()
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(
        'settings { data_dir = "data" }\n'
        'input tcp_in { type = "tcp", listen = "127.0.0.1:0" }\n'
        'output archive { type = "file", path = "archive/{host}/{module}.jsonl" }\n'
        f'output raw_siem {{ type = "siem", endpoint = "tcp://127.0.0.1:{raw_siem.port}", framing = "lf", queue = "memory" }}\n'
        f'output cef_siem {{ type = "siem", endpoint = "tcp://127.0.0.1:{cef_siem.port}", format = "cef", framing = "lf", queue = "memory" }}\n'
        f'output hook {{ type = "webhook", url = "{hook.url}", queue = "memory", '
        + 'template = "{{\\"text\\": \\"{host} says {msg}\\"}}" }\n'
        "route all { to archive, raw_siem, cef_siem, hook }\n"
    )
    d = Daemon(["run", "-c", str(conf)], tmp_path)
    try:
        # octet counting lets a raw LF inside the message reach the router
        frames = [hostile_line(n) for n in range(3)]
        frames.append(
            b"<134>Nov 27 23:18:32 dsm CEF:0|Trend Micro|Deep Security Agent|20|1|x|3|msg=raw\nline<13>forged"
        )
        with socket.create_connection(("127.0.0.1", d.ports["tcp_in"]), timeout=10) as s:
            s.sendall(b"".join(b"%d %s" % (len(f), f) for f in frames))
        events = wait_for_lines("data/archive/**/*.jsonl", 4, tmp_path)
        bodies = hook.wait_events(4)
        written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
        assert all(p.resolve().is_relative_to((tmp_path / "data").resolve()) for p in written)
        assert not (tmp_path / "etc").exists()
        for p in (tmp_path / "data" / "archive").iterdir():
            assert not p.name.startswith((".", "-")) and "\n" not in p.name
        assert {e["msg"] for e in events[:3]} == {HOSTILE_MSG}

        code, err = d.stop()
        assert code == 0, err
        assert len(raw_siem.lines()) == 4  # one line per event, the raw LF escaped
        assert all(line.startswith(b"<134>") for line in raw_siem.lines())
        cef = [parse_message(x.decode()) for x in cef_siem.lines()]
        assert len(cef) == 4
        assert [e["msg"] for e in cef[:3]] == [HOSTILE_MSG] * 3
        assert {e.get("cs1") for e in cef[:3]} == {None}  # no field smuggled in
        texts = [b["text"] for b in bodies]
        assert all(t.endswith(f"says {HOSTILE_MSG}") for t in texts[:3])  # not re-expanded
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.communicate(timeout=10)
        hook.close()
