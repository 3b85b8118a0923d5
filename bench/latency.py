"""End-to-end latency through the real daemon: from send to the line in the file.

    python bench/latency.py [--rate 10000] [--seconds 30] [--workers N] [--queue disk]

Starts the daemon with the benchmark's routing (``benchlib.CONFIG_TEMPLATE``, one TCP input),
sends the workload's lines at a paced ``--rate`` (events/s, in 5 ms ticks, one connection)
with a sequence number appended to each, and tails ``all.jsonl`` every millisecond: an
event's latency is the time its line was first seen minus the time it was sent. Prints p50,
p90, p99 and max in milliseconds, and how many events arrived. Pick ``--rate`` at about half
the maximum ``bench/tcp.py`` measured on the machine. The sender and the tailer share one
Python process (and the machine's cores) with the daemon: the figures include that.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import benchlib
from tcp import HOST, free_port

SEQ = re.compile(rb'seq=(\d+)"')


def tail(path: Path, seen: dict[int, float], stop: threading.Event) -> None:
    """Record when each sequence number's line first appears in ``path``."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.001)
    with open(path, "rb") as fh:
        rest = b""
        while not stop.is_set():
            chunk = fh.read()
            if not chunk:
                time.sleep(0.001)
                continue
            now = time.monotonic()
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                m = SEQ.search(line)
                if m:
                    seen.setdefault(int(m.group(1)), now)


def pace(port: int, lines: list[bytes], rate: int, seconds: float) -> dict[int, float]:
    """Send ``rate`` events/s for ``seconds``; the send time of each sequence number."""
    sent: dict[int, float] = {}
    per_tick, tick = max(rate // 200, 1), 0.005
    with socket.create_connection((HOST, port)) as s:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            batch = []
            for _ in range(per_tick):
                line = lines[n % len(lines)]
                batch.append(line + b" seq=%d\n" % n)
                n += 1
            s.sendall(b"".join(batch))
            now = time.monotonic()
            for k in range(n - per_tick, n):
                sent[k] = now
            delay = start + (n / per_tick) * tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    return sent


def percentile(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=benchlib.default_work())
    ap.add_argument("-n", type=int, default=100_000, help="workload events (gen_events.py)")
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--queue", default="disk", choices=list(benchlib.QUEUES))
    a = ap.parse_args()
    work = a.work.resolve()
    data, _ = benchlib.ensure_events(work, a.n)
    lines = [ln for ln in benchlib.read_lines(data) if b"CEF:" in ln]
    rundir = benchlib.fresh_dir(work / "out" / "dsrouter-latency")
    port, all_path = free_port(), rundir / "all.jsonl"
    conf = rundir / "dsrouter.conf"
    conf.write_text(
        benchlib.config_text(
            rundir / "data", all_path, rundir / "sev.jsonl", port, "lf", a.queue, a.workers
        )
    )
    log = open(rundir / "daemon.log", "wb")  # closed in the finally below
    cmd = [sys.executable, "-m", "dsrouter", "--log-json", "run", "-c", str(conf)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=rundir)
    seen: dict[int, float] = {}
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 30
        while not benchlib.tcp_listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        tailer = threading.Thread(target=tail, args=(all_path, seen, stop), daemon=True)
        tailer.start()
        sent = pace(port, lines, a.rate, a.seconds)
        end = time.monotonic() + 20
        while len(seen) < len(sent) and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    lat = sorted((seen[k] - t) * 1000 for k, t in sent.items() if k in seen)
    print(
        f"latency, rate {a.rate:,}/s for {a.seconds:g} s, queue {a.queue}, workers "
        f"{'default' if a.workers is None else a.workers}: "
        f"{len(lat):,} of {len(sent):,} events seen"
    )
    if lat:
        print("| p50 ms | p90 ms | p99 ms | max ms |")
        print("|---|---|---|---|")
        ps = [percentile(lat, q) for q in (0.5, 0.9, 0.99)] + [lat[-1]]
        print("| " + " | ".join(f"{p:.1f}" for p in ps) + " |")


if __name__ == "__main__":
    main()
