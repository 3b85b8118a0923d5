"""The C daemons' full-parse configurations with their durable queues on, as contenders of the
shared harness's ``custom`` hook — what dsrouter's disk queue is the counterpart of.

    python bench/durable_peers.py rsyslog-disk|rsyslog-disk-2w|syslog-ng-reliable \\
        --port P --out OUT --sev SEV --bench SHARED_BENCH --work WORK [--syslog-ng DIR] [--check]

The harness's ``rsyslog-fullparse`` and ``syslog-ng-fullparse`` keep events in memory between
receipt and the file write (a LinkedList ruleset queue; syslog-ng's in-memory destination
FIFO): on a crash those are lost. dsrouter's measured path commits every event to its disk
queue first. These variants render the harness's own templates (read from ``--bench`` at run
time, unchanged apart from the edits below) with the closest durable setting each daemon has:

* ``rsyslog-disk`` / ``-2w``: the ruleset queue ``queue.type="Disk"``, every message written
  to the queue files in WORK before processing, the bookkeeping written every 1,000 messages
  (``queue.checkpointInterval``) so a crash loses at most that much position; no fsync per
  write (``queue.syncQueueFiles`` off), as dsrouter's default fsyncs once a second;
* ``syslog-ng-reliable``: ``disk-buffer(reliable(yes))`` on both file destinations, every
  message written to the buffer file before it is acknowledged.

Each replaces itself (``os.execv``, same PID, so the harness measures and stops the daemon)
with the same command line the harness runs for the in-memory configuration. ``--check`` runs
the daemon's own configuration check on the rendered file instead (``rsyslogd -N1``,
``syslog-ng --syntax-only``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tcp import free_port

RSYSLOG_QUEUE = 'queue.type="LinkedList" queue.size="500000"'
RSYSLOG_DISK = (
    'queue.type="Disk" queue.filename="benchq" queue.maxFileSize="64m" '
    'queue.checkpointInterval="1000" queue.syncQueueFiles="off" queue.size="5000000"'
)
SNG_DESTINATIONS = ('file("@OUT_ALL@" template(@SNG_TEMPLATE@) fsync(no)', 'file("@OUT_SEV@"')
SNG_RELIABLE = (
    'disk-buffer(reliable(yes) dir("@WORKDIR@") disk-buf-size(4294967296) mem-buf-size(67108864))'
)


def render(template: Path, edits: list[tuple[str, str]], values: dict[str, str]) -> str:
    """The template with each ``(old, new)`` edit (which must apply), then the placeholders."""
    text = template.read_text()
    for old, new in edits:
        if old not in text:
            raise SystemExit(f"durable_peers: {template.name} no longer holds {old!r}")
        text = text.replace(old, new)
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def rsyslog(a: argparse.Namespace, workers: int) -> tuple[str, list[str], dict[str, str]]:
    conf = a.out.parent / "rsyslog.conf"
    values = placeholders(a) | {"@WORKERS@": str(workers)}
    text = render(
        a.bench / "configs" / "rsyslog-fullparse.conf.tmpl", [(RSYSLOG_QUEUE, RSYSLOG_DISK)], values
    )
    conf.write_text(text)
    pid = a.out.parent / "rsyslogd.pid"
    return (
        "/usr/sbin/rsyslogd",
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(pid)],
        dict(os.environ),
    )


def syslog_ng(a: argparse.Namespace) -> tuple[str, list[str], dict[str, str]]:
    run, sng = a.out.parent, a.syslog_ng or a.work / ".opt" / "syslog-ng"
    all_dest, sev_dest = SNG_DESTINATIONS
    edits = [
        (all_dest, f"{all_dest} {SNG_RELIABLE}"),
        (sev_dest, f"{sev_dest} {SNG_RELIABLE}"),
    ]
    values = placeholders(a) | {"@SNG_TEMPLATE@": "t_json", "@SNG_JSON_ONCE@": ""}
    text = render(a.bench / "configs" / "syslog-ng-fullparse.conf.tmpl", edits, values)
    conf = run / "syslog-ng.conf"
    conf.write_text(text)
    argv = [
        "syslog-ng", "-F", "-e", "-f", str(conf),
        f"--module-path={sng / 'usr/lib/syslog-ng/3.38'}",
        "-R", str(run / "syslog-ng.persist"), "-p", str(run / "syslog-ng.pid"),
        "-c", str(run / "syslog-ng.ctl"), "--no-caps",
    ]  # fmt: skip
    env = dict(os.environ, LD_LIBRARY_PATH=str(sng / "usr/lib/syslog-ng"))
    return str(sng / "usr/sbin/syslog-ng"), argv, env


def placeholders(a: argparse.Namespace) -> dict[str, str]:
    return {
        "@PORT_TCP@": str(a.port),
        "@PORT_UDP@": str(free_port()),
        "@OUT_ALL@": str(a.out),
        "@OUT_SEV@": str(a.sev),
        "@WORKDIR@": str(a.out.parent),
        "@CONFIGS@": str(a.bench / "configs"),
        "@RULEBASE@": str(a.bench / "configs" / "ds-cef.rulebase"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("peer", choices=["rsyslog-disk", "rsyslog-disk-2w", "syslog-ng-reliable"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True, help="every event, JSON lines")
    ap.add_argument("--sev", type=Path, required=True, help="severity >= 6 events, JSON lines")
    ap.add_argument("--bench", type=Path, required=True, help="the shared harness's folder")
    ap.add_argument("--work", type=Path, required=True, help="the harness's work folder")
    ap.add_argument(
        "--syslog-ng", type=Path, help="unpacked syslog-ng (default WORK/.opt/syslog-ng)"
    )
    ap.add_argument("--check", action="store_true", help="check the rendered configuration only")
    a = ap.parse_args()
    a.out, a.sev = a.out.resolve(), a.sev.resolve()
    if a.peer == "syslog-ng-reliable":
        path, argv, env = syslog_ng(a)
    else:
        path, argv, env = rsyslog(a, 2 if a.peer.endswith("-2w") else 1)
    if a.check:
        check = ["--syntax-only"] if a.peer.startswith("syslog-ng") else ["-N1"]
        argv = argv[:1] + check + [x for x in argv[1:] if x not in ("-n", "-F")]
    os.execve(path, argv, env)


if __name__ == "__main__":
    main()
