"""Publish + fetch + ack throughput of JetStreamQueue (R1, R3) beside the local queues.

    python bench/jetstream_queue.py [--events 20000] [--batch 500] [--rounds 3]

One process, one thread, the shape of ``bench/queue_bench.py``: ``publish`` a batch of
~700-byte events (with their payloads, as the engine hands a durable queue), ``fetch`` the
same number, ``ack`` them, until ``--events`` went through; events per second, median of the
rounds. The JetStream rows run against throwaway nats-servers on loopback (one node; a
3-node cluster), sharing this machine's cores with the benchmark itself.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from jetstream_rig import servers

from dsrouter.delivery.diskqueue import DiskQueue
from dsrouter.delivery.jetstream import JetStreamQueue
from dsrouter.delivery.jetstream_conn import ClusterOptions, JetStreamClient
from dsrouter.delivery.memqueue import MemoryQueue
from dsrouter.delivery.queue import Queue

RAW = "<134>Jan  1 00:00:00 dsm CEF:0|Trend Micro|Deep Security Agent|20.0|4000000|Eicar|6|" + (
    "cn1=1 cs1=x " * 40
)


def batch(first: int, n: int) -> list[dict]:
    return [
        {"raw": RAW, "host": "dsm", "severity": 6, "event_id": f"18c0ffee{first:x}-{i:x}"}
        for i in range(n)
    ]


def run(q: Queue, events: int, size: int) -> float:
    """Events per second through ``q``."""
    t = time.perf_counter()
    for first in range(0, events, size):
        evs = batch(first, size)
        q.publish(evs, [orjson.dumps(e) for e in evs])
        got: list = []
        while len(got) < size:
            got += q.fetch(size - len(got), 1.0)
        q.ack(got)
    return events / (time.perf_counter() - t)


def jetstream(urls: list[str], replicas: int, n: int) -> Callable[[], Queue]:
    def make() -> Queue:
        opts = ClusterOptions(tuple(urls), stream=f"bench{replicas}x{n}", replicas=replicas)
        client = JetStreamClient(opts).start()
        assert client.wait_connected(10)
        return JetStreamQueue("out", client)

    return make


def median_rate(make: Callable[[], Queue], args: argparse.Namespace) -> float:
    rates = []
    for _ in range(args.rounds):
        q = make()
        try:
            rates.append(run(q, args.events, args.batch))
        finally:
            q.close()
            if isinstance(q, JetStreamQueue):
                q.client.call(q.client.api(f"STREAM.DELETE.{q.stream}"), 10)
                q.client.close()
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dsrouter-bench-q-"))
    counter = iter(range(1 << 30))
    rows = [
        ("memory", median_rate(lambda: MemoryQueue("out"), args)),
        (
            "disk (fsync interval)",
            median_rate(lambda: DiskQueue("out", tmp / str(next(counter))), args),
        ),
    ]
    for size in (1, 3):
        with servers(size) as urls:
            rows.append(
                (f"jetstream R{size}", median_rate(jetstream(urls, size, args.batch), args))
            )
    print(f"{args.events} events of {len(orjson.dumps(batch(0, 1)[0]))} bytes, batch {args.batch}")
    for name, rate in rows:
        print(f"{name:<24}{rate:>12,.0f} events/s")


if __name__ == "__main__":
    main()
