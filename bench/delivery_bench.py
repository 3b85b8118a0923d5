"""The cost of the durable queue, and memory under overload, through the real daemon.

    python bench/delivery_bench.py [--work bench-work] [-n 1000000] [--rounds 3] [--conns 1]
    python bench/delivery_bench.py --overload [--seconds 30]

Throughput: the ``bench/tcp.py`` run (the shared harness's DS workload, one TCP connection, every
event to ``all.jsonl``, severity >= 6 also to ``sev.jsonl``) with both outputs on a memory
queue, a disk queue (fsync every second) and a disk queue with ``fsync = "always"``, the modes
interleaved per round; medians with their range, and the disk / memory ratio per round.

Overload: a ``webhook`` output to a local HTTP server that takes one batch of 500 events every
0.15 s (about 3,300 events/s), fed by the C sender as fast as TCP lets it (about 10× that),
``when_full = "block"``, for ``--seconds``: the daemon's peak RSS (VmHWM), how many events it
took in, and whether the sender was held back (TCP flow control) instead of the daemon
buffering without bound.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import benchlib
import tcp

MODES = ("memory", "disk", "disk-always")


def throughput(a: argparse.Namespace) -> None:
    data, meta = benchlib.ensure_events(a.work, a.n)
    blast = tcp.blast_path(a.work)
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(a.rounds):
        for mode in MODES:
            args = argparse.Namespace(**{**vars(a), "queue": mode, "framing": "auto"})
            run = tcp.run_once(args, data, meta, blast)
            runs[mode].append(run)
            print(
                f"round {r + 1} {mode}: {run['eps']:,} ev/s, RSS {run['rss_mb']} MB, "
                f"counts ok {run['counts_ok']}",
                flush=True,
            )
    _report(runs, meta, a)


def _report(runs: dict[str, list[dict]], meta: dict, a: argparse.Namespace) -> None:
    print(f"\nN = {meta['n']:,}, {a.conns} connection(s), {a.rounds} interleaved rounds\n")
    print("| queue | events/s median (range) | receiver CPU s | peak RSS MB | counts ok |")
    print("|---|---|---|---|---|")
    for mode, rs in runs.items():
        eps = sorted(r["eps"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        rss = max(r["rss_mb"] for r in rs)
        ok = all(r["counts_ok"] for r in rs)
        print(
            f"| {mode} | {statistics.median(eps):,.0f} ({eps[0]:,}–{eps[-1]:,}) | {cpu:.1f} "
            f"| {rss:.0f} | {ok} |"
        )
    for mode in MODES[1:]:
        ratios = sorted(
            m["eps"] / d["eps"] for m, d in zip(runs["memory"], runs[mode], strict=True)
        )
        print(
            f"memory / {mode} per round: median {statistics.median(ratios):.2f}× "
            f"({ratios[0]:.2f}–{ratios[-1]:.2f})"
        )
    benchlib.save_result(a.work, "dsrouter-delivery", {"n": meta["n"], "runs": runs})


class SlowSink(BaseHTTPRequestHandler):
    """Takes a batch, waits, answers 200: an output about 10× slower than the input."""

    delay = 0.15
    events = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay)
        SlowSink.events += body.count(b'"event_id"')
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def overload(a: argparse.Namespace) -> None:
    data, meta = benchlib.ensure_events(a.work, a.n)
    blast = tcp.blast_path(a.work)
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowSink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rundir = benchlib.fresh_dir(a.work / "out" / "dsrouter-overload")
    port = tcp.free_port()
    conf = rundir / "dsrouter.conf"
    conf.write_text(
        f'settings {{ data_dir = "{rundir / "data"}", metrics = "127.0.0.1:0" }}\n'
        f'input tcp_in {{ type = "tcp", listen = "127.0.0.1:{port}" }}\n'
        f'output hook {{ type = "webhook", url = "http://127.0.0.1:{server.server_address[1]}/",'
        f' queue = "{a.queue}", queue_max_events = 100000, when_full = "block",'
        " max_in_flight = 1 }\n"
        "route all { to hook }\n"
    )
    log = open(rundir / "daemon.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsrouter", "--log-json", "run", "-c", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=rundir,
    )
    try:
        while not benchlib.tcp_listening(port):
            time.sleep(0.05)
        sender = subprocess.Popen(
            [str(blast), "tcp", "127.0.0.1", str(port), str(data), "-t", str(int(a.seconds) + 60)],
            stdout=subprocess.PIPE,
        )
        peak, samples = 0.0, []
        t0 = time.monotonic()
        while time.monotonic() - t0 < a.seconds:
            time.sleep(1)
            rss = benchlib.proc_hwm_mb(proc.pid)
            peak = max(peak, rss)
            samples.append(round(rss, 1))
        taken = SlowSink.events
        sender.kill()
        sender.wait()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        server.shutdown()
    out = {
        "seconds": a.seconds,
        "queue": a.queue,
        "peak_rss_mb": round(peak, 1),
        "rss_by_second": samples,
        "delivered": taken,
        "output_rate": round(taken / a.seconds),
    }
    print(json.dumps(out))
    benchlib.save_result(a.work, f"dsrouter-overload-{a.queue}", out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=benchlib.default_work())
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--max-wait", type=float, default=600)
    ap.add_argument("--overload", action="store_true")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--queue", default="memory", choices=["memory", "disk"])
    a = ap.parse_args()
    a.work = a.work.resolve()
    a.profile = False
    (overload if a.overload else throughput)(a)


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
