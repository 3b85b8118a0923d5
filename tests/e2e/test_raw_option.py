"""``raw = false`` on an output, through the real daemon: that output's events leave ``raw``
out — parsed here or in parser processes, routed through a throttle (decided in the main
process) or not, on a memory or a disk queue — while the other outputs keep it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import wait_for_lines
from .test_workers import _children, _send

CEF = (
    "<134>Jan  1 00:00:00 web-01 CEF:0|Trend Micro|Deep Security Agent|20.0|20|Log|{sev}|"
    "cn1=1 cn1Label=Host ID dvchost=web-01 act=Deny seq={n}\n"
)


@pytest.mark.parametrize(("workers", "queue"), [(0, "memory"), (2, "disk"), (2, "memory")])
def test_raw_false_leaves_raw_out_of_that_output_only(start_daemon, tmp_path, workers, queue):
    config = f"""
settings {{ data_dir = "{tmp_path}/data" workers = {workers} }}
input t {{ type = "tcp", listen = "127.0.0.1:0" }}
output full {{ type = "file", path = "{tmp_path}/full.jsonl", queue = "disk" }}
output lean {{ type = "file", path = "{tmp_path}/lean.jsonl", raw = false, queue = "{queue}" }}
route loud {{
  when severity >= 8
  throttle 1000 per 1h
  to lean
}}
route everything {{ to full, lean }}
"""
    d = start_daemon(config)
    lines = [CEF.format(sev=8 if n % 10 == 0 else 5, n=n) for n in range(3000)]
    _send(d.ports["t"], lines)
    lean = wait_for_lines("lean.jsonl", 3000, tmp_path, timeout=60)
    full = wait_for_lines("full.jsonl", 2700, tmp_path, timeout=60)
    assert all("raw" not in ev for ev in lean)
    assert all(ev["raw"] == lines[int(ev["seq"])].rstrip("\n") for ev in full)
    by_seq = {int(ev["seq"]): ev for ev in full}
    assert sorted(int(ev["seq"]) for ev in lean) == list(range(3000))
    for ev in lean:
        n = int(ev["seq"])
        if ev["severity"] < 8:  # in both files: the same event but for raw
            assert {**ev, "raw": by_seq[n]["raw"]} == by_seq[n]
        else:
            assert n not in by_seq and ev["host"] == "web-01"
    rc, _ = d.stop()
    assert rc == 0


@pytest.mark.parametrize("command", ["check", "run"])
def test_raw_false_with_the_raw_format_is_refused(tmp_path, command):
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(
        f"""
settings {{ data_dir = "{tmp_path}/data" }}
output a {{ type = "file", path = "{tmp_path}/a.log", format = "raw", raw = false }}
route r {{ to a }}
"""
    )
    args = [sys.executable, "-m", "dsrouter", command, "-c", str(conf)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "E225" in done.stderr and 'format = "raw"' in done.stderr


def test_raw_false_holds_for_batches_the_main_process_parses_at_a_stop(start_daemon, tmp_path):
    # parser processes that never answer: at SIGTERM, once shutdown_timeout has passed, the
    # main process parses and routes their batches itself (PooledFlow.finish)
    config = f"""
settings {{ data_dir = "{tmp_path}/data" workers = 2 shutdown_timeout = 1s }}
input t {{ type = "tcp", listen = "127.0.0.1:0" }}
output lean {{ type = "file", path = "{tmp_path}/lean.jsonl", raw = false, queue = "disk" }}
route everything {{ to lean }}
"""
    d = start_daemon(config)
    parsers = _children(d.proc.pid)
    assert len(parsers) == 2
    for pid in parsers:
        os.kill(pid, signal.SIGSTOP)
    try:
        _send(d.ports["t"], [CEF.format(sev=5, n=n) for n in range(2000)])
        time.sleep(0.5)  # read by the main process, waiting for the stopped parsers
        rc, _ = d.stop()
    finally:
        for pid in parsers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert rc == 0
    lean = wait_for_lines("lean.jsonl", 2000, tmp_path, timeout=30)
    assert sorted(int(ev["seq"]) for ev in lean) == list(range(2000))
    assert not any("raw" in ev for ev in lean)
