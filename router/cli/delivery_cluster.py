"""``dsrouter dlq`` and ``dsrouter queue status`` on the cluster (``settings { cluster_servers }``).

With a cluster the queues and the dead letters are in JetStream (``docs/cluster.md``): they
are cluster-wide, so these commands go to the cluster directly — no daemon needed, no data_dir
lock taken — through one :func:`~dsrouter.delivery.jetstream_conn.shared_client` for the
command, released at the end.

* ``dlq list|show`` read :class:`~dsrouter.delivery.jetstream_dlq.JetStreamDeadLetters`
  (``show --id`` gets each letter by its id instead of listing them all);
* ``dlq replay`` publishes each output's letters onto its subject with
  ``JetStreamQueue.publish(events, msg_ids=...)`` (the replay's own message ids, so a retried
  replay stores nothing twice), then deletes them, 1,000 letters at a time; outputs not in
  the configuration are skipped;
* ``dlq purge`` purges the stream (by output) or deletes the selected letters;
* ``queue status`` shows per output the depth, bytes and oldest age of its subject, its dead
  letters and its consumer's state (``CONSUMER.INFO``: pending, ack pending, redelivered,
  waiting pulls). JSON: ``{"cluster": {servers, stream, dlq_stream}, "outputs": {name: row},
  "other_dead_letters": {name: count}, "local_dead_letters": {name: count}}`` — the cluster's
  letters of names not configured (the pipeline's, removed outputs), and this router's local
  ones (events too large for the cluster's ``max_payload`` are dead-lettered locally).

A cluster that does not answer within its ``connect_timeout`` (+2 s) is one line on stderr and
exit 3; so is a cluster error on the way (``JetStreamError``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsrouter.cli.common import EXIT_INVALID, EXIT_OK, EXIT_STARTUP, print_json
from dsrouter.delivery.jetstream_options import ClusterOptions

#: Letters per replay step (publish, then delete): each step's requests are all in flight.
REPLAY_CHUNK = 1000
CONNECT_GRACE = 2.0


class _Quiet:
    """The client's logger for a command: its connection events would only repeat, on stderr,
    what the command says itself (``--log-level debug`` shows them)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def cluster_of(config) -> ClusterOptions | None:
    """The configuration's cluster, or None; ValueError (in words) when the settings are wrong."""
    from dsrouter.delivery.cluster_settings import cluster_options

    return cluster_options(config.settings, config.base_dir)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _run(args, what: str, options: ClusterOptions, body: Callable[[Any], int]) -> int:
    """Connect, run ``body(client)``, release; cluster trouble is one line and exit 3."""
    from dsrouter import logs
    from dsrouter.delivery.jetstream_conn import JetStreamError, release_client, shared_client

    log = logs.get_logger() if getattr(args, "log_level", "") == "debug" else _Quiet()
    client = shared_client(options, log)
    try:
        wait = options.connect_timeout + CONNECT_GRACE
        if not client.wait_connected(wait):
            reason = _one_line(client.last_error or "no answer")
            servers = ", ".join(options.display_servers)
            print(
                f"dsrouter {what}: cannot reach the cluster ({servers}) within {wait:g}s: {reason}",
                file=sys.stderr,
            )
            return EXIT_STARTUP
        try:
            return body(client)
        except JetStreamError as exc:
            kept = "; the letters not replayed are kept" if what == "dlq replay" else ""
            print(f"dsrouter {what}: the cluster: {_one_line(str(exc))}{kept}", file=sys.stderr)
            return EXIT_STARTUP
        except ValueError as exc:  # EventTooLarge, an invalid output name
            print(f"dsrouter {what}: {_one_line(str(exc))}", file=sys.stderr)
            return EXIT_INVALID
    finally:
        release_client(client)


# ---- dead letters -----------------------------------------------------------------------


def dlq(args, config, options: ClusterOptions) -> int:
    """``dsrouter dlq list|show|replay|purge`` on the cluster's dead-letter stream."""
    return _run(args, f"dlq {args.action}", options, lambda client: _dlq(args, config, client))


def _dlq(args, config, client) -> int:
    from dsrouter.cli.delivery import _list, _show, report_change
    from dsrouter.delivery.jetstream_dlq import JetStreamDeadLetters

    store = JetStreamDeadLetters(client)
    if args.action in ("list", "show"):
        letters = _select(store, args.output, args.ids)
        (_list if args.action == "list" else _show)(letters)
        _local_note(config, args.output)
        return EXIT_OK
    if args.action == "purge":
        if args.ids:
            letters = _select(store, args.output, args.ids)
            count = sum(store.discard(chunk) for chunk in _chunks(letters))
        else:
            count = store.purge(args.output)
        return report_change(args.action, {"ok": True, "count": count})
    queues: dict[str, Any] = {}
    done, skipped = 0, set()
    try:
        publish = _publisher(config, client, queues)
        for chunk in _chunks(_select(store, args.output, args.ids)):
            replayed, passed = store.replay(chunk, publish)
            done += replayed
            skipped.update(passed)
    finally:
        for queue in queues.values():
            queue.close()
    answer = {"ok": True, "count": done, "skipped_outputs": sorted(skipped)}
    return report_change(args.action, answer)


def _chunks(letters: list) -> list[list]:
    """``REPLAY_CHUNK`` letters at a time: each replay publishes and then deletes its letters
    with every request at once, so a chunk bounds what is in flight (and what a failure
    leaves to do again)."""
    return [letters[at : at + REPLAY_CHUNK] for at in range(0, len(letters), REPLAY_CHUNK)]


def _select(store, output: str | None, ids: list[str] | None) -> list:
    """Like ``store.select``; with ids, each letter is read by its id (no full listing)."""
    if not ids:
        return store.select(output, None)
    found = {}
    for dlq_id in ids:
        letter = store.get(dlq_id)
        if letter is not None and (output is None or letter.output == output):
            found[letter.dlq_id] = letter
    return sorted(found.values(), key=lambda s: (s.output, int(s.dlq_id)))


def local_dead_letters(config) -> dict[str, int]:
    """Dead letters in this router's own store: events too large for the cluster's
    ``max_payload`` are kept there (read only; no lock needed)."""
    from dsrouter.delivery.deadletter import DeadLetters

    return DeadLetters(Path(config.settings["data_dir"]) / "deadletter").counts()


def _local_note(config, output: str | None) -> None:
    counts = local_dead_letters(config)
    count = sum(n for name, n in counts.items() if output is None or name == output)
    if count:
        where = Path(config.settings["data_dir"]) / "deadletter"
        print(
            f"note: {count} more dead letter(s) in this router's local store {where} "
            "(events too large for the cluster), not shown",
            file=sys.stderr,
        )


def _publisher(config, client, queues: dict[str, Any]):
    """``publish(output, events, msg_ids)`` onto the output's subject (False: not configured)."""
    from dsrouter.delivery.jetstream import JetStreamQueue

    names = {b.name for b in config.outputs}

    def publish(output: str, events: list, msg_ids: list[str]) -> bool:
        if output not in names:
            return False
        queue = queues.get(output)
        if queue is None:
            queue = queues[output] = JetStreamQueue(output, client)
        queue.publish(events, msg_ids=msg_ids)  # at most a chunk (see _chunks)
        return True

    return publish


# ---- queue status -----------------------------------------------------------------------


def queue_status(args, config, options: ClusterOptions) -> int:
    """Per output: its subject's depth, bytes and oldest age, dead letters, consumer state."""
    return _run(args, "queue status", options, lambda client: _status(args, config, client))


def _status(args, config, client) -> int:
    from dsrouter.cli.delivery import _age
    from dsrouter.delivery.jetstream_dlq import JetStreamDeadLetters
    from dsrouter.delivery.jetstream_stream import dlq_stream

    stream = client.options.stream
    dead = JetStreamDeadLetters(client).counts()
    names = [b.name for b in config.outputs]
    consumers = _consumers(client, names)
    rows = {name: _row(client, name, dead.get(name, 0), consumers[name]) for name in names}
    others = {name: n for name, n in dead.items() if name not in rows}  # _pipeline, retired
    local = local_dead_letters(config)
    where = {
        "servers": client.options.display_servers,
        "stream": stream,
        "dlq_stream": dlq_stream(stream),
    }
    if args.json:
        print_json(
            {
                "cluster": where,
                "outputs": rows,
                "other_dead_letters": others,
                "local_dead_letters": local,
            }
        )
        return EXIT_OK
    servers = ", ".join(where["servers"])
    print(f"cluster {servers}: stream {stream}, dead letters in {where['dlq_stream']}")
    print(
        f"{'output':<16} {'queue':<9} {'events':>8} {'bytes':>10} {'oldest':>8} "
        f"{'dead':>6}  consumer / last error"
    )
    for name, row in rows.items():
        line = (
            f"{name:<16} {row['queue_type']:<9} {row['queue_events']:>8} "
            f"{row['queue_bytes']:>10} {_age(row['queue_oldest_seconds']):>8} "
            f"{row['dead_letters']:>6}  {_consumer_text(row['consumer'])} {row['last_error']}"
        )
        print(line.rstrip())
    if others:
        listed = ", ".join(f"{name} ({n})" for name, n in others.items())
        print(f"dead letters of names not configured as outputs: {listed}")
    if local:
        listed = ", ".join(f"{name} ({n})" for name, n in local.items())
        print(f"in this router's local store (too large for the cluster): {listed}")
    return EXIT_OK


def _row(client, name: str, dead: int, consumer: dict[str, Any] | str | None) -> dict[str, Any]:
    from dsrouter.delivery.jetstream import JetStreamQueue

    queue = JetStreamQueue(name, client)
    try:
        stats = queue.stats()
    finally:
        queue.close()
    oldest = stats.oldest_enqueued_at
    error = queue.last_error
    if isinstance(consumer, str):  # the consumer info failed: say why
        error, consumer = error or consumer, None
    return {
        "queue_type": "jetstream",
        "subject": queue.subject,
        "queue_events": stats.events,
        "queue_bytes": stats.bytes,
        "queue_oldest_seconds": max(0.0, time.time() - oldest) if oldest else 0.0,
        "dead_letters": dead,
        "consumer": consumer,
        "last_error": error,
    }


def _consumers(client, names: list[str]) -> dict[str, dict[str, Any] | str | None]:
    """Each output's consumer state (None: no consumer yet; a str: why it is not known)."""
    from dsrouter.delivery.jetstream_conn import ApiError, JetStreamError, gather_all

    stream = client.options.stream
    try:
        infos = client.call(
            gather_all([client.api(f"CONSUMER.INFO.{stream}.{n}") for n in names]),
            client.options.request_timeout + 1.0,
        )
    except JetStreamError as exc:
        return dict.fromkeys(names, _one_line(str(exc)))
    out: dict[str, dict[str, Any] | str | None] = {}
    for name, info in zip(names, infos, strict=True):
        if isinstance(info, ApiError) and info.not_found:
            out[name] = None
        elif isinstance(info, BaseException):
            out[name] = f"consumer info: {_one_line(str(info))}"
        else:
            out[name] = {
                "num_pending": int(info.get("num_pending", 0)),
                "num_ack_pending": int(info.get("num_ack_pending", 0)),
                "num_redelivered": int(info.get("num_redelivered", 0)),
                "num_waiting": int(info.get("num_waiting", 0)),
                "leader": (info.get("cluster") or {}).get("leader"),
            }
    return out


def _consumer_text(consumer: dict[str, Any] | None) -> str:
    if consumer is None:
        return "no consumer yet (no delivery worker has started)"
    return (
        f"pending={consumer['num_pending']} ack_pending={consumer['num_ack_pending']} "
        f"redelivered={consumer['num_redelivered']} waiting={consumer['num_waiting']}"
    )
