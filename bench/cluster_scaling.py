"""End-to-end throughput of 1 and 2 receiving routers on JetStream, beside the local disk queue.

    N=200000 ROUNDS=3 python bench/cluster_scaling.py

Each row streams the shared workload (``benchlib.ensure_events``, seed 1) over 4 TCP
connections in all with the shared harness's C sender (``blast``): with one receiving router
all 4 go to it, with two the file is cut in halves and each router gets 2 connections. The
routing is ``benchlib.CONFIG_TEMPLATE`` (every event to ``all``, severity >= 6 also to
``sev``). Measured like ``bench/tcp.py``: events/s = N / (mtime of the last output line -
the first byte sent), once every delivery process's files together hold every line.

Rows (``BACKENDS``, default ``disk,js1,js3``; ``ROUTERS``, default ``1,2``):

* ``disk``: R independent routers (``--role all``, no cluster), each with its disk queue
  (``fsync = "interval"``) and its own outputs: the local baseline;
* ``js1`` / ``js3``: ``cluster_servers`` on a throwaway nats-server (``jetstream_rig``), one
  node or a 3-node R3 cluster; R ``--role receive`` routers and ``DELIVER`` (default R)
  ``--role deliver`` workers on one stream, deleted after every round.

Every process runs ``settings { workers = WORKERS }`` (default 0: parsing on each router's
event loop, to keep the process count low on a small machine), and shares the machine with
the sender and the nats-servers. Environment: ``N`` (events, default 200,000), ``ROUNDS``
(default 3), ``WORKERS``, ``DELIVER``, ``BACKENDS``, ``ROUTERS``, ``MAX_WAIT`` (s per round,
default 600), ``BENCH_WORK`` (default ``./bench-work``). Prints a markdown table (median
over the rounds, with the range) and writes ``WORK/results/cluster-scaling.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib
import jetstream_rig
import nats
import tcp

HOST = "127.0.0.1"
CONNECTIONS = 4
STREAM = "bench_scaling"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass
class Setup:
    backend: str  # disk, js1, js3
    routers: int
    deliver: int  # delivery processes (0 for disk: each router delivers its own)
    workers: int


class Proc:
    """One ``python -m dsrouter --log-json run -c DIR/dsrouter.conf [--role ROLE]``."""

    def __init__(self, rundir: Path, name: str, config: str, role: str | None) -> None:
        self.dir = benchlib.fresh_dir(rundir / name)
        self.all, self.sev = self.dir / "all.jsonl", self.dir / "sev.jsonl"
        conf = self.dir / "dsrouter.conf"
        conf.write_text(config)
        self.out = self.dir / "stdout.txt"
        argv = [sys.executable, "-m", "dsrouter", "--log-json", "run", "-c", str(conf)]
        argv += ["--role", role] if role else []
        with open(self.out, "wb") as out, open(self.dir / "daemon.log", "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.dir, stdout=out, stderr=log, stdin=subprocess.DEVNULL
            )

    def wait_ready(self, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while "Stop with" not in self.out.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "daemon.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"{self.dir.name} did not start: {log}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def config(data_dir: Path, port: int | None, setup: Setup, urls: list[str], replicas: int) -> str:
    """``benchlib.CONFIG_TEMPLATE`` with the cluster settings, or a disk queue without."""
    settings = f"\n  workers = {setup.workers}"
    queue = benchlib.QUEUES["disk"]
    if urls:
        servers = ", ".join(f'"{u}"' for u in urls)
        settings += (
            f'\n  cluster_servers = [{servers}]\n  cluster_stream = "{STREAM}"'
            f"\n  cluster_replicas = {replicas}"
        )
        queue = ""  # the stream is every output's queue
    inputs = ""
    if port is not None:
        inputs = benchlib.TCP_INPUT.format(port=port, framing="auto")
    return benchlib.CONFIG_TEMPLATE.format(
        data_dir=data_dir,
        workers=settings,
        inputs=inputs,
        all_path=data_dir.parent / "all.jsonl",
        sev_path=data_dir.parent / "sev.jsonl",
        queue=queue,
    )


def split(data: Path, parts: int, rundir: Path) -> list[Path]:
    """The workload cut into ``parts`` files of whole lines (the first ones a line longer)."""
    if parts == 1:
        return [data]
    lines = data.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    out = []
    for k in range(parts):
        path = rundir / f"part{k}.log"
        path.write_bytes(b"".join(lines[k * size : (k + 1) * size]))
        out.append(path)
    return out


async def _delete_stream(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for name in (STREAM, f"{STREAM}_dlq"):
            try:
                await js.delete_stream(name)
            except nats.js.errors.NotFoundError:
                pass
    finally:
        await nc.close()


async def _wait_stream(url: str, replicas: int, limit: float = 30.0) -> None:
    """Until the stream and both consumers exist, with their leaders (the delivery processes
    create them at start): their creation is not part of the measurement."""
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    deadline = time.monotonic() + limit
    try:
        js = nc.jetstream()
        while True:
            try:
                info = await js.stream_info(STREAM)
                ready = replicas == 1 or bool(info.cluster and info.cluster.leader)
                for name in ("all", "sev"):
                    c = await js.consumer_info(STREAM, name)
                    ready = ready and (replicas == 1 or bool(c.cluster and c.cluster.leader))
                if ready:
                    return
            except (nats.js.errors.NotFoundError, nats.errors.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"stream {STREAM} and its consumers not ready in {limit}s")
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


def run_once(setup: Setup, work: Path, data: Path, meta: dict, blast: Path, urls: list[str]):
    rundir = benchlib.fresh_dir(work / "out" / "cluster-scaling")
    replicas = 3 if setup.backend == "js3" else 1
    ports = [tcp.free_port() for _ in range(setup.routers)]
    role = "receive" if urls else None
    procs = [
        Proc(rundir, f"r{k}", config(rundir / f"r{k}" / "data", p, setup, urls, replicas), role)
        for k, p in enumerate(ports)
    ]
    procs += [
        Proc(
            rundir,
            f"d{k}",
            config(rundir / f"d{k}" / "data", None, setup, urls, replicas),
            "deliver",
        )
        for k in range(setup.deliver)
    ]
    delivering = procs if not urls else procs[setup.routers :]
    parts = split(data, setup.routers, rundir)
    try:
        for p in procs:
            p.wait_ready()
        if urls:
            asyncio.run(_wait_stream(urls[0], replicas))
        time.sleep(0.5)
        m0 = benchlib.machine_cpu()
        senders = [
            subprocess.Popen(
                [str(blast), "tcp", HOST, str(port), str(part), "-t", "300"]
                + ["-c", str(CONNECTIONS // setup.routers)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for port, part in zip(ports, parts, strict=True)
        ]
        sent = [json.loads(s.communicate(timeout=330)[0].strip().splitlines()[-1]) for s in senders]
        t_first = min(s["t_first_ns"] for s in sent)
        want_all, want_sev = meta["n"], meta["severity_ge_6"]
        deadline = time.monotonic() + env_int("MAX_WAIT", 600)
        while True:
            n_all = sum(benchlib.count_lines(p.all) for p in delivering)
            n_sev = sum(benchlib.count_lines(p.sev) for p in delivering)
            if n_all >= want_all and n_sev >= want_sev:
                break
            if time.monotonic() > deadline or any(p.proc.poll() is not None for p in procs):
                break
            time.sleep(0.05)
        busy = benchlib.busy_pct(m0, benchlib.machine_cpu())
        files = [f for p in delivering for f in (p.all, p.sev) if f.exists()]
        t_end = max(f.stat().st_mtime_ns for f in files) if files else time.time_ns()
    finally:
        codes = [p.stop() for p in procs]
        if urls:
            asyncio.run(_delete_stream(urls[0]))
    benchlib.discard_outputs(*(f for p in delivering for f in (p.all, p.sev)))
    elapsed = (t_end - t_first) / 1e9
    return {
        "elapsed_s": round(elapsed, 3),
        "eps": round(n_all / elapsed),
        "lines": {"all": n_all, "sev": n_sev},
        "counts_ok": n_all == want_all and n_sev == want_sev,
        "machine_busy_pct": busy,
        "exit_codes": codes,
    }


def main() -> None:
    n, rounds = env_int("N", 200_000), env_int("ROUNDS", 3)
    workers = env_int("WORKERS", 0)
    backends = (os.environ.get("BACKENDS") or "disk,js1,js3").split(",")
    router_counts = [int(x) for x in (os.environ.get("ROUTERS") or "1,2").split(",")]
    work = benchlib.default_work()
    data, meta = benchlib.ensure_events(work, n)
    blast = tcp.blast_path(work)
    if blast is None:
        raise SystemExit("needs blast (gcc + ../shared/bench/tools/blast.c)")
    rows = []
    for backend in backends:
        size = {"disk": 0, "js1": 1, "js3": 3}[backend]
        with jetstream_rig.servers(size) if size else contextlib.nullcontext([]) as urls:
            for r in router_counts:
                deliver = 0 if not size else env_int("DELIVER", r)
                setup = Setup(backend, r, deliver, workers)
                runs = []
                for i in range(rounds):
                    res = run_once(setup, work, data, meta, blast, urls)
                    print(
                        f"  {backend} routers={r} deliver={deliver} round {i + 1}: {res}",
                        flush=True,
                    )
                    runs.append(res)
                rows.append({"setup": setup.__dict__, "runs": runs})
    print_table(rows, meta["n"], workers)
    benchlib.save_result(work, "cluster-scaling", {"n": meta["n"], "rows": rows})
    if not all(r["counts_ok"] for row in rows for r in row["runs"]):
        raise SystemExit("some rounds did not deliver every line (see above)")


NAMES = {"disk": "local disk queue", "js1": "JetStream, 1 node", "js3": "JetStream, R3 cluster"}


def print_table(rows: list[dict], n: int, workers: int) -> None:
    print(
        f"\nN = {n:,} events over {CONNECTIONS} TCP connections, workers = {workers}, "
        f"median of {len(rows[0]['runs']) if rows else 0} rounds (range), first byte to last line"
    )
    print("| queue | receivers | delivery processes | events/s | range | machine busy % | ok |")
    print("| --- | ---: | ---: | ---: | --- | ---: | --- |")
    for row in rows:
        s, runs = row["setup"], row["runs"]
        eps = [r["eps"] for r in runs]
        deliver = "(the routers)" if s["backend"] == "disk" else str(s["deliver"])
        busy = statistics.median(r["machine_busy_pct"] for r in runs)
        ok = "yes" if all(r["counts_ok"] for r in runs) else "NO"
        print(
            f"| {NAMES[s['backend']]} | {s['routers']} | {deliver} | {statistics.median(eps):,.0f} "
            f"| {min(eps):,} – {max(eps):,} | {busy:.0f} | {ok} |"
        )


if __name__ == "__main__":
    sys.exit(main())
