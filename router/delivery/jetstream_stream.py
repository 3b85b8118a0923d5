"""Names, message ids and provisioning of the JetStream work and dead-letter streams.

Layout (``S`` is ``cluster_stream``, ``dsrouter`` by default):

* work stream ``S``: subjects ``S.out.<output>``, **work-queue** retention (a message leaves
  when its consumer acks it), file storage, ``cluster_replicas`` copies, ``discard: new`` (a
  stream at its ``max_bytes`` refuses new messages instead of dropping old ones), no
  ``max_age`` (an event never expires unseen), a ``duplicate_window`` for ``Nats-Msg-Id``;
* one durable pull consumer per output, named after it, ``filter_subject = S.out.<output>``,
  explicit acks, ``max_deliver`` unlimited (the worker's ``max_attempts`` decides);
* dead-letter stream ``S_dlq``: subjects ``S_dlq.<output>``, limits retention (kept until
  purged), ``discard: new`` at ``dlq_max_bytes``.

Replicas: a stream cannot have more copies than the cluster has JetStream nodes. A server
without a cluster refuses ``replicas > 1`` (error 10074) and a cluster too small for the wish
cannot place it (10005 / 10023); :func:`ensure_stream` then asks for one copy fewer until the
cluster accepts and logs ``cluster_replicas_reduced`` with both numbers. An existing stream
is used as it is (its replicas are the operator's to change with ``nats stream edit``); a
different replica count is logged once as ``cluster_replicas_differ``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .jetstream_conn import ApiError, ClusterUnavailable, JetStreamClient, JetStreamError

_NS = 1_000_000_000
_CLAMP_CODES = {10074, 10005, 10023}  # not clustered; no suitable peers; insufficient resources
_SERVER_DEFAULTED = {"name"}  # not echoed back by every server version


def work_subject(stream: str, output: str) -> str:
    """The subject an output's events are published on."""
    return f"{stream}.out.{output}"


def dlq_stream(stream: str) -> str:
    """The dead-letter stream that goes with ``stream``."""
    return f"{stream}_dlq"


def dlq_subject(stream: str, output: str) -> str:
    return f"{dlq_stream(stream)}.{output}"


def work_stream_config(client: JetStreamClient, replicas: int) -> dict[str, Any]:
    o = client.options
    return {
        "name": o.stream,
        "subjects": [f"{o.stream}.out.*"],
        "retention": "workqueue",
        "storage": "file",
        "num_replicas": replicas,
        "discard": "new",
        "max_bytes": o.stream_max_bytes or -1,
        "max_msgs": -1,
        "max_age": 0,
        "duplicate_window": int(o.duplicate_window * _NS),
    }


def dlq_stream_config(client: JetStreamClient, replicas: int) -> dict[str, Any]:
    o = client.options
    name = dlq_stream(o.stream)
    return {
        "name": name,
        "subjects": [f"{name}.*"],
        "retention": "limits",
        "storage": "file",
        "num_replicas": replicas,
        "discard": "new",
        "max_bytes": o.dlq_max_bytes or -1,
        "max_msgs": -1,
        "max_age": 0,
        "duplicate_window": int(o.duplicate_window * _NS),
    }


class Once:
    """A provisioning step (create a stream, a consumer) that runs until it succeeds: callers
    that come while it runs wait for that run instead of sending the same request again, and
    ``reset()`` makes the next caller run it again (the stream was deleted under us)."""

    def __init__(self) -> None:
        self.done = False
        self._lock = asyncio.Lock()

    async def run(self, step: Callable[[], Awaitable[object]]) -> None:
        if self.done:
            return
        async with self._lock:
            if not self.done:
                await step()
                self.done = True

    def reset(self) -> None:
        self.done = False


async def ensure_stream(client: JetStreamClient, config: dict[str, Any]) -> int:
    """Create the stream unless it exists; return its replica count."""
    name = config["name"]
    try:
        info = await client.api(f"STREAM.INFO.{name}")
    except ApiError as exc:
        if not exc.not_found:
            raise
    else:
        return _check_existing(client, config, info["config"])
    wanted = replicas = config["num_replicas"]
    while True:
        try:
            info = await client.api(f"STREAM.CREATE.{name}", dict(config, num_replicas=replicas))
        except ApiError as exc:
            if exc.err_code == 10058:  # created meanwhile by another router: use that one
                info = await client.api(f"STREAM.INFO.{name}")
                return _check_existing(client, config, info["config"])
            if exc.err_code not in _CLAMP_CODES or replicas == 1:
                raise
            replicas -= 1
            continue
        await _leader_elected(client, name)
        if replicas != wanted:
            client.log.warning(
                "cluster_replicas_reduced",
                stream=name,
                wanted=wanted,
                replicas=replicas,
                reason="the cluster has fewer JetStream nodes than cluster_replicas",
            )
        return int(info["config"].get("num_replicas", replicas))


async def _leader_elected(client: JetStreamClient, name: str, wait: float = 5.0) -> None:
    """Until a new stream's RAFT group has a leader (a replicated stream answers "no
    responders" for its first moments), at most ``wait`` seconds; the publish retries anyway."""
    deadline = asyncio.get_running_loop().time() + wait
    while asyncio.get_running_loop().time() < deadline:
        try:
            info = await client.api(f"STREAM.INFO.{name}")
        except JetStreamError:
            info = {"cluster": {}}
        if "cluster" not in info or info["cluster"].get("leader"):  # standalone, or elected
            return
        await asyncio.sleep(0.1)


def _check_existing(client: JetStreamClient, wanted: dict[str, Any], have: dict[str, Any]) -> int:
    """An existing stream must have our subjects and retention; replicas are its own."""
    name = wanted["name"]
    if have.get("retention") != wanted["retention"] or not set(wanted["subjects"]) <= set(
        have.get("subjects") or ()
    ):
        raise JetStreamError(
            f"stream {name!r} exists with subjects {have.get('subjects')} and retention "
            f"{have.get('retention')!r}; dsrouter needs {wanted['subjects']} with "
            f"{wanted['retention']!r} (choose another cluster_stream)"
        )
    replicas = int(have.get("num_replicas", 1))
    if replicas != wanted["num_replicas"]:
        client.log.warning(
            "cluster_replicas_differ",
            stream=name,
            configured=wanted["num_replicas"],
            replicas=replicas,
        )
    return replicas


def consumer_config(client: JetStreamClient, output: str) -> dict[str, Any]:
    o = client.options
    return {
        "durable_name": output,
        "name": output,
        "filter_subject": work_subject(o.stream, output),
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": int(o.ack_wait * _NS),
        "max_deliver": -1,
        "max_ack_pending": o.max_ack_pending,
        "replay_policy": "instant",
    }


async def ensure_consumer(client: JetStreamClient, output: str) -> None:
    """Create the durable consumer of ``output`` (or bring it to our settings), and wait
    until it has a leader.

    Asked first, since a create of an existing consumer is an update; and waited for, since
    while two processes create it at once, the second sees it before it runs, and a pull
    sent then is never answered (the fetch would stall for its grace period)."""
    config = consumer_config(client, output)
    stream = client.options.stream
    info = await _consumer_info(client, stream, output)
    if info is not None:
        have = info.get("config") or {}
        if all(have.get(k) == v for k, v in config.items() if k not in _SERVER_DEFAULTED):
            await _until_led(client, stream, output, info)
            return
        client.log.info("cluster_consumer_updated", stream=stream, consumer=output)
    what = f"CONSUMER.CREATE.{stream}.{output}.{config['filter_subject']}"
    info = await client.api(what, {"stream_name": stream, "config": config})
    await _until_led(client, stream, output, info)


async def _consumer_info(client: JetStreamClient, stream: str, output: str) -> Any:
    try:
        return await client.api(f"CONSUMER.INFO.{stream}.{output}")
    except ApiError as exc:
        if exc.not_found:
            return None
        raise


async def _until_led(
    client: JetStreamClient, stream: str, output: str, info: Any, limit: float = 10.0
) -> None:
    """Until the consumer's info names a leader (a lone server has no ``cluster`` member)."""
    deadline = time.monotonic() + limit
    while info is None or ("cluster" in info and not info["cluster"].get("leader")):
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"consumer {output} of {stream} has no leader")
        await asyncio.sleep(0.05)
        info = await _consumer_info(client, stream, output)
