"""One abusive peer and one well-behaved peer against the real daemon: does the good one suffer?

    python bench/flood.py [--seconds 20] [--conns 2000] [--blasters 2] [--work DIR] [--json]

Starts ``python -m dsrouter run`` with a ``tcp`` input on 127.0.0.1 (default limits) and two
``file`` outputs: events from 127.0.0.1 go to ``good.jsonl``, all others to ``rest.jsonl``.
For ``--seconds``:

* the abusive client (a separate process, from 127.0.0.2) opens ``--conns`` connections that
  each send half a message and stall (re-opening those the daemon closes), streams sample
  events at full speed on ``--blasters`` connections, and sends junk (random bytes, NULs,
  invalid UTF-8, bogus octet counts, 1 MB lines) on one more;
* the well-behaved client (127.0.0.1) sends 50 events/s on one connection, each carrying its
  sequence number and send time; a tailer notes when each line appears in ``good.jsonl``.

Then the abuser stops, the good client's last events get up to 15 s to land, and the bench
prints the good client's loss (sent - archived) and latency (send to archive file: p50, p99,
max), the abuser's send and archive rates and connection counts, and the daemon's refusal and
drop counters from /metrics. Bounded in time and to loopback; not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import benchlib

from dsrouter.samples import BODIES

GOOD, BAD = "127.0.0.1", "127.0.0.2"
RATE = 50  # good events per second
CONFIG = """\
settings {{ data_dir = "{data}", metrics = "127.0.0.1:0" }}
input tcp_in {{ type = "tcp", listen = "127.0.0.1:{port}" }}
output good {{ type = "file", path = "good.jsonl" }}
output rest {{ type = "file", path = "rest.jsonl" }}
route good {{ when peer startswith "127.0.0.1:" to good }}
route rest {{ to rest }}
"""
_METRIC = re.compile(r"^(dsrouter_\w+)(\{[^}]*\})? (\S+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((GOOD, 0))
        return s.getsockname()[1]


def sample(n: int, extra: str = "") -> bytes:
    """The ``n``-th sample body behind an RFC 3164 header, as DS sends it."""
    bodies = list(BODIES.values())
    stamp = time.strftime("%b %e %H:%M:%S")
    return f"<134>{stamp} dsm01.example.com {bodies[n % len(bodies)]}{extra}\n".encode()


# ---- the daemon -----------------------------------------------------------------------------


class Daemon:
    """``dsrouter run`` in ``work``; ``metrics`` is its /metrics address."""

    def __init__(self, work: Path, port: int) -> None:
        (work / "dsrouter.conf").write_text(CONFIG.format(data=work / "data", port=port))
        self.out = work / "daemon.out"
        with self.out.open("wb") as out, (work / "daemon.log").open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dsrouter", "run", "-c", "dsrouter.conf"],
                cwd=work,
                stdout=out,
                stderr=err,
            )
        self.metrics = self._banner()

    def _banner(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = self.out.read_text()
            if "Stop with" in text:
                return re.search(r"metrics\s+http://([^/\s]+)", text).group(1)  # type: ignore[union-attr]
            time.sleep(0.05)
        raise SystemExit(f"the daemon did not start; see {self.out.parent / 'daemon.log'}")

    def counters(self) -> dict[str, float]:
        """The input and output counters from /metrics, summed over labels but ``reason``."""
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = _METRIC.match(line)
            if m and re.search("input|received|unparsed|delivered|dropped", m.group(1)):
                reason = re.search(r'reason="([^"]*)"', m.group(2) or "")
                key = m.group(1) + (f"{{{reason.group(1)}}}" if reason else "")
                out[key] = out.get(key, 0.0) + float(m.group(3))
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# ---- the abusive client (its own process) ---------------------------------------------------


def _connect(port: int, timeout: float = 2.0) -> socket.socket:
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((BAD, 0))
    s.connect((GOOD, port))
    return s


def _stallers(port: int, conns: int, stop, stats: dict) -> None:
    """Hold ``conns`` connections, each with half a message sent; re-open the closed ones.
    Starts half a second late, so the blasters and the junk hold their connections first."""
    held: list[socket.socket] = []
    stop.wait(0.5)
    while not stop.is_set():
        alive = []
        for s in held:
            try:
                if s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                    s.close()  # closed by the daemon (evicted, timed out)
                    stats["closed_by_daemon"] += 1
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                stats["closed_by_daemon"] += 1
                continue
            alive.append(s)
        held = alive
        for _ in range(min(50, conns - len(held))):  # in batches: closures are seen early
            if stop.is_set():
                break
            try:
                s = _connect(port)
                s.sendall(b"<134>Dec  2 07:35:20 slow CEF:0|Trend Micro|Deep Secu")
                s.setblocking(False)  # else recv() below first waits out the timeout
                held.append(s)
                stats["opened"] += 1
            except OSError:
                stats["connect_failed"] += 1
                break
        stop.wait(0.05)
    for s in held:
        s.close()


def _blaster(port: int, stop, stats: dict) -> None:
    """Sample events as fast as the daemon takes them, in 256 KiB writes."""
    block = b"".join(sample(i) for i in range(400))
    per_block = block.count(b"\n")
    while not stop.is_set():
        try:
            with _connect(port, timeout=1.0) as s:
                while not stop.is_set():
                    try:
                        s.sendall(block)
                    except TimeoutError:
                        continue  # the daemon is not reading: try again (what was sent counts)
                    stats["messages"] += per_block
                    stats["bytes"] += len(block)
        except OSError:
            stats["blaster_errors"] += 1
            stop.wait(0.05)


def _junk(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 4096))
    if kind == 1:
        return b"\x00" * rng.randrange(1, 2048) + b"\xff\xfe\xc0\xaf\xed\xa0\x80\n"
    if kind == 2:
        return b"999999999 <13>" + b"never arrives\n<13>resync\n"
    if kind == 3:
        return b"A" * (1 << 20) + b"\n"  # over max_message
    if kind == 4:
        return b"5000 <13>a\n" + b"[x " * 2000 + b"\n"
    return sample(rng.randrange(9), " msg=" + "\\" * 3000)


def _junker(port: int, stop, stats: dict) -> None:
    rng = random.Random(7)
    while not stop.is_set():
        try:
            with _connect(port, timeout=1.0) as s:
                while not stop.is_set():
                    data = _junk(rng)
                    s.sendall(data)
                    stats["junk_bytes"] += len(data)
        except OSError:
            stats["junk_reconnects"] += 1
            stop.wait(0.05)


def abuser(port: int, conns: int, blasters: int, stop, results) -> None:
    """The abusive client: stallers, blasters and junk in threads; puts its counts on exit."""
    keys = "opened closed_by_daemon connect_failed messages bytes blaster_errors junk_bytes"
    stats = dict.fromkeys((*keys.split(), "junk_reconnects"), 0)
    jobs: list[tuple[Callable[..., None], tuple]] = [(_blaster, (port,))] * blasters
    jobs += [(_junker, (port,)), (_stallers, (port, conns))]
    threads = [threading.Thread(target=f, args=(*a, stop, stats), daemon=True) for f, a in jobs]
    start = time.monotonic()
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(10)
    results.put(dict(stats, seconds=time.monotonic() - start))


# ---- the well-behaved client and the archive tailer -----------------------------------------


def good_client(port: int, seconds: float, sent: dict[int, float]) -> int:
    """50 events/s from 127.0.0.1 for ``seconds``; returns how often it had to reconnect."""
    reconnects, s, n = 0, None, 0
    start = time.monotonic()
    while (due := start + n / RATE) < start + seconds:
        time.sleep(max(0.0, due - time.monotonic()))
        line = sample(n, f" floodSeq={n}")
        for _ in range(3):
            try:
                if s is None:
                    s = socket.create_connection((GOOD, port), timeout=5)
                s.sendall(line)
                sent[n] = time.time()
                break
            except OSError as exc:
                reconnects += 1
                print(f"good client: {exc!r}; reconnecting", file=sys.stderr)
                s = None
        n += 1
    if s is not None:
        s.close()
    return reconnects


def tail(path: Path, seen: dict[int, float], stop: threading.Event) -> None:
    """Note when each good event's line appears in the archive (polled every 2 ms)."""
    pos, buf = 0, b""
    while not stop.is_set():
        if path.exists() and path.stat().st_size > pos:
            with path.open("rb") as fh:
                fh.seek(pos)
                data = fh.read()
            now = time.time()
            pos += len(data)
            *lines, buf = (buf + data).split(b"\n")
            for line in lines:
                seq = json.loads(line).get("floodSeq")
                if seq is not None:
                    seen.setdefault(int(seq), now)
        stop.wait(0.002)


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    n = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return n


# ---- the run --------------------------------------------------------------------------------


def run(a: argparse.Namespace, work: Path) -> dict:
    port = free_port()
    daemon = Daemon(work, port)
    good_path = work / "data" / "good.jsonl"
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    stop_tail = threading.Event()
    tailer = threading.Thread(target=tail, args=(good_path, seen, stop_tail), daemon=True)
    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    bad = ctx.Process(target=abuser, args=(port, a.conns, a.blasters, stop, results))
    try:
        tailer.start()
        bad.start()
        time.sleep(1.0)  # the flood is on before the good client starts
        cpu0, wall0 = benchlib.proc_cpu_s(daemon.proc.pid), time.monotonic()
        reconnects = good_client(port, a.seconds, sent)
        cpu = (benchlib.proc_cpu_s(daemon.proc.pid) - cpu0) / (time.monotonic() - wall0)
        stop.set()
        abuse = results.get(timeout=30)
        bad.join(10)
        deadline = time.monotonic() + 15
        while len(seen) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        counters = daemon.counters()
        counters["daemon_cpu_cores"] = cpu
    finally:
        stop.set()
        stop_tail.set()
        daemon.stop()
        if bad.is_alive():
            bad.kill()
    return summary(a, sent, seen, abuse, counters, reconnects, work)


def summary(a, sent, seen, abuse, counters, reconnects, work) -> dict:
    lat = sorted((seen[n] - t) * 1000 for n, t in sent.items() if n in seen)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    secs = abuse["seconds"]
    return {
        "seconds": a.seconds,
        "good": {
            "sent": len(sent),
            "archived": len(seen.keys() & sent.keys()),
            "lost": len(sent.keys() - seen.keys()),
            "reconnects": reconnects,
            "latency_ms": {"p50": q[49], "p99": q[98], "max": lat[-1] if lat else None},
        },
        "abuser": {
            "sent_events_per_s": abuse["messages"] / secs,
            "received_events_per_s": (counters.get("dsrouter_events_received_total", 0) - len(seen))
            / secs,
            "sent_mb_per_s": abuse["bytes"] / secs / 1e6,
            "archived_events_per_s": count_lines(work / "data" / "rest.jsonl") / secs,
            "junk_mb": abuse["junk_bytes"] / 1e6,
            **{k: abuse[k] for k in ("opened", "closed_by_daemon", "connect_failed")},
            **{k: abuse[k] for k in ("blaster_errors", "junk_reconnects")},
        },
        "daemon": counters,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--conns", type=int, default=2000, help="stalled connections to hold")
    p.add_argument("--blasters", type=int, default=2, help="full-speed connections")
    p.add_argument("--work", type=Path, help="keep the run here (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args()
    if a.work:
        a.work.mkdir(parents=True, exist_ok=True)
        result = run(a, a.work)
    else:
        with tempfile.TemporaryDirectory(prefix="dsrouter-flood-") as tmp:
            result = run(a, Path(tmp))
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print_result(result)


def print_result(r: dict) -> None:
    g, b, lat = r["good"], r["abuser"], r["good"]["latency_ms"]
    print(f"flood for {r['seconds']:.0f} s on {os.cpu_count()} cores")
    print(f"  good client (127.0.0.1, {RATE}/s): sent {g['sent']}, archived {g['archived']},")
    print(f"    lost {g['lost']}, reconnects {g['reconnects']}")
    print(f"    latency send -> archive file: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms,")
    print(f"    max {lat['max'] or float('nan'):.1f} ms")
    print(f"  abuser (127.0.0.2): sent {b['sent_events_per_s']:.0f} events/s")
    print(
        f"    ({b['sent_mb_per_s']:.1f} MB/s); the daemon read {b['received_events_per_s']:.0f}/s,"
    )
    print(f"    archived {b['archived_events_per_s']:.0f}/s;")
    print(f"    junk {b['junk_mb']:.1f} MB; connections opened {b['opened']},")
    print(f"    closed by the daemon {b['closed_by_daemon']}, refused {b['connect_failed']}")
    for k, v in sorted(r["daemon"].items()):
        if v:
            print(f"  {k} {v:.2f}" if k == "daemon_cpu_cores" else f"  {k} {v:.0f}")


if __name__ == "__main__":
    main()
