"""dsrouter's real pipeline in one process: parse, parse + route, parse + route + file output.

    python bench/inprocess.py [--work bench-work] [-n 100000] [--batch 1000] [--reps 3]
    python bench/inprocess.py --profile            # cProfile of one full pass, top functions

The workload is the shared harness's DS mix (gen_events.py, seed 1) in ``WORK/data/events.log``.
Lines are read and split once, outside the timing (a TCP receiver's framing does that split).
Each pass then feeds batches of ``--batch`` messages through exactly what ``router/pipeline.py``
does per flush: ``parse_batch`` → ``RouteTable.decide`` → the delivery engine's memory queues →
the ``file`` output's worker thread writing JSON lines (a pass ends when every queue is
drained), with the routing of ``benchlib.CONFIG_TEMPLATE`` (all events to ``all.jsonl``,
severity >= 6 also to ``sev.jsonl`` through a ``continue`` route). The garbage collector stays
on, as in the daemon. Stages are interleaved over ``--reps``
rounds; the figure per stage is the median (min–max shown).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import benchlib
import structlog

from dsrouter.delivery.engine import Engine
from dsrouter.ds import parse_batch
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.pipeline import Pipeline as DaemonPipeline
from dsrouter.plugin import Plugins
from dsrouter.runtime import tune_runtime


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Pipeline:
    """The daemon's flush path, built from a generated config like ``Daemon._build_outputs``."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = benchlib.fresh_dir(outdir)
        self.all_path, self.sev_path = outdir / "all.jsonl", outdir / "sev.jsonl"
        plugins = Plugins(entry_points=False)  # built-ins only
        text = benchlib.config_text(outdir / "data", self.all_path, self.sev_path)
        self.config = load_config_text(text, "<bench>", plugins.option_specs(), base_dir=outdir)
        table = compile_routes(self.config)
        self.decide = table.decide
        log = structlog.get_logger()
        self.engine = Engine(outdir / "data", outdir, plugins.outputs, log)
        self.engine.open(self.config.outputs)
        self.flow = DaemonPipeline(self.engine, table, outdir / "data", log)

    def parse(self, batches: list[list[bytes]]) -> None:
        for batch in batches:
            parse_batch(batch, "bench", "127.0.0.1", _stamp())

    def parse_route(self, batches: list[list[bytes]]) -> None:
        decide = self.decide
        for batch in batches:
            for ev in parse_batch(batch, "bench", "127.0.0.1", _stamp()):
                decide(ev)

    def parse_route_output(self, batches: list[list[bytes]]) -> None:
        flow = self.flow
        for batch in batches:
            flow.pending.append(("bench", "127.0.0.1", batch, False))
            flow.flush()
            while flow.engine.holding:
                time.sleep(0.001)
                flow.tick()
        for lane in self.engine.lanes.values():  # the pass ends when the outputs are done
            while lane.queue.stats().events:
                time.sleep(0.001)

    def truncate(self) -> None:
        """Empty the output files between passes (the fds stay open in append mode)."""
        for path in (self.all_path, self.sev_path):
            if path.exists():
                path.write_bytes(b"")

    def close(self) -> dict:
        snap = self.engine.snapshot()
        self.engine.close(time.monotonic() + 10)
        return {
            "output_dead_lettered_total": {n: o["dead_lettered_total"] for n, o in snap.items()}
        }


def _once(fn: Callable[[], None], before: Callable[[], None]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and machine busy % of one call."""
    before()
    m0, c0, t0 = benchlib.machine_cpu(), time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, benchlib.busy_pct(m0, benchlib.machine_cpu())


def _summary(label: str, samples: list[tuple[float, float, float]], n: int) -> dict:
    wall = statistics.median(s[0] for s in samples)
    return {
        "stage": label,
        "wall_s": round(wall, 3),
        "cpu_s": round(statistics.median(s[1] for s in samples), 3),
        "eps": round(n / wall),
        "eps_min": round(n / max(s[0] for s in samples)),
        "eps_max": round(n / min(s[0] for s in samples)),
        "us_per_event": round(1e6 * wall / n, 2),
        "machine_busy_pct": statistics.median(s[2] for s in samples),
    }


def truth_errors(data: Path) -> tuple[int, int]:
    """(events with a wrong field, events checked) against gen_events.py's ground truth file.

    The truth holds the 7 unescaped CEF header fields and every unescaped extension value of the
    first events; dsrouter's typed values are compared as text (``16`` == ``"16"``).
    """
    path = Path(str(data) + ".truth.jsonl")
    if not path.exists():
        return 0, 0
    truth = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    events = parse_batch([t["line"].encode() for t in truth], "bench", "127.0.0.1", _stamp())
    keys = ("vendor", "product", "product_version", "signature_id", "name", "severity")
    wrong = 0
    for t, ev in zip(truth, events, strict=True):
        shadowed = ev.get("ext_shadowed", {})
        want = dict(zip(keys, t["header"][1:], strict=True))
        got = {k: ev.get(k) for k in keys}
        got.update({k: shadowed[k] if k in shadowed else ev.get(k) for k in t["ext"]})
        want.update(t["ext"])
        wrong += any(got[k] is None or str(got[k]) != v for k, v in want.items())
    return wrong, len(truth)


def profile(pipe: Pipeline, batches: list[list[bytes]], top: int) -> str:
    """cProfile of one parse + route + file pass; the top functions by cumulative time."""
    pipe.truncate()
    prof = cProfile.Profile()
    prof.runcall(pipe.parse_route_output, batches)
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative")
    stats.print_stats(top)
    buf.write("\n-- by own (tottime) --\n")
    stats.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=benchlib.default_work())
    ap.add_argument("-n", type=int, default=100_000, help="events (gen_events.py, seed 1)")
    ap.add_argument("--batch", type=int, default=1000, help="messages per parse_batch call")
    ap.add_argument("--reps", type=int, default=3, help="passes per stage (median reported)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile summary instead")
    ap.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    a = ap.parse_args()
    a.work = a.work.resolve()  # output paths in the generated config must be absolute

    data, meta = benchlib.ensure_events(a.work, a.n)
    lines = benchlib.read_lines(data)
    n = len(lines)
    batches = [lines[i : i + a.batch] for i in range(0, n, a.batch)]
    pipe = Pipeline(a.work / "out" / "dsrouter-inprocess")
    tune_runtime()  # the daemon's gc and malloc settings, so the figures match what it runs
    if a.profile:
        print(profile(pipe, batches, a.top))
        pipe.close()
        benchlib.discard_outputs(pipe.all_path, pipe.sev_path)
        return

    stages = [
        ("parse", pipe.parse),
        ("parse + route", pipe.parse_route),
        ("parse + route + file output", pipe.parse_route_output),
    ]
    samples: dict[str, list] = {label: [] for label, _ in stages}
    for _ in range(a.reps):  # stages interleaved, so outside load spreads over all of them
        for label, fn in stages:
            samples[label].append(_once(lambda fn=fn: fn(batches), pipe.truncate))
    rows = [_summary(label, samples[label], n) for label, _ in stages]
    stats = pipe.close()
    got_all = benchlib.count_lines(pipe.all_path)
    got_sev = benchlib.count_lines(pipe.sev_path)
    all_bytes = pipe.all_path.stat().st_size
    benchlib.discard_outputs(pipe.all_path, pipe.sev_path)
    ok = got_all == n and got_sev == meta["severity_ge_6"]

    print(
        f"dsrouter in-process, N = {n:,} events, batches of {a.batch}, median of {a.reps} "
        f"(Python {platform.python_version()}, {data})"
    )
    print("| stage | events/s | (min–max) | µs/event | wall s | CPU s | machine busy % |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['eps']:,} | {r['eps_min']:,}–{r['eps_max']:,} "
            f"| {r['us_per_event']:.2f} | {r['wall_s']:.3f} "
            f"| {r['cpu_s']:.3f} | {r['machine_busy_pct']} |"
        )
    print(
        f"output lines (last pass): all.jsonl {got_all:,} (want {n:,}), sev.jsonl {got_sev:,} "
        f"(want {meta['severity_ge_6']:,}) -> {'OK' if ok else 'MISMATCH'}"
    )
    wrong, checked = truth_errors(data)
    print(f"fields vs the generator's ground truth: {wrong} of the first {checked} events wrong")
    print(f"delivery: dead-lettered {stats['output_dead_lettered_total']}")
    benchlib.save_result(
        a.work,
        "dsrouter-inprocess",
        {
            "n": n,
            "batch": a.batch,
            "reps": a.reps,
            "stages": rows,
            "all_lines": got_all,
            "sev_lines": got_sev,
            "sev_expected": meta["severity_ge_6"],
            "counts_ok": ok,
            "truth_wrong": wrong,
            "truth_checked": checked,
            "all_bytes": all_bytes,
            "input_bytes": meta["bytes"],
        },
    )
    if not ok or wrong:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
