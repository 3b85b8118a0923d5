"""What a throttle decision costs when its budget lives in a JetStream key-value bucket.

    python bench/jetstream_kv.py [--events 3000] [--keys 100] [--rounds 3]

``throttle 1 per 5m by host, signature_id`` shared by every router would keep one KV entry
per key (``window start, count``) and decide each event with a read and, when it admits, a
compare-and-set write (``update(last=revision)``; a lost race reads again). Throttled events
cost one round trip (the read), admitted ones two. This script runs that decision for
``--events`` events over ``--keys`` keys (so most are throttled, as with a real storm) on a
throwaway nats-server on loopback — one node (R1) and a 3-node cluster (R3) — serially (one
decision at a time, the latency an event would wait) and 100 at a time (a receive batch
decided concurrently), and compares with the in-process :class:`Throttle` of
``dsrouter.dsl.throttle``. Prints microseconds per decision, median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time

import nats
from jetstream_rig import servers
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dsrouter.dsl.throttle import Throttle

WINDOW = 300.0
BUDGET = 1


def workload(n: int, keys: int) -> list[dict]:
    return [{"host": f"h{i % keys}", "signature_id": 1000 + i % 7} for i in range(n)]


def kv_key(event: dict) -> str:
    text = f"route.critical|{event['host']}|{event['signature_id']}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


async def admit(kv: KeyValue, key: str) -> bool:
    """One fixed-window decision against the shared budget (see the module docstring)."""
    while True:
        now = time.time()
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            try:
                await kv.create(key, b"%f,1" % now)
                return True
            except KeyWrongLastSequenceError:
                continue  # another router created it first: read again
        start, count = (entry.value or b"0,0").split(b",")
        if now - float(start) >= WINDOW:
            value = b"%f,1" % now
        elif int(count) >= BUDGET:
            return False
        else:
            value = b"%s,%d" % (start, int(count) + 1)
        try:
            await kv.update(key, value, last=entry.revision)
            return True
        except KeyWrongLastSequenceError:
            continue


async def run_kv(url: list[str], replicas: int, events: list[dict], concurrency: int) -> float:
    """Microseconds per decision for ``events`` (a fresh bucket)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    bucket = f"throttle{replicas}{concurrency}"
    kv = await js.create_key_value(bucket=bucket, history=1, ttl=WINDOW, replicas=replicas)
    keys = [kv_key(e) for e in events]
    t = time.perf_counter()
    if concurrency == 1:
        for k in keys:
            await admit(kv, k)
    else:
        for i in range(0, len(keys), concurrency):
            await asyncio.gather(*(admit(kv, k) for k in keys[i : i + concurrency]))
    took = time.perf_counter() - t
    await js.delete_key_value(bucket)
    await nc.close()
    return took / len(events) * 1e6


def run_local(events: list[dict]) -> float:
    th = Throttle(
        BUDGET, WINDOW, [lambda e: e["host"], lambda e: e["signature_id"]], time.monotonic
    )
    t = time.perf_counter()
    for e in events:
        th.admit(e)
    return (time.perf_counter() - t) / len(events) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    events = workload(args.events, args.keys)
    rows = [("in-process Throttle", "-", statistics.median(run_local(events) for _ in range(5)))]
    for size in (1, 3):
        with servers(size) as urls:
            for conc in (1, 100):
                runs = [asyncio.run(run_kv(urls, size, events, conc)) for _ in range(args.rounds)]
                rows.append((f"KV bucket R{size}", str(conc), statistics.median(runs)))
    keys = len({kv_key(e) for e in events})
    print(f"{args.events} events over {keys} keys, throttle {BUDGET} per {WINDOW:g}s")
    print(f"{'budget state':<22}{'in flight':>10}{'us/event':>12}{'events/s':>12}")
    for name, conc, us in rows:
        print(f"{name:<22}{conc:>10}{us:>12.1f}{1e6 / us:>12,.0f}")


if __name__ == "__main__":
    main()
