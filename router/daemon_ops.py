"""What the running daemon answers and does on request: reload, status, dead-letter replay,
the metrics snapshot and the health verdict. Mixed into :class:`dsrouter.daemon.Daemon`.

Control requests are answered on the event loop. With a cluster (``cluster_servers``) the
dead letters are a :class:`~dsrouter.delivery.jetstream_dlq.JetStreamDeadLetters` and each
queue a :class:`~dsrouter.delivery.jetstream.JetStreamQueue`, whose calls wait for the
cluster (seconds when it is slow or away): ``dlq_replay`` and ``dlq_purge`` then run on a
thread, so the loop keeps receiving meanwhile (``status`` reads the engine's snapshot, which
never waits). A reload cannot change a ``cluster_*`` setting (the
connection and the stream layout are made at start): it is refused, the daemon must restart.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from dsrouter.delivery.deadletter import DeadLetters
from dsrouter.delivery.queue import QueueFull
from dsrouter.dsl import Config, compile_routes
from dsrouter.errors import ConfigError, DsrouterError
from dsrouter.pipeline import PIPELINE

#: /healthz says degraded when a queue is fuller than this.
QUEUE_WARN = 0.8
#: Dead letters per replay or purge step on the cluster (publish, then delete): each step has
#: all its requests in flight at once.
REPLAY_CHUNK = 1000


class DaemonOps:
    """Reload, control requests, snapshot and health (state lives on the Daemon)."""

    config: Config
    reload_config: Any
    reload_state: dict[str, Any]
    engine: Any
    pipeline: Any
    listeners: list[tuple[Any, Any]]
    log: Any

    # -- reload ---------------------------------------------------------------------------
    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration; keep the old one when the new one is invalid."""
        state = self.reload_state
        state["total"] += 1
        try:
            config = await self._load_new()
            await self._apply(config)
        except (ConfigError, DsrouterError, OSError) as exc:
            errors = _errors(exc)
            state.update(success=0, timestamp=time.time(), errors=errors)
            state["failed_total"] += 1
            self.log.error("reload_failed", errors=errors, help="the old configuration stays")
            return {"ok": False, "errors": errors}
        state.update(success=1, timestamp=time.time(), errors=[])
        self.log.info(
            "reload_done",
            routes=len(config.routes),
            outputs=len(config.outputs),
            inputs=len(config.inputs),
        )
        return {"ok": True, "errors": []}

    async def _load_new(self) -> Config:
        if self.reload_config is None:
            return self.config
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.reload_config)

    async def _apply(self, config: Config) -> None:
        if config.settings.get("data_dir") != self.config.settings.get("data_dir"):
            raise DsrouterError("data_dir cannot change on reload; restart the daemon")
        old_disabled = tuple(self.config.settings.get("disable_plugins") or ())
        if tuple(config.settings.get("disable_plugins") or ()) != old_disabled:
            raise DsrouterError("disable_plugins cannot change on reload; restart the daemon")
        changed = cluster_changes(self.config.settings, config.settings)
        if changed:
            raise DsrouterError(
                f"{', '.join(changed)} cannot change on reload (the cluster connection and "
                "its streams are set up at start); restart the daemon"
            )
        table = compile_routes(config)
        self._reload_kept_inputs(config.inputs)  # before anything changes: may refuse
        self.pipeline.flush()  # the old table routes what was received under it
        self.engine.reconfigure(config.outputs)
        await self._reconfigure_inputs(config.inputs)
        self.pipeline.reconfigure(config, table)
        self.config = config

    def _reload_kept_inputs(self, blocks) -> None:
        """Inputs that stay re-read their files (a tls input's renewed certificate)."""
        wanted = {(b.name, b.type): b.options for b in blocks}
        for block, listener in self.listeners:
            if wanted.get((block.name, block.type)) == block.options:
                getattr(listener, "reload", lambda: None)()

    async def _reconfigure_inputs(self, blocks) -> None:
        wanted = {b.name: b for b in blocks}
        keep: list[tuple[Any, Any]] = []
        for block, listener in self.listeners:
            new = wanted.get(block.name)
            if new is not None and new.type == block.type and new.options == block.options:
                keep.append((block, listener))
                wanted.pop(block.name)
            else:
                listener.close()
                self.pipeline.listeners.remove(listener)
        self.listeners = keep
        for block in wanted.values():
            listener = await self._start_input(block)  # type: ignore[attr-defined]
            self.listeners.append((block, listener))
            self.pipeline.listeners.append(listener)

    # -- control requests -----------------------------------------------------------------
    async def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control-socket request (see :mod:`dsrouter.control`)."""
        cmd = request.get("cmd")
        if cmd == "reload":
            return await self.reload()
        if cmd == "stop":  # the drain of Ctrl-C / SIGTERM, for Windows, where no signal reaches us
            self.request_stop()  # type: ignore[attr-defined]
            return {"ok": True, "pid": os.getpid()}
        if cmd == "status":
            # never waits: a cluster queue answers from its last reading (recent_stats)
            return {"ok": True, "outputs": self.engine.snapshot(), "pid": os.getpid()}
        if cmd in ("dlq_replay", "dlq_purge"):
            return await self._off_loop(self._dlq, cmd, request.get("output"), request.get("ids"))
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    @property
    def clustered(self) -> bool:
        """Whether the queues and dead letters are the cluster's (their calls may block):
        the engine has a cluster client, or its dead letters are not the local files."""
        engine = self.engine
        return engine is not None and (
            getattr(engine, "cluster", None) is not None
            or not isinstance(engine.dead_letters, DeadLetters)
        )

    async def _off_loop(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on a thread when clustered; on the loop otherwise (the local stores
        answer at once, and their queues are published to from the loop only)."""
        if self.clustered:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    def _dlq(self, cmd: str, output: Any, ids: Any) -> dict[str, Any]:
        store = self.engine.dead_letters  # DeadLetters, or JetStreamDeadLetters
        if output is not None and output not in self.engine.lanes and output != PIPELINE:
            return {"ok": False, "error": f"no output named {output!r} in the running config"}
        try:
            letters = store.select(output, ids if isinstance(ids, list) else None)
            chunks = _chunks(letters) if self.clustered else [letters]
            if cmd == "dlq_purge":
                return {"ok": True, "count": sum(store.discard(c) for c in chunks)}
            done, skipped = 0, set()
            for chunk in chunks:
                replayed, passed = store.replay(chunk, self._publish)
                done += replayed
                skipped.update(passed)
        except (QueueFull, OSError, ValueError, RuntimeError) as exc:
            # a full queue, the cluster away, a closed lane: what was not replayed is kept
            what = "purge" if cmd == "dlq_purge" else "replay"
            self.log.warning("dlq_request_failed", cmd=cmd, error=str(exc))
            return {"ok": False, "error": f"{what} stopped: {exc}; the letters left are kept"}
        return {"ok": True, "count": done, "skipped_outputs": sorted(skipped)}

    def _publish(self, output: str, events: list[dict], msg_ids: list[str] | None = None) -> bool:
        """Replayed events onto a running output's queue (its limits apply: may raise).

        The cluster's store passes the replay's message ids (a retried replay is stored once)."""
        lane = self.engine.lanes.get(output)
        if lane is None:
            return False
        if msg_ids is None:
            lane.queue.publish(events, None)
            return True
        from dsrouter.delivery.jetstream import JetStreamQueue  # loaded: the cluster gave ids

        queue = lane.queue
        if not isinstance(queue, JetStreamQueue):
            raise RuntimeError(f"output {output}: its queue is not the cluster's")
        queue.publish(events, msg_ids=msg_ids)  # at most REPLAY_CHUNK (see _dlq)
        return True

    # -- observing ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the metrics collector and the stats lines read."""
        pipe = self.pipeline
        routes, unrouted = pipe.route_counts() if pipe else ({}, 0)
        if pipe is not None:
            counters = pipe.table.counters()
            for key, metric in (
                ("throttled", "throttled_total"),
                ("throttle_evicted", "throttle_evicted_total"),
            ):
                for route, n in counters.get(key, {}).items():
                    routes.setdefault(route, {"events_total": 0, "dropped_total": 0})[metric] = n
        inputs = {}
        for block, listener in self.listeners:
            getattr(listener, "refresh_stats", lambda: None)()
            inputs[block.name] = {"type": block.type, **listener.stats}
        return {
            "inputs": inputs,
            "events_total": pipe.events_total if pipe else 0,
            "events_unparsed_total": pipe.unparsed if pipe else 0,
            "pipeline_errors_total": pipe.pipeline_errors if pipe else 0,
            "batches_total": pipe.batches if pipe else 0,
            "events_unrouted_total": unrouted,
            "routes": routes,
            "outputs": self.engine.snapshot() if self.engine else {},
            "reload": dict(self.reload_state),
        }

    def summary(self) -> dict[str, Any]:
        """The snapshot without the latency histograms, for log lines."""
        snap = self.snapshot()
        for entry in snap["outputs"].values():
            entry.pop("latency", None)
        return snap

    def health(self) -> tuple[bool, list[str]]:
        """``(healthy, reasons)`` for /healthz."""
        reasons = []
        if not self.reload_state.get("success", 1):
            reasons.append("last reload failed: " + "; ".join(self.reload_state["errors"])[:300])
        cluster = self.engine.cluster if self.engine else None
        if cluster is not None and not cluster.connected:
            reasons.append(f"cluster unreachable: {cluster.last_error or 'connecting'}"[:300])
        for name, out in (self.engine.snapshot() if self.engine else {}).items():
            state = out["state"]
            if state in _UNHEALTHY:
                reasons.append(f"output {name} {_UNHEALTHY[state]}: {out['last_error']}")
            if out["hold_reason"]:
                reasons.append(f"output {name} applies back-pressure: {out['hold_reason']}")
            fill = _fill(out)
            if fill > QUEUE_WARN:
                reasons.append(f"output {name} queue is {fill:.0%} full")
        return not reasons, reasons


#: Worker states /healthz reports, in words.
_UNHEALTHY = {"retrying": "is failing", "opening": "is not open", "hung": "is hung"}


def _fill(out: dict[str, Any]) -> float:
    fills = [0.0]
    if out["queue_max_events"]:
        fills.append(out["queue_events"] / out["queue_max_events"])
    if out["queue_max_bytes"]:
        fills.append(out["queue_bytes"] / out["queue_max_bytes"])
    return max(fills)


def _chunks(letters: list) -> list[list]:
    """``REPLAY_CHUNK`` letters at a time: the cluster's store has every request of a replay
    or a discard in flight at once, so a chunk bounds them (and what a failure leaves)."""
    return [letters[at : at + REPLAY_CHUNK] for at in range(0, len(letters), REPLAY_CHUNK)]


def cluster_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The ``cluster_*`` settings whose values differ (sorted; values are never shown: the
    password and token are among them)."""
    keys = {k for k in (*old, *new) if k.startswith("cluster_")}
    return sorted(k for k in keys if _same(old.get(k)) != _same(new.get(k)))


def _same(value: Any) -> Any:
    """A setting's value for comparing: lists as tuples, unset and empty alike."""
    if isinstance(value, list | tuple):
        return tuple(_same(v) for v in value)
    return None if value == "" else value


def _errors(exc: Exception) -> list[str]:
    if isinstance(exc, ConfigError):
        return [d.render() for d in exc.diagnostics if d.is_error] or [str(exc)]
    return [str(exc)]
