"""Rule evaluation cost per event for 1, 10 and 100 routes, next to the parse cost per event.

    python bench/rules_bench.py [--work bench-work] [-n 100000] [--routes 1,10,100] [--reps 5]

The workload is the shared harness's DS mix (gen_events.py, seed 1) in ``WORK/data/events.log``.
Its lines are parsed once by ``dsrouter.ds.parse_batch`` (that pass is timed: the parse cost);
then ``RouteTable.decide`` runs over every parsed event for each route count (the rule cost).
The routes have the shapes operators write (module/severity tests, CIDR ranges, regexes,
in-lists, string tests, ``lower()``, ``exists()``), are generated deterministically from
``--seed``, and end with a catch-all; about a quarter say ``continue``. The generated
configurations are written to ``WORK/rules/routes-N.conf`` for inspection.
Timings are CPU time (``time.process_time``) with the cycle collector off, stages interleaved
over ``--reps`` rounds; the table shows the median and, in brackets, the fastest round.
``--plain`` adds each table compiled without the route index (every route tried in turn).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import benchlib

from dsrouter.ds import parse_batch
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.plugin import Plugins

OUTPUTS = ("archive", "pager", "siem", "soc", "tenant_feed")
MODULES = ("firewall", "intrusion_prevention", "log_inspection", "integrity_monitoring")
MODULES += ("anti_malware", "web_reputation", "system", "application_control")
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fd00::/8")
PUBLIC = ("45.77.0.0/16", "104.16.0.0/12", "185.0.0.0/8", "91.96.0.0/14", "2001:db8::/32")
PORTS = (21, 22, 23, 25, 53, 80, 135, 137, 138, 139, 443, 445, 1433, 3306, 3389, 6667, 8080)
HOSTS = ("WIN-AD-", "WIN-FS-", "WIN-RDS-", "web-", "db-", "app-", "k8s-node-")
USERS = ("root", "administrator", "admin", "postgres", "www-data", "svc_backup", "guest")
WORDS = ("sql", "xss", "injection", "traversal", "shell", "overflow", "smb", "rdp", "telnet")
TENANTS = ("Acme Corp", "Globex", "Initech", "Umbrella")
MESSAGES = ("Failed password", "AUDIT_FAILURE", "Invalid user", "authentication failure")
SIGNATURES = (1000128, 1000552, 1005402, 1001126, 1008610, 4000000, 5000000, 3003007)


def _pick(rng: random.Random, pool: tuple, k: int) -> list:
    return rng.sample(pool, min(k, len(pool)))


def _list(items) -> str:
    return "[" + ", ".join(f'"{i}"' if isinstance(i, str) else str(i) for i in items) + "]"


def _conditions(rng: random.Random) -> list[Callable[[], str]]:
    """Rule shapes, each drawing its constants from ``rng``."""

    def sev() -> int:
        return rng.choice((5, 6, 7, 8, 9, 10))

    def ports(k: int) -> str:
        return _list(_pick(rng, PORTS, k))

    def nets(pool: tuple, k: int) -> str:
        return "[" + ", ".join(_pick(rng, pool, k)) + "]"

    def module() -> str:
        return f'"{rng.choice(MODULES)}"'

    return [
        lambda: f'module == "firewall" and act == "Deny" and dpt in {ports(3)}',
        lambda: f"severity >= {sev()} and module in {_list(_pick(rng, MODULES, 2))}",
        lambda: f"src in {nets(PUBLIC, 2)} and module == {module()}",
        lambda: f"dst not in {nets(PRIVATE, 3)} and dpt in {ports(2)}",
        lambda: f"name matches /(?:{'|'.join(_pick(rng, WORDS, 3))})/i and severity >= {sev()}",
        lambda: f'host startswith "{rng.choice(HOSTS)}" and module == {module()}',
        lambda: f'msg contains "{rng.choice(MESSAGES)}" and severity >= {sev()}',
        lambda: f'tenant == "{rng.choice(TENANTS)}" and severity >= {sev()}',
        lambda: f"signature_id in {_list(_pick(rng, SIGNATURES, 3))}",
        lambda: f'lower(suser) in {_list(_pick(rng, USERS, 3))} and not (act == "Log")',
        lambda: (
            'filePath matches "^/etc/(?:passwd|shadow|sudoers)$" '
            f'and host endswith "-0{rng.randint(1, 9)}"'
        ),
        lambda: f'exists(filePath) and module == "integrity_monitoring" and severity > {sev()}',
        lambda: f"module == {module()} and (src in {nets(PUBLIC, 1)} or dpt == {ports(1)[1:-1]})",
    ]


def routes_config(count: int, seed: int = 1) -> str:
    """A configuration with ``count`` generated routes plus a final catch-all."""
    rng = random.Random(f"{seed}-{count}")
    shapes = _conditions(rng)
    lines = [f'output {name} {{ type = "stdout" }}' for name in OUTPUTS]
    for i in range(count):
        cond = rng.choice(shapes)()
        if rng.random() < 0.15:
            action = "drop"
        else:
            action = "to " + ", ".join(_pick(rng, OUTPUTS[1:], rng.randint(1, 2)))
            if rng.random() < 0.3:
                action += "; continue"
        lines.append(f"route r{i:03d} {{ when {cond}; {action} }}")
    lines.append("route everything { to archive }")
    return "\n".join(lines) + "\n"


def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _fmt(samples: list[float], n: int) -> str:
    return f"{statistics.median(samples) / n * 1e6:.2f} ({min(samples) / n * 1e6:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=benchlib.default_work())
    ap.add_argument("-n", type=int, default=100_000, help="events in the workload")
    ap.add_argument("--routes", default="1,10,100", help="route counts, comma-separated")
    ap.add_argument("--batch", type=int, default=512, help="messages per parse_batch call")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated routes")
    ap.add_argument(
        "--plain", action="store_true", help="also time each table without the route index"
    )
    a = ap.parse_args()
    counts = [int(c) for c in a.routes.split(",")]
    data, meta = benchlib.ensure_events(a.work, a.n)
    lines = benchlib.read_lines(data)
    if len(lines) != meta["n"]:  # another run rewrote the shared file under our feet
        sys.exit(f"{data} holds {len(lines)} lines, its .meta.json says {meta['n']}: remove both")
    batches = [lines[i : i + a.batch] for i in range(0, len(lines), a.batch)]
    events: list[dict] = []
    for batch in batches:
        events.extend(parse_batch(batch, "bench", "127.0.0.1", "2025-11-27T23:18:32Z"))
    specs = Plugins(entry_points=False).option_specs()
    rules_dir = a.work / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    tables = {}
    for count in counts:
        text = routes_config(count, a.seed)
        (rules_dir / f"routes-{count}.conf").write_text(text)
        config = load_config_text(text, f"routes-{count}.conf", specs)
        tables[count, "indexed"] = compile_routes(config)
        if a.plain:
            tables[count, "plain"] = compile_routes(config, index=False)

    def parse_all() -> None:
        for batch in batches:
            parse_batch(batch, "bench", "127.0.0.1", "2025-11-27T23:18:32Z")

    def route_all(decide: Callable[[dict], object]) -> Callable[[], None]:
        def run() -> None:
            for ev in events:
                decide(ev)

        return run

    gc.collect()
    gc.disable()
    parse_s: list[float] = []
    route_s: dict[tuple, list[float]] = {key: [] for key in tables}
    for _ in range(a.reps):
        parse_s.append(_cpu(parse_all))
        for key, table in tables.items():
            route_s[key].append(_cpu(route_all(table.decide)))
    gc.enable()
    _report(a, len(events), parse_s, route_s, tables, events)


def _reach(table, events: list[dict]) -> tuple[float, float]:
    """Mean 1-based position of the route that decided, and the share decided by the catch-all.

    Without the route index this would be the number of conditions evaluated per event; the
    index skips routes whose module/signature_id constraints rule them out.
    """
    index = {name: i for i, name in enumerate(table.route_names)}
    last = len(table.route_names) - 1
    positions = [index[table.decide(ev).routes[-1]] for ev in events]
    return sum(positions) / len(positions) + 1, positions.count(last) / len(positions)


def _report(a, n: int, parse_s, route_s, tables, events) -> None:
    parse_us = statistics.median(parse_s) / n * 1e6
    print(f"{n:,} events, {platform.python_implementation()} {platform.python_version()}, ", end="")
    print(f"{platform.processor() or platform.machine()}, median (fastest) of {a.reps} rounds\n")
    print("| routes | table | rule evaluation µs/event | parse µs/event | rules / parse |", end="")
    print(" deciding route, mean position | decided by the catch-all |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for (count, kind), samples in route_s.items():
        ratio = statistics.median(samples) / n * 1e6 / parse_us
        evaluated, to_end = _reach(tables[count, kind], events)
        print(
            f"| {count} | {kind} | {_fmt(samples, n)} | {_fmt(parse_s, n)} | {ratio:.0%} "
            f"| {evaluated:.1f} | {to_end:.0%} |"
        )
    result = {
        "n": n,
        "parse_us": parse_us,
        "routes": {f"{c}-{k}": statistics.median(s) / n * 1e6 for (c, k), s in route_s.items()},
    }
    benchlib.save_result(a.work, "rules", result)


if __name__ == "__main__":
    main()
