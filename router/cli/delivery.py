"""The delivery commands: ``reload``, ``dlq list|show|replay|purge`` and ``queue status``.

Each asks the running daemon through its control socket (:mod:`dsrouter.control`) when one
runs on the configuration's data_dir, and otherwise works on the files directly (under the
daemon's lock, so a daemon started meanwhile cannot write them at the same time).

With ``settings { cluster_servers }`` the queues and dead letters are cluster-wide: ``dlq``
and ``queue status`` work on the cluster directly (:mod:`dsrouter.cli.delivery_cluster`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsrouter.cli.common import EXIT_INVALID, EXIT_OK, EXIT_STARTUP, load, print_json
from dsrouter.errors import ConfigError, DsrouterError

if TYPE_CHECKING:
    from dsrouter.delivery.jetstream_options import ClusterOptions


def _data_dir(args) -> tuple[Any, Path]:
    config, _, _ = load(args)
    return config, Path(config.settings["data_dir"])


def _cluster(config) -> ClusterOptions | None:
    """The configuration's ClusterOptions, or None without ``cluster_servers``."""
    if not config.settings.get("cluster_servers"):
        return None
    from dsrouter.cli.delivery_cluster import cluster_of

    try:
        return cluster_of(config)
    except ValueError as exc:  # the checker refuses these first; said in words all the same
        raise DsrouterError(f"cluster settings: {exc}") from None


def reload(args) -> int:
    """Reload the running daemon; 0 taken, 1 refused, 3 no daemon."""
    from dsrouter.control import NoDaemon, request

    try:
        _, data_dir = _data_dir(args)
    except ConfigError as exc:
        from dsrouter.cli.common import print_diagnostics

        print_diagnostics(exc.diagnostics)
        print(
            "dsrouter reload: refused; the running daemon keeps its configuration", file=sys.stderr
        )
        return EXIT_INVALID
    try:
        answer = request(data_dir, {"cmd": "reload"})
    except NoDaemon as exc:
        print(f"dsrouter reload: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    if answer.get("ok"):
        print("reloaded: the new configuration is running")
        return EXIT_OK
    for line in answer.get("errors", []):
        print(line, file=sys.stderr)
    print("dsrouter reload: refused; the old configuration keeps running", file=sys.stderr)
    return EXIT_INVALID


# ---- dead letters -----------------------------------------------------------------------


def dlq(args) -> int:
    """``dsrouter dlq list|show|replay|purge``."""
    from dsrouter.delivery.deadletter import DeadLetters
    from dsrouter.pipeline import PIPELINE

    config, data_dir = _data_dir(args)
    known = [b.name for b in config.outputs] + [PIPELINE]
    if args.output is not None and args.output not in known:
        print(
            f"dsrouter dlq: no output named {args.output!r} in the configuration "
            f"(outputs: {', '.join(known)})",
            file=sys.stderr,
        )
        return EXIT_INVALID
    cluster = _cluster(config)
    if cluster is not None:
        from dsrouter.cli.delivery_cluster import dlq as cluster_dlq

        return cluster_dlq(args, config, cluster)
    store = DeadLetters(data_dir / "deadletter")
    if args.action in ("list", "show"):
        letters = store.select(args.output, args.ids)
        (_list if args.action == "list" else _show)(letters)
        return EXIT_OK
    return _change(args, config, data_dir, store)


def _list(letters) -> None:
    if not letters:
        print("no dead letters")
        return
    for s in letters:
        ev = s.event
        print(
            f"{s.dlq_id}  {s.output}  {s.time}  attempts={s.attempts}  "
            f"host={ev.get('host')}  module={ev.get('module')}  name={ev.get('name')!r}  "
            f"reason={s.reason}"
        )
    print(f"{len(letters)} dead letter(s)")


def _show(letters) -> None:
    for s in letters:
        print_json(
            {
                "dlq_id": s.dlq_id,
                "output": s.output,
                "time": s.time,
                "reason": s.reason,
                "attempts": s.attempts,
                "response": s.response,
                "event": s.event,
            }
        )


def _change(args, config, data_dir: Path, store) -> int:
    from dsrouter.control import NoDaemon, request

    cmd = "dlq_replay" if args.action == "replay" else "dlq_purge"
    try:
        answer = request(data_dir, {"cmd": cmd, "output": args.output, "ids": args.ids})
    except NoDaemon:
        answer = _offline(cmd, args, config, data_dir, store)
    return report_change(args.action, answer)


def report_change(action: str, answer: dict[str, Any]) -> int:
    """Print what a replay or purge did (or why it did not); the exit code."""
    if not answer.get("ok"):
        print(f"dsrouter dlq {action}: {answer.get('error')}", file=sys.stderr)
        return EXIT_INVALID
    verb = "replayed onto their outputs' queues" if action == "replay" else "purged"
    print(f"{answer['count']} dead letter(s) {verb}")
    for name in answer.get("skipped_outputs", []):
        print(f"  skipped output {name!r}: not in the configuration", file=sys.stderr)
    return EXIT_OK


def _offline(cmd: str, args, config, data_dir: Path, store) -> dict[str, Any]:
    from dsrouter.control import DaemonLock

    lock = DaemonLock(data_dir)
    try:
        lock.acquire()
    except DsrouterError as exc:
        return {"ok": False, "error": f"{exc}, but it does not answer on its control socket"}
    try:
        letters = store.select(args.output, args.ids)
        if cmd == "dlq_purge":
            return {"ok": True, "count": store.discard(letters)}
        done, skipped = store.replay(letters, _offline_publisher(config, data_dir))
        return {"ok": True, "count": done, "skipped_outputs": skipped}
    finally:
        lock.release()


def _offline_publisher(config, data_dir: Path):
    """Append to an output's queue directory: a disk queue recovers it, a memory queue
    delivers it first at the next start."""
    from dsrouter.delivery.diskqueue import DiskQueue
    from dsrouter.delivery.engine import queue_dir

    names = {b.name for b in config.outputs}

    def publish(output: str, events: list) -> bool:
        if output not in names:
            return False
        queue = DiskQueue(output, queue_dir(data_dir, output), fsync="always")
        try:
            queue.publish(events)
        finally:
            queue.close()
        return True

    return publish


# ---- queue status -----------------------------------------------------------------------


def queue_status(args) -> int:
    """Depth, oldest age and last error per output (live from the daemon, else from disk)."""
    from dsrouter.control import NoDaemon, request
    from dsrouter.delivery.deadletter import DeadLetters

    config, data_dir = _data_dir(args)
    cluster = _cluster(config)
    if cluster is not None:
        from dsrouter.cli.delivery_cluster import queue_status as cluster_status

        return cluster_status(args, config, cluster)
    dead = DeadLetters(data_dir / "deadletter").counts()
    try:
        rows = request(data_dir, {"cmd": "status"})["outputs"]
        live = True
    except NoDaemon:
        rows, live = _offline_status(config, data_dir), False
    for name, row in rows.items():
        row["dead_letters"] = dead.get(name, 0)
    if args.json:
        print_json({"daemon_running": live, "outputs": rows})
        return EXIT_OK
    print(
        ("daemon running" if live else "no daemon running: read from the queue files")
        + f" (data_dir {data_dir})"
    )
    print(
        f"{'output':<16} {'queue':<6} {'events':>8} {'bytes':>10} {'oldest':>8} "
        f"{'dead':>6}  state / last error"
    )
    for name, row in rows.items():
        print(
            f"{name:<16} {row.get('queue_type', '?'):<6} {row.get('queue_events', 0):>8} "
            f"{row.get('queue_bytes', 0):>10} {_age(row.get('queue_oldest_seconds')):>8} "
            f"{row['dead_letters']:>6}  {row.get('state', '-')} {row.get('last_error', '')}"
        )
    return EXIT_OK


def _offline_status(config, data_dir: Path) -> dict[str, dict[str, Any]]:
    from dsrouter.delivery.diskqueue import read_records
    from dsrouter.delivery.engine import queue_dir
    from dsrouter.delivery.options import DeliveryOptions

    rows = {}
    now = time.time()
    for block in config.outputs:
        opts, _ = DeliveryOptions.split(block.options)
        events = size = 0
        oldest = None
        where = queue_dir(data_dir, block.name)
        if where.exists():
            for rec in read_records(where):
                events += 1
                size += rec.size
                oldest = rec.enqueued_at if oldest is None else min(oldest, rec.enqueued_at)
        rows[block.name] = {
            "queue_type": opts.queue,
            "queue_events": events,
            "queue_bytes": size,
            "queue_oldest_seconds": (now - oldest) if oldest else 0.0,
            "state": "stopped",
            "last_error": "",
        }
    return rows


def _age(seconds: Any) -> str:
    if not seconds:
        return "-"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
