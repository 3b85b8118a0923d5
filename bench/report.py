"""One markdown table of a ``peers.sh`` run: the shared harness's records plus dsrouter's own.

    python bench/report.py [--work bench-work] --label LABEL

Reads ``WORK/results/runs.jsonl`` (records of LABEL, or of several ``--label``s pooled; median
per contender and connection count, and dsrouter's events/s over each peer's in the same round;
for paced UDP, the events each contender lost at each offered rate, round by round),
``WORK/results/dsrouter-inprocess.json`` and ``WORK/results/dsrouter-tcp.json``; prints the table
and the machine description, and writes them to ``WORK/results/peers-LABEL.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import benchlib

WORK_KIND = {
    "rsyslog-fullparse": "mmnormalize (liblognorm cef) → JSON, 1 worker",
    "rsyslog-fullparse-2w": "same, 2 worker threads",
    "syslog-ng-fullparse": "syslog-parser + csv-parser + kv-parser → format-json per file",
    "syslog-ng-fullparse-json1x": "same, JSON rendered once per event",
    "rsyslog-disk": "rsyslog-fullparse with a Disk ruleset queue (durable), 1 worker",
    "rsyslog-disk-2w": "same, 2 worker threads",
    "syslog-ng-reliable": "syslog-ng-fullparse with disk-buffer(reliable(yes)) (durable)",
    "py-fast": "shared harness's pure-Python fast path (parse + orjson only)",
    "py-fast-4p-reuseport": "same, 4 processes",
    "py-fast-2p-fdpass": "same, 2 processes",
    "dsrouter": "daemon: parse + normalize + classify + DSL routes + file output (harness hook)",
    "dsrouter-noraw": "same, both outputs with raw = false (no copy of the message, as the peers)",
    "dsrouter-memory": "same, memory queues (not durable, as the peers' in-memory queues)",
}
HEAD = (
    "| contender | what it does | conns | events/s | receiver CPU s | events per CPU-s "
    "| peak RSS MB | machine busy % | sev lines |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _row(name, what, conns, eps, cpu, n, rss, busy, sev, spread=None) -> str:
    eps_text = f"{int(eps):,}" + (f" ({spread[0]:,}–{spread[1]:,})" if spread else "")
    per_cpu = f"{round(n / cpu):,}" if cpu else "-"
    rss_text = "-" if rss is None else f"{rss:.1f}"
    return (
        f"| {name} | {what} | {conns} | {eps_text} | {cpu:.2f} | {per_cpu} | {rss_text} "
        f"| {busy} | {sev} |"
    )


def _med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _groups(work: Path, labels: list[str]) -> dict[tuple, list[dict]]:
    """The harness's TCP records of ``labels``, by (contender, conns), in run order."""
    path = work / "results" / "runs.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in recs:
        if r.get("label") in labels and r.get("kind") != "sender" and r.get("proto") == "tcp":
            groups.setdefault((r["contender"], r.get("conns", 1)), []).append(r)
    return groups


def udp_rows(work: Path, labels: list[str]) -> list[str]:
    """Paced UDP: events lost of those sent, per contender and offered rate, every round."""
    path = work / "results" / "runs.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in recs:
        if r.get("label") in labels and r.get("kind") != "sender" and r.get("proto") == "udp":
            groups.setdefault((r.get("udp_rate") or 0, r["contender"]), []).append(r)
    rows = []
    for (rate, name), rs in sorted(groups.items()):
        runs = ", ".join(f"{r['lost']:,} ({r['loss_pct']}%)" for r in rs if "lost" in r)
        med = _med([r.get("loss_pct") for r in rs])
        rows.append(f"| {rate:,}/s | {name} | {runs} | {med if med is not None else '-'}% |")
    return rows


def paired_ratios(groups: dict[tuple, list[dict]], mine: str = "dsrouter") -> list[str]:
    """Median over rounds of dsrouter's events/s divided by each peer's in the same round."""
    lines = []
    for (name, conns), rs in groups.items():
        ours = groups.get((mine, conns))
        if name.startswith("dsrouter") or not ours:
            continue
        pairs = [
            a["eps"] / b["eps"]
            for a, b in zip(ours, rs, strict=False)
            if a.get("complete") and b.get("complete") and b["eps"]
        ]
        if pairs:
            lines.append(
                f"* {mine} / {name} ({conns} conn): median {statistics.median(pairs):.2f} over "
                f"{len(pairs)} rounds (range {min(pairs):.2f}–{max(pairs):.2f})"
            )
    return lines


def harness_rows(groups: dict[tuple, list[dict]]) -> list[str]:
    rows = []
    for (name, conns), rs in groups.items():
        ok = [r for r in rs if r.get("complete")]
        if not ok:
            rows.append(f"| {name} | {WORK_KIND.get(name, '')} | {conns} | failed | | | | | |")
            continue
        eps, cpu = _med([r["eps"] for r in ok]), _med([r["cpu_s"] for r in ok])
        rss, sev = (
            _med([r["rss_mb"] for r in ok]),
            _med([r["lines_out"].get("sev.log") for r in ok]),
        )
        want = ok[0].get("expected", {}).get("sev.log")
        mark = "" if not isinstance(want, int) or sev == want else f" (≠ {want:,})"
        sev_text = "-" if sev is None else f"{int(sev):,}{mark}"
        busy = _med([r.get("machine_busy_pct") for r in ok])
        what = WORK_KIND.get(name, "custom")
        spread = (min(r["eps"] for r in ok), max(r["eps"] for r in ok)) if len(ok) > 1 else None
        n = ok[0]["n_sent"]
        rows.append(_row(name, what, conns, eps, cpu, n, rss, busy, sev_text, spread))
    return rows


def own_rows(work: Path) -> list[str]:
    rows = []
    inproc = work / "results" / "dsrouter-inprocess.json"
    if inproc.exists():
        res = json.loads(inproc.read_text())
        for st in res["stages"]:
            what = f"{st['stage']} (batches of {res['batch']}, no sockets)"
            sev = f"{res['sev_lines']:,}" if "file" in st["stage"] else "-"
            spread = (st["eps_min"], st["eps_max"]) if "eps_min" in st and res["reps"] > 1 else None
            busy = st.get("machine_busy_pct", "-")
            cells = (st["eps"], st["cpu_s"], res["n"], None, busy, sev, spread)
            rows.append(_row("dsrouter in-process", what, "-", *cells))
    for path in sorted((work / "results").glob("dsrouter-tcp*.json")):
        res = json.loads(path.read_text())
        med, runs = res["median"], res["runs"]
        spread = (runs[0]["eps"], runs[-1]["eps"]) if len(runs) > 1 else None
        what = f"daemon over TCP, sender {med['sender']}"
        sev = f"{med['lines'].get('sev.jsonl', 0):,}"
        busy = med.get("machine_busy_pct", "-")
        cells = (med["eps"], med["cpu_s"], med["n"], med["rss_mb"], busy, sev, spread)
        rows.append(_row("dsrouter (tcp.py)", what, med["conns"], *cells))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=benchlib.default_work())
    ap.add_argument(
        "--label", action="append", required=True, help="a peers.sh run; repeat to pool runs"
    )
    ap.add_argument(
        "--no-own",
        action="store_true",
        help="leave out inprocess.py and tcp.py results (the run did not make them: SKIP_EXTRA)",
    )
    a = ap.parse_args()
    a.work = a.work.resolve()
    groups = _groups(a.work, a.label)
    own = [] if a.no_own else own_rows(a.work)
    table = "\n".join([HEAD, *harness_rows(groups), *own])
    mine = ("dsrouter", "dsrouter-noraw", "dsrouter-memory")
    ratios = "\n".join(line for name in mine for line in paired_ratios(groups, name))
    text = f"label {' + '.join(a.label)}\n\n{table}\n\nsame-round ratios:\n{ratios}\n"
    udp = udp_rows(a.work, a.label)
    if udp:
        head = "| offered rate | contender | lost, round by round | median loss |"
        lines = [head, "|---|---|---|---|", *udp]
        text += "\npaced UDP (events lost of those sent):\n" + "\n".join(lines) + "\n"
    machine = a.work / "results" / f"machine-{a.label[0]}.txt"
    if machine.exists():
        text += "\nmachine:\n```\n" + machine.read_text() + "```\n"
    print(text)
    (a.work / "results" / f"peers-{'+'.join(a.label)}.md").write_text(text)


if __name__ == "__main__":
    main()
