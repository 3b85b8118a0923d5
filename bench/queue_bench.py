"""Publish + fetch + ack throughput of the queue backends: memory, and disk per fsync policy.

    python bench/queue_bench.py [--dir /var/tmp] [--rounds 5] [--events 20000]

Each round opens a fresh queue (the disk ones in a new directory under ``--dir``: put it on the
file system you care about; a tmpfs makes fsync free) and runs, in one thread, ``publish`` of a
batch of ~700-byte JSON events (without payloads, so the disk queue serializes), ``fetch`` of
the same number and ``ack`` of what came back, until ``--events`` went through (fewer for
batches of 1, see ``--small``). The table shows events per second, the median of the rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from dsrouter.delivery.diskqueue import DiskQueue
from dsrouter.delivery.memqueue import MemoryQueue
from dsrouter.delivery.queue import Queue

BATCHES = (1, 100, 500)


def sample_event(i: int) -> dict:
    """About 700 bytes once serialized, shaped like a parsed Deep Security event."""
    return {
        "raw": "CEF:0|Trend Micro|Deep Security Agent|20.0.0|4000000|Eicar_test_file|6|cn1=1 "
        "cn1Label=Host ID dvchost=web-01.example.com cn2=205 cn2Label=Quarantine File Size "
        f"cs6=ContainerImageName fname=eicar.exe filePath=C:\\\\Users\\\\x\\\\eicar.exe seq={i} "
        "act=Quarantine result=Quarantined suser=EXAMPLE\\\\alice cs3=Real-time cs3Label=Scan "
        "Type cs4=Default Policy cs4Label=Policy msg=The file was quarantined by the agent",
        "module": "antimalware",
        "event_id": 4000000,
        "name": "Eicar_test_file",
        "severity": 6,
        "host": "web-01.example.com",
        "time": "2024-05-01T12:00:00.000Z",
        "fields": {"cn1": "1", "cn2": "205", "act": "Quarantine", "fname": "eicar.exe"},
        "tags": ["malware", "windows", "eicar"],
        "seq": i,
    }


def backends(root: Path) -> dict[str, Callable[[], Queue]]:
    def disk(fsync: float | str) -> Callable[[], Queue]:
        return lambda: DiskQueue("bench", tempfile.mkdtemp(dir=root), fsync=fsync)

    return {
        "memory": lambda: MemoryQueue("bench"),
        "disk fsync=never": disk("never"),
        "disk fsync=1.0s": disk(1.0),
        "disk fsync=always": disk("always"),
    }


def one_round(make: Callable[[], Queue], batch: int, total: int) -> float:
    events = [[sample_event(i * batch + j) for j in range(batch)] for i in range(total // batch)]
    q = make()
    try:
        start = time.perf_counter()
        for evs in events:
            q.publish(evs)
            got = q.fetch(batch, 0)
            q.ack(got)
        elapsed = time.perf_counter() - start
        assert q.stats().events == 0
    finally:
        q.close()
    return len(events) * batch / elapsed


def fs_type(path: Path) -> str:
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mnt, fstype, *_ = line.split()
                if str(path.resolve()).startswith(mnt) and len(mnt) > len(best):
                    best, kind = mnt, fstype
    except OSError:
        pass
    return kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where disk queues go")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=20000, help="events per round, batches >1")
    ap.add_argument("--small", type=int, default=2000, help="events per round, batches of 1")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dsrouter-queue-bench-", dir=a.dir))
    size = len(orjson.dumps(sample_event(0)))
    print(
        f"{os.cpu_count()} CPUs; disk queues in {root} ({fs_type(root)}); event ~{size} B; "
        f"events/s, median of {a.rounds} rounds"
    )
    print(f"{'backend':<20}" + "".join(f"{f'batch={b}':>14}" for b in BATCHES))
    for name, make in backends(root).items():
        cells = []
        for batch in BATCHES:
            total = a.small if batch == 1 else a.events
            if batch == 1 and name.endswith("always"):
                total = min(total, 500)  # one fsync per event
            rates = [one_round(make, batch, total) for _ in range(a.rounds)]
            cells.append(f"{statistics.median(rates):>14,.0f}")
        print(f"{name:<20}" + "".join(cells), flush=True)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
