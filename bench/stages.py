"""Per-stage cost of one event, in CPU-µs, on the benchmark workload (one process, no sockets).

    python bench/stages.py [-n 100000] [--events 100000] [--rounds 3]

Each stage runs over the whole workload in batches of 500 (the parser processes' batch) and
is timed with ``time.process_time``; the table gives the median over the rounds with the
range. Stages, in the order an event meets them:

* framing: ``Framer.feed`` over 64 KiB chunks of the LF-framed workload (main process);
* parse: syslog envelope + CEF/LEEF + normalization (``parse_batch``; parser process), with
  the regex and the Python extension split and, where numba loads, with the compiled kernels
  the parser processes use (:mod:`dsrouter.ds.native`);
* route: ``RouteTable.decide`` with the benchmark's two routes (parser process);
* serialize: ``orjson.dumps`` once per event (parser process);
* hand-over: pickling a batch of messages to a parser and its answer back (both sides);
* queue (memory), queue (disk): publish + fetch + ack of the payloads (main process);
* write: joining a batch's payloads and one ``write`` to a file (main process).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib
import orjson
import structlog

from dsrouter.delivery.diskqueue import DiskQueue
from dsrouter.delivery.memqueue import MemoryQueue
from dsrouter.ds import batch as ds_batch
from dsrouter.ds import parse_batch
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.ingest.framing import Framer
from dsrouter.plugin import Plugins
from dsrouter.runtime import tune_runtime

BATCH = 500
AT = "2026-01-01T00:00:00.000000+00:00"


def stages(lines: list[bytes], scratch: Path) -> dict[str, Callable[[], None]]:
    """Each stage as a callable over the whole workload (its inputs prepared beforehand)."""
    batches = [lines[i : i + BATCH] for i in range(0, len(lines), BATCH)]
    stream = b"".join(line + b"\n" for line in lines)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    text = benchlib.config_text(scratch / "data", scratch / "all", scratch / "sev")
    config = load_config_text(text, "<bench>", Plugins(entry_points=False).option_specs())
    table = compile_routes(config)
    events = [parse_batch(b, "bench", "127.0.0.1", AT) for b in batches]
    payloads = [[orjson.dumps(e) for e in evs] for evs in events]
    items = [[("bench", "127.0.0.1", b, False)] for b in batches]
    mem = MemoryQueue("bench-mem")
    disk = DiskQueue("bench-disk", scratch / "queue")
    out = open(scratch / "out.jsonl", "wb")  # the scratch folder goes when the run ends

    def framing() -> None:
        framer = Framer(framing="auto")
        for chunk in chunks:
            framer.feed(chunk)

    kernel = ds_batch._kernel if ds_batch.use_native() else None

    def parse_with(k: ds_batch.Kernel | None) -> Callable[[], None]:
        def run() -> None:
            ds_batch._kernel = k
            try:
                for b in batches:
                    parse_batch(b, "bench", "127.0.0.1", AT)
            finally:
                ds_batch._kernel = None

        return run

    def route() -> None:
        decide = table.decide
        for evs in events:
            for ev in evs:
                decide(ev)

    def serialize() -> None:
        for evs in events:
            for ev in evs:
                orjson.dumps(ev)

    def hand_over() -> None:
        for its, pays in zip(items, payloads, strict=True):
            pickle.loads(pickle.dumps(its, 5))
            pickle.loads(pickle.dumps(pays, 5))

    def queue(q) -> Callable[[], None]:
        def run() -> None:
            for pays in payloads:
                q.publish(None, pays)
                q.ack(q.fetch(BATCH, 0))

        return run

    def write() -> None:
        for pays in payloads:
            out.write(b"\n".join(pays) + b"\n")
        out.truncate(0)
        out.seek(0)

    return {
        "framing": framing,
        "parse (envelope + CEF/LEEF + normalize), Python split": parse_with(None),
        **(
            {"parse, compiled kernels (envelope, extension cut)": parse_with(kernel)}
            if kernel
            else {}
        ),
        "route": route,
        "serialize (once)": serialize,
        "hand-over to a parser process and back": hand_over,
        "queue: memory (publish + fetch + ack)": queue(mem),
        "queue: disk (publish + fetch + ack)": queue(disk),
        "write (join + one write per batch)": write,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=benchlib.default_work())
    ap.add_argument("-n", type=int, default=100_000, help="events (gen_events.py, seed 1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=100_000, help="the first K events are timed")
    a = ap.parse_args()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    tune_runtime()
    data, meta = benchlib.ensure_events(a.work.resolve(), a.n)
    lines = benchlib.read_lines(data)[: a.events]
    scratch = Path(tempfile.mkdtemp(prefix="dsrouter-stages-"))
    try:
        runs = stages(lines, scratch)
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(a.rounds):
            for name, fn in runs.items():  # interleaved: load lands on every stage alike
                gc.collect()
                t0 = time.process_time()
                fn()
                samples[name].append((time.process_time() - t0) / len(lines) * 1e6)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"per-stage cost, N = {len(lines):,}, batches of {BATCH}, {a.rounds} rounds")
    print("| stage | CPU-µs per event, median (range) |")
    print("|---|---|")
    for name, xs in samples.items():
        print(f"| {name} | {statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f}) |")


if __name__ == "__main__":
    main()
