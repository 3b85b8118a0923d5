"""The running daemon: listeners feed batches into parse → route → deliver on one event loop.

Receivers call a sink with every message of a received chunk; the sink only appends to a pending
list and schedules one flush for the current loop iteration, so a flush handles everything that
arrived from every connection since the last one: the per-event path is a batch path.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from dsrouter.api import Output, OutputContext
from dsrouter.dispatch import Dispatcher
from dsrouter.ds import parse_batch
from dsrouter.dsl import Config, compile_routes
from dsrouter.errors import StartupError
from dsrouter.metrics import MetricsServer
from dsrouter.plugin import Plugins

STATS_INTERVAL = 60.0


class Daemon:
    """Builds outputs, the route table and listeners from a checked :class:`Config`."""

    def __init__(self, config: Config, plugins: Plugins, log: Any, source: str) -> None:
        self.config = config
        self.plugins = plugins
        self.log = log
        self.source = source
        self.data_dir = Path(config.settings["data_dir"])
        self.pending: list[tuple[str, str, list[bytes]]] = []
        self.flush_scheduled = False
        self.pipeline_errors = 0
        self.unparsed = 0
        self.batches = 0
        self.listeners: list[tuple[Any, Any]] = []
        self.outputs: dict[str, Output] = {}
        self.dispatcher: Dispatcher | None = None
        self.metrics: MetricsServer | None = None
        self.table: Any = None

    # -- start-up -----------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create data_dir {self.data_dir}: {exc.strerror}") from exc

    def _build_outputs(self) -> None:
        ctx = OutputContext(
            data_dir=self.data_dir, config_dir=self.config.base_dir, logger=self.log
        )
        for block in self.config.outputs:
            kind = self.plugins.outputs[block.type]
            try:
                out = kind.factory(block.name, block.options, ctx)
                out.open()
            except Exception as exc:
                raise StartupError(
                    f"output '{block.name}' ({block.type}) failed to start: {exc}"
                ) from exc
            self.outputs[block.name] = out
        self.table = table = compile_routes(self.config)
        self.dispatcher = Dispatcher(
            table.decide, self.outputs, self.data_dir / "deadletter", log=self.log
        )

    async def _start_listeners(self) -> None:
        for block in self.config.inputs:
            kind = self.plugins.inputs[block.type]
            listener = kind.factory(block.name, block.options, self._sink_for(block.name))
            await listener.start()
            self.listeners.append((block, listener))

    async def _start_metrics(self) -> None:
        address = self.config.settings.get("metrics")
        if address:
            self.metrics = MetricsServer(address[0], address[1], self.stats)
            await self.metrics.start()

    def _sink_for(self, name: str):
        pending = self.pending

        def sink(messages: list[bytes], peer: str) -> None:
            pending.append((name, peer, messages))
            if not self.flush_scheduled:
                self.flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)

        return sink

    # -- the batch path -----------------------------------------------------------------
    def flush(self) -> None:
        """Parse, route and deliver everything received since the last flush."""
        self.flush_scheduled = False
        if not self.pending:
            return
        batch, self.pending[:] = list(self.pending), []
        self.batches += 1
        received_at = datetime.now(UTC).isoformat(timespec="microseconds")
        events: list[dict] = []
        for name, peer, messages in batch:
            events.extend(parse_batch(messages, name, peer, received_at))
        self.unparsed += sum(1 for ev in events if "parse_error" in ev)
        assert self.dispatcher is not None, "flush before start-up"
        try:
            self.dispatcher.process(events)
        except Exception as exc:  # a bug must not lose the batch: keep it for replay
            self.pipeline_errors += 1
            self._dead_letter_batch(events, exc)

    def _dead_letter_batch(self, events: list[dict], exc: Exception) -> None:
        path = self.data_dir / "deadletter" / "_pipeline.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            for ev in events:
                fh.write(
                    orjson.dumps(
                        {"reason": repr(exc), "event": ev},
                        default=str,
                        option=orjson.OPT_APPEND_NEWLINE,
                    )
                )
        self.log.error("pipeline_failed", events=len(events), error=repr(exc), path=str(path))

    # -- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Start everything, serve until SIGTERM/SIGINT, then drain and stop cleanly."""
        self._prepare_dirs()
        self._build_outputs()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tune_runtime()
        try:
            await self._start_listeners()
            await self._start_metrics()
            self._banner()
            await self._serve(stop)
        finally:
            self._shutdown()

    async def _serve(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        assert self.dispatcher is not None
        next_stats = loop.time() + STATS_INTERVAL
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                pass
            self.dispatcher.tick()
            if loop.time() >= next_stats:
                next_stats += STATS_INTERVAL
                self.log.info("stats_reported", **self.stats())

    def _shutdown(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        for _, listener in self.listeners:
            listener.close()
        self.flush()
        if self.dispatcher is not None:
            self.dispatcher.close()
            if self.listeners:
                self.log.info("daemon_stopped", **self.stats())

    def stats(self) -> dict[str, Any]:
        stats = self.dispatcher.stats() if self.dispatcher else {}
        stats["pipeline_errors_total"] = self.pipeline_errors
        stats["events_unparsed_total"] = self.unparsed
        stats["batches_total"] = self.batches
        if self.table is not None:
            counters = self.table.counters()
            stats["route_throttled_total"] = counters.get("throttled", {})
            stats["route_throttle_evicted_total"] = counters.get("throttle_evicted", {})
        stats["inputs"] = {block.name: dict(lst.stats) for block, lst in self.listeners}
        return stats

    def _banner(self) -> None:
        out = [f"dsrouter running with {self.source}"]
        for block, listener in self.listeners:
            host, port = listener.address[:2]
            out.append(f"  input  {block.name}  {block.type}  {host}:{port}")
        for name, output in self.outputs.items():
            out.append(f"  output {name}  {output.describe()}")
        if self.metrics is not None:
            host, port = self.metrics.address
            out.append(f"  metrics http://{host}:{port}/metrics  http://{host}:{port}/healthz")
        out.append(f"  data   {self.data_dir}")
        out.append("Stop with Ctrl+C (SIGINT) or SIGTERM.")
        print("\n".join(out), flush=True)
        for block, listener in self.listeners:
            host, port = listener.address[:2]
            self.log.info(
                "listener_started", input=block.name, type=block.type, address=f"{host}:{port}"
            )


def _tune_malloc() -> None:
    """Keep glibc from returning freed batch memory to the kernel after every batch: the next
    batch would fault it back in page by page (measured: ~8 µs per event in page faults)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, Windows, musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 256 * 1024 * 1024)
    libc.mallopt(m_mmap_threshold, 64 * 1024 * 1024)


def _tune_gc() -> None:
    """Events are acyclic and short-lived: move start-up objects out of the collector's way and
    collect the young generation rarely, so big batches are not rescanned again and again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def tune_runtime() -> None:
    """Process-wide tuning for the batch path (the benchmarks call it too)."""
    _tune_gc()
    _tune_malloc()


def run_daemon(config: Config, plugins: Plugins, log: Any, source: str) -> int:
    """Run until stopped; StartupError propagates to the CLI (exit 3)."""
    daemon = Daemon(config, plugins, log, source)
    asyncio.run(daemon.run())
    sys.stdout.flush()
    return 0
