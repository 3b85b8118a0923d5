"""Parse cost per event of dsrouter.ds.parse_batch (full normalization), optionally + orjson.

    python3 ../shared/bench/gen_events.py -n 100000 -o /tmp/dsrouter-bench/events.log
    python3 bench/parse_bench.py /tmp/dsrouter-bench/events.log [--batch 512] [--json]

Reads the lines once, then times parse_batch over batches of raw bytes (as a receiver hands
them over) and prints the best of three runs in CPU microseconds per event (CPU time, so that other
processes on a shared machine disturb the figure less).
"""

from __future__ import annotations

import argparse
import gc
import time

import orjson

from dsrouter.ds import parse_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="file of syslog lines, e.g. from gen_events.py (keep it in /tmp)")
    ap.add_argument("--batch", type=int, default=512, help="messages per parse_batch call")
    ap.add_argument("--json", action="store_true", help="also orjson.dumps every event")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gc", action="store_true", help="leave the cycle collector on")
    a = ap.parse_args()
    with open(a.path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    batches = [lines[i : i + a.batch] for i in range(0, len(lines), a.batch)]
    if not a.gc:
        gc.disable()  # events are acyclic: the daemon can run its hot loop without the collector
    best = float("inf")
    for _ in range(a.runs):
        t = time.process_time()
        for batch in batches:
            events = parse_batch(batch, "bench", "127.0.0.1", "2025-11-27T23:18:32Z")
            if a.json:
                for ev in events:
                    orjson.dumps(ev)
        best = min(best, time.process_time() - t)
    slow = sum(1 for ev in parse_batch(lines[:20000], "b", "p", "r") if "parse_error" in ev)
    what = "parse_batch + orjson.dumps" if a.json else "parse_batch"
    print(
        f"{len(lines)} events, {what}: {best / len(lines) * 1e6:.2f} us/event "
        f"({len(lines) / best:,.0f} events/s on one core); parse errors in first 20k: {slow}"
    )


if __name__ == "__main__":
    main()
