"""The same workload end to end through the real daemon over TCP on 127.0.0.1.

    python bench/tcp.py [--work bench-work] [-n 100000] [--reps 1] [--conns 1] [--framing auto]

Starts ``python -m dsrouter run -c WORK/out/dsrouter-tcp/dsrouter.conf`` (a tcp input on a free
port, the routing of ``benchlib.CONFIG_TEMPLATE``), streams ``WORK/data/events.log`` with the
shared harness's C sender ``WORK/build/blast`` (built from ``../shared/bench/tools/blast.c`` when
missing and gcc exists; otherwise a Python ``socket.sendfile`` sender), waits until every line is
in ``all.jsonl`` and the severity >= 6 ones in ``sev.jsonl``, then SIGTERMs the daemon.

``DS_PREFIX="taskset -c 0"`` runs the daemon under that command (e.g. pinned to one core).

Measured like the shared harness: events/s = N / (mtime of the last output write − time the
first byte was sent); receiver CPU seconds (user + sys) and peak RSS (VmHWM) from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import benchlib

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def blast_path(work: Path) -> Path | None:
    """WORK/build/blast, compiled from the shared sources when it is missing."""
    exe = work / "build" / "blast"
    src = benchlib.SHARED / "tools" / "blast.c"
    if not exe.exists() and src.exists():
        exe.parent.mkdir(parents=True, exist_ok=True)
        cc = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src)], check=False)
        if cc.returncode != 0:
            return None
    return exe if exe.exists() else None


def send(blast: Path | None, port: int, data: Path, conns: int) -> dict:
    """Stream the file; returns ``{"t_first_ns", "t_last_ns", "sender"}``."""
    if blast is not None:
        cmd = [str(blast), "tcp", HOST, str(port), str(data), "-t", "300"]
        if conns > 1:
            cmd += ["-c", str(conns)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=330, check=True)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        return {"t_first_ns": out["t_first_ns"], "t_last_ns": out["t_last_ns"], "sender": "blast"}
    with socket.create_connection((HOST, port), timeout=30) as s, open(data, "rb") as fh:
        t0 = time.time_ns()
        s.sendfile(fh)
        t1 = time.time_ns()
    return {"t_first_ns": t0, "t_last_ns": t1, "sender": "python sendfile"}


def wait_for(paths: dict[Path, int], proc: subprocess.Popen, limit: float) -> dict[str, int]:
    """Poll until each file holds its expected line count, the daemon dies, or ``limit`` s."""
    deadline = time.monotonic() + limit
    counts: dict[str, int] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        counts = {p.name: benchlib.count_lines(p) for p in paths}
        if all(counts[p.name] >= want for p, want in paths.items()):
            break
        time.sleep(0.05)
    return counts


def cpu_split(main: int, before: dict, after: dict) -> dict[str, float]:
    """CPU seconds spent in the run: the main process's and the parser processes' (summed),
    each as user and system time."""
    out = dict.fromkeys(("main_user", "main_sys", "parsers_user", "parsers_sys"), 0.0)
    for pid, (user, system) in after.items():
        u0, s0 = before.get(pid, (0.0, 0.0))
        who = "main" if pid == main else "parsers"
        out[f"{who}_user"] += user - u0
        out[f"{who}_sys"] += system - s0
    return {k: round(v, 2) for k, v in out.items()}


def run_once(a: argparse.Namespace, data: Path, meta: dict, blast: Path | None) -> dict:
    rundir = benchlib.fresh_dir(a.work / "out" / "dsrouter-tcp")
    port = free_port()
    all_path, sev_path = rundir / "all.jsonl", rundir / "sev.jsonl"
    conf = rundir / "dsrouter.conf"
    text = benchlib.config_text(
        rundir / "data", all_path, sev_path, port, a.framing, a.queue, a.workers
    )
    conf.write_text(text)
    log = open(rundir / "daemon.log", "wb")
    prof = ["-m", "cProfile", "-o", str(rundir / "daemon.prof")] if a.profile else []
    proc = subprocess.Popen(
        [
            *os.environ.get("DS_PREFIX", "").split(),
            sys.executable,
            *prof,
            "-m",
            "dsrouter",
            "--log-json",
            "run",
            "-c",
            str(conf),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=rundir,
        start_new_session=True,
    )
    try:
        t = time.monotonic()
        while not benchlib.tcp_listening(port):
            if proc.poll() is not None or time.monotonic() - t > 30:
                raise SystemExit(f"daemon did not listen on {port}; see {rundir / 'daemon.log'}")
            time.sleep(0.05)
        time.sleep(0.3)
        each0, m0 = benchlib.proc_cpu_each(proc.pid), benchlib.machine_cpu()
        sent = send(blast, port, data, a.conns)
        want = {all_path: meta["n"], sev_path: meta["severity_ge_6"]}
        counts = wait_for(want, proc, a.max_wait)
        split = cpu_split(proc.pid, each0, benchlib.proc_cpu_each(proc.pid))
        cpu = sum(split.values())
        busy = benchlib.busy_pct(m0, benchlib.machine_cpu())
        rss = benchlib.proc_hwm_mb(proc.pid)
        t_end = max(p.stat().st_mtime_ns for p in want if p.exists())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(5)
        log.close()
    elapsed = (t_end - sent["t_first_ns"]) / 1e9
    benchlib.discard_outputs(all_path, sev_path)
    ok = counts.get("all.jsonl") == meta["n"] and counts.get("sev.jsonl") == meta["severity_ge_6"]
    return {
        "n": meta["n"],
        "conns": a.conns,
        "framing": a.framing,
        "queue": a.queue,
        "sender": sent["sender"],
        "elapsed_s": round(elapsed, 3),
        "eps": round(counts.get("all.jsonl", 0) / elapsed),
        "send_s": round((sent["t_last_ns"] - sent["t_first_ns"]) / 1e9, 3),
        "cpu_s": round(cpu, 2),
        "cpu_split_s": split,
        "rss_mb": round(rss, 1),
        "machine_busy_pct": busy,
        "lines": counts,
        "sev_expected": meta["severity_ge_6"],
        "counts_ok": ok,
        "exit_code": rc,
    }


def print_profile(path: Path, top: int = 25) -> None:
    """The daemon's top functions by cumulative and by own time."""
    stats = pstats.Stats(str(path)).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=benchlib.default_work())
    ap.add_argument("-n", type=int, default=100_000, help="events (gen_events.py, seed 1)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--conns", type=int, default=1, help="sender TCP connections (blast -c)")
    ap.add_argument("--framing", default="auto", help="the tcp input's framing option")
    ap.add_argument(
        "--queue",
        default="memory",
        choices=list(benchlib.QUEUES),
        help="the outputs' queue: memory, disk (fsync every 1 s) or disk-always",
    )
    ap.add_argument("--workers", type=int, default=None, help="settings.workers (default: auto)")
    ap.add_argument("--max-wait", type=float, default=300, help="bound on one run, seconds")
    ap.add_argument("--python-sender", action="store_true", help="do not use blast")
    ap.add_argument("--profile", action="store_true", help="run the daemon under cProfile")
    a = ap.parse_args()
    a.work = a.work.resolve()  # output paths in the generated config must be absolute
    data, meta = benchlib.ensure_events(a.work, a.n)
    blast = None if a.python_sender else blast_path(a.work)
    if a.conns > 1 and blast is None:
        raise SystemExit("--conns needs blast (gcc + ../shared/bench/tools/blast.c)")
    runs = [run_once(a, data, meta, blast) for _ in range(a.reps)]
    runs.sort(key=lambda r: r["eps"])
    med = runs[len(runs) // 2]
    print(
        f"dsrouter over TCP, N = {meta['n']:,}, {a.conns} connection(s), framing {a.framing}, "
        f"sender {med['sender']}, median of {a.reps}"
    )
    print(
        "| events/s (end to end) | elapsed s | receiver CPU s | peak RSS MB | machine busy % "
        "| all / sev lines |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {med['eps']:,} | {med['elapsed_s']:.2f} | {med['cpu_s']:.2f} | {med['rss_mb']:.1f} "
        f"| {med['machine_busy_pct']} "
        f"| {med['lines'].get('all.jsonl', 0):,} / {med['lines'].get('sev.jsonl', 0):,} "
        f"(want {meta['n']:,} / {meta['severity_ge_6']:,}) |"
    )
    name = "dsrouter-tcp" + (f"-c{a.conns}" if a.conns > 1 else "")
    name += "" if a.queue == "memory" else f"-{a.queue}"
    if a.profile:
        print_profile(a.work / "out" / "dsrouter-tcp" / "daemon.prof")
        return  # cProfile slows the daemon: keep those figures out of results/
    benchlib.save_result(a.work, name, {"median": med, "runs": runs})
    if not med["counts_ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())
