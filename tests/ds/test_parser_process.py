"""A parser process (``parse_worker.serve``, forked as the daemon forks it) keeps reading and
parsing batches while its answers wait for the main process to read them, and answers each
batch whole and in order."""

from __future__ import annotations

import multiprocessing
import pickle
import socket
import sys
import threading
import time

import pytest

from dsrouter.dsl import load_config_text
from dsrouter.parse_worker import serve
from dsrouter.plugin import Plugins
from dsrouter.plugins.siem_transport import unacked

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SIOCOUTQ on a Unix socket is Linux's"
)
CONFIG = 'output all { type = "file", path = "all.jsonl" }\nroute all { to all }\n'
LINE = (
    "<134>Nov 27 23:18:32 web-{n} CEF:0|Trend Micro|Deep Security Agent|20.0|20|x|5|"
    "cn1={n} dvchost=web-{n} msg={pad}"
)


def test_a_parser_reads_on_while_its_answers_wait_to_be_read():
    config = load_config_text(CONFIG, "<test>", Plugins(entry_points=False).option_specs())
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe(duplex=True)
    sock = socket.socket(fileno=theirs.fileno())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # far below one answer
    sock.detach()
    proc = ctx.Process(target=serve, args=(theirs, config, False), daemon=True)
    proc.start()
    theirs.close()
    batches = 4
    messages = []
    for b in range(batches):  # each answer ~1.6 MB: none fits the parser's buffer
        lines = [LINE.format(n=b * 1000 + i, pad="p" * 600).encode() for i in range(1000)]
        messages.append(pickle.dumps((b, "2026-12-04T00:00:00+00:00", [("t", "p", lines, False)])))
    messages.append(pickle.dumps(None))
    sent = threading.Event()

    def send_all() -> None:  # on a thread: with a stalled parser these sends block
        try:
            for m in messages:
                ours.send_bytes(m)
            sent.set()
        except OSError:
            pass

    threading.Thread(target=send_all, daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while not (sent.is_set() and unacked(ours) == 0) and time.monotonic() < deadline:
            time.sleep(0.02)  # bounded: stops by itself
        assert sent.is_set() and unacked(ours) == 0, (
            "the parser stopped reading while its answer waited"
        )
        ready = pickle.loads(ours.recv_bytes())  # first: whether numba loaded
        answers = [pickle.loads(ours.recv_bytes()) for _ in range(batches)]
    finally:
        ours.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    assert ready[0] == "ready" and ready[1] in (True, False)
    assert [a.batch for a in answers] == list(range(batches))
    assert [a.events for a in answers] == [1000] * batches
    assert all(len(a.outputs["all"]) == 1000 for a in answers)
    assert b'"dvchost":"web-3999"' in answers[-1].outputs["all"][-1]
    assert proc.exitcode == 0
