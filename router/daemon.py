"""The running daemon: start-up, signals, the periodic tick, reload and a draining shutdown.

Data flows ``ingest`` (listeners) → :mod:`dsrouter.pipeline` (parse, route) →
:mod:`dsrouter.delivery` (per-output queues and worker threads) → outputs. This module owns
the lifecycle around that flow:

* start-up takes the data_dir lock, opens every output's queue and worker, binds the inputs,
  the control socket and ``/metrics``;
* SIGHUP (or ``dsrouter reload``) re-reads the configuration: an invalid one is refused and
  the old one keeps running; a valid one swaps the route table between two batches, keeps
  unchanged inputs and outputs as they are and reopens files (logrotate);
* SIGTERM / SIGINT (Ctrl-C) stop accepting, keep reading open connections until they are
  idle or ``shutdown_timeout`` passes, commit everything to the queues and stop the workers; a
  second SIGINT exits at once (queues are crash-safe). The control channel's ``stop`` request
  and :meth:`Daemon.request_stop` (from any thread) start the same drain.

On Windows (asyncio's proactor loop) Ctrl-C and Ctrl-Break start the drain, and so do the
console's close, logoff and shutdown events, whose handler holds the process until the drain
is done (:mod:`dsrouter.runtime`); a Windows service (:mod:`dsrouter.service`) runs the daemon
with ``console=False`` and stops it with :meth:`Daemon.request_stop`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsrouter.api import RunContext
from dsrouter.control import ControlServer, DaemonLock
from dsrouter.daemon_ops import DaemonOps
from dsrouter.delivery.cluster_settings import connect_cluster, release_cluster
from dsrouter.delivery.engine import Engine
from dsrouter.dsl import Config, compile_routes
from dsrouter.errors import StartupError
from dsrouter.metrics import MetricsServer
from dsrouter.parse_pool import ParserPool, parser_count
from dsrouter.pipeline import Pipeline
from dsrouter.plugin import Plugins
from dsrouter.runtime import install_console_handler, tune_runtime

STATS_INTERVAL = 60.0
TICK = 0.1
IDLE_GRACE = 0.5  # at shutdown, a connection silent this long has sent everything


class Daemon(DaemonOps):
    """Builds the engine, pipeline and listeners from a checked :class:`Config`."""

    def __init__(
        self,
        config: Config,
        plugins: Plugins,
        log: Any,
        source: str,
        reload_config: Callable[[], Config] | None = None,
        console: bool = True,
        role: str = "all",
    ) -> None:
        self.role = role  # receive | deliver | all (see docs/cluster.md)
        self.config, self.plugins, self.log, self.source = (
            self._for_role(config),
            plugins,
            log,
            source,
        )
        self.reload_config = (
            None if reload_config is None else lambda: self._for_role(reload_config())
        )
        self.cluster: Any = None  # the JetStreamClient with settings { cluster_servers }
        self.console = console  # False: no signal or console handlers (a Windows service)
        self.data_dir = Path(config.settings["data_dir"])
        self.lock = DaemonLock(self.data_dir)
        self.engine: Engine | None = None
        self.pipeline: Pipeline | None = None
        self.listeners: list[tuple[Any, Any]] = []
        self.metrics: MetricsServer | None = None
        self.control: ControlServer | None = None
        self.stop_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped = threading.Event()  # run() has drained and closed everything
        self.on_started: Callable[[], None] | None = None  # after the banner (the service)
        self._stop_requested = False
        self.signals = 0
        self.reload_state: dict[str, Any] = {
            "success": 1,
            "timestamp": 0.0,
            "total": 0,
            "failed_total": 0,
            "errors": [],
        }

    # -- start-up -------------------------------------------------------------------------
    def _for_role(self, config: Config) -> Config:
        """A delivery-only process has no inputs; the rest of the configuration is the same."""
        return dataclasses.replace(config, inputs=[]) if self.role == "deliver" else config

    def _prepare(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create data_dir {self.data_dir}: {exc.strerror}") from exc
        self.lock.acquire()

    def _build(self) -> None:
        loop = asyncio.get_running_loop()
        pool = self._start_parsers(loop)  # first: no other thread is running yet (fork)
        wake = self._wake_from_thread(loop)
        try:
            self.cluster = connect_cluster(self.config, self.log)  # a thread: after the fork
            self.engine = Engine(
                self.data_dir,
                self.config.base_dir,
                self.plugins.outputs,
                self.log,
                on_progress=wake,
                cluster=self.cluster,
                deliver=self.role != "receive",
            )
            self.engine.open(self.config.outputs)
        except BaseException:
            if pool is not None:
                pool.close()
            raise
        table = compile_routes(self.config)
        self.pipeline = Pipeline(self.engine, table, self.data_dir, self.log, pool)

    def _plugins_start(self) -> bool:
        """Log what failed to load, then call every plugin's ``dsrouter_startup``."""
        for problem in self.plugins.problems:
            self.log.warning("plugin_load_failed", problem=problem)
        self.plugins.run_hook("dsrouter_startup", self._run_context(), self.log)
        return True

    def _run_context(self) -> RunContext:
        return RunContext(self.data_dir, self.config.base_dir, self.log)

    def _start_parsers(self, loop: asyncio.AbstractEventLoop) -> ParserPool | None:
        """``workers`` parser processes (none: parse on the event loop)."""
        count = parser_count(self.config.settings.get("workers"))
        if count == 0 or not self.config.inputs:
            return None

        def answered() -> None:  # on a reader thread
            try:
                loop.call_soon_threadsafe(self._on_answers)
            except RuntimeError:  # the loop has closed: the daemon is gone
                pass

        return ParserPool(self.config, count, answered)

    def _on_answers(self) -> None:
        if self.pipeline is not None and self.pipeline.pooled is not None:
            self.pipeline.pooled.on_answers()

    def _wake_from_thread(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Workers call this after progress: a paused pipeline retries its held batches."""

        def wake() -> None:
            if self.pipeline is not None and self.pipeline.paused:
                loop.call_soon_threadsafe(self.pipeline.tick)

        return wake

    async def _start_inputs(self, blocks) -> None:
        assert self.pipeline is not None
        for block in blocks:
            listener = await self._start_input(block)
            self.listeners.append((block, listener))
            self.pipeline.listeners.append(listener)

    async def _start_input(self, block) -> Any:
        assert self.pipeline is not None
        kind = self.plugins.inputs[block.type]
        options = dict(block.options)
        for key in kind.paths:  # files named relative to the configuration file
            if isinstance(options.get(key), str) and options[key]:
                options[key] = str(self.config.base_dir / Path(options[key]).expanduser())
        try:
            listener = kind.factory(block.name, options, self.pipeline.sink_for(block.name))
            await listener.start()
        except StartupError:
            raise
        except Exception as exc:  # a plugin's bug: one line naming it, never a traceback
            by = f"plugin '{kind.plugin}'" + (
                f" ({kind.distribution})" if kind.distribution else ""
            )
            raise StartupError(
                f"input '{block.name}' ({block.type}, {by}) failed to start: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return listener

    async def _start_servers(self) -> None:
        self.control = ControlServer(self.data_dir, self.handle_control)
        await self.control.start()
        address = self.config.settings.get("metrics")
        if address:
            self.metrics = MetricsServer(address[0], address[1], self.snapshot, self.health)
            await self.metrics.start()

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Start everything, serve until SIGTERM/SIGINT, then drain and stop cleanly."""
        try:
            self._prepare()
            started = False
            try:
                self._build()
                started = self._plugins_start()
                self.stop_event = asyncio.Event()
                self.loop = asyncio.get_running_loop()
                if self._stop_requested:
                    self.stop_event.set()
                if self.console:
                    self._install_signals()
                tune_runtime()
                await self._start_inputs(self.config.inputs)
                await self._start_servers()
                self._banner()
                if self.on_started is not None:
                    self.on_started()
                await self._serve()
                await self._drain()
            finally:
                self._shutdown()
                if started:
                    self.plugins.run_hook("dsrouter_shutdown", self._run_context(), self.log)
                self.lock.release()
        finally:
            self.stopped.set()

    def request_stop(self) -> None:
        """Start the orderly shutdown from any thread (a service stop, the ``stop`` request)."""
        self._stop_requested = True
        loop, event = self.loop, self.stop_event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed: the daemon has already stopped
                pass

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        if sys.platform == "win32":
            self._install_windows_stop(loop)
            return
        handlers: dict[int, Callable[[], object]] = {
            signal.SIGTERM: self._on_stop,
            signal.SIGINT: self._on_stop,
        }
        if hasattr(signal, "SIGHUP"):
            handlers[signal.SIGHUP] = lambda: loop.create_task(self.reload())
        for sig, handler in handlers.items():
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):  # Windows' proactor loop
                signal.signal(sig, lambda *_, h=handler: loop.call_soon_threadsafe(h))

    def _install_windows_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ctrl-C (SIGINT) and Ctrl-Break (SIGBREAK) drain; so does closing the console window
        (or logging off, or shutting down), whose handler returns once the drain is done."""
        if sys.platform != "win32" or threading.current_thread() is not threading.main_thread():
            return  # embedded in another program: it stops us with request_stop()
        for sig in (signal.SIGINT, signal.SIGBREAK):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(self._on_stop))
        install_console_handler(self._console_closing)

    def _console_closing(self, event: int) -> bool:
        """On the system's handler thread: drain before Windows ends the process."""
        self.log.info("console_closing", ctrl_event=event)
        self.request_stop()
        self.stopped.wait(2 * self.shutdown_timeout + 2.0)
        return True

    def _on_stop(self) -> None:
        self.signals += 1
        if self.signals > 1:
            self._exit_now()
        assert self.stop_event is not None
        self.stop_event.set()

    def _exit_now(self, *_: object) -> None:
        """A second Ctrl-C: leave now; the disk queues recover at the next start."""
        self.log.warning("daemon_killed", help="second stop signal: exiting at once")
        sys.stderr.flush()
        os._exit(130)

    def _exit_on_next_signal(self) -> None:
        """While the loop is blocked joining workers, signals must still reach us."""
        if not self.console:
            return
        sigs = [signal.SIGTERM, signal.SIGINT]
        if sys.platform == "win32":
            sigs.append(signal.SIGBREAK)
        for sig in sigs:
            try:
                signal.signal(sig, self._exit_now)
            except (ValueError, OSError):  # not the main thread (embedded use): nothing to do
                pass

    async def _serve(self) -> None:
        assert self.stop_event is not None and self.pipeline is not None and self.engine
        loop = asyncio.get_running_loop()
        next_stats = loop.time() + STATS_INTERVAL
        while not self.stop_event.is_set():
            try:
                await asyncio.wait_for(self.stop_event.wait(), timeout=TICK)
            except TimeoutError:
                pass
            self.pipeline.tick()
            self.engine.reap()
            if loop.time() >= next_stats:
                next_stats += STATS_INTERVAL
                self.log.info("stats_reported", **self.summary())

    async def _drain(self) -> None:
        """Stop accepting; read open connections until idle or ``shutdown_timeout``. A paused
        connection is not idle: it waits for the engine to release what it holds."""
        assert self.pipeline is not None and self.engine is not None
        self.log.info("daemon_stopping", connections=self._open_connections())
        for _, listener in self.listeners:
            getattr(listener, "stop_accepting", lambda: None)()
        self.engine.lift_limits()
        self.pipeline.tick()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        while loop.time() < deadline and (not self._all_idle() or self.pipeline.paused):
            await asyncio.sleep(0.05)
            self.pipeline.tick()

    @property
    def shutdown_timeout(self) -> float:
        """``settings.shutdown_timeout`` (the checker fills in its default)."""
        return float(self.config.settings["shutdown_timeout"])

    def _all_idle(self) -> bool:
        idle = [getattr(lst, "idle_for", lambda: float("inf"))() for _, lst in self.listeners]
        return all(i >= IDLE_GRACE for i in idle)

    def _open_connections(self) -> int:
        return sum(len(getattr(lst, "connections", ())) for _, lst in self.listeners)

    def _shutdown(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.control is not None:
            self.control.close()
        for _, listener in self.listeners:
            listener.close()
        if self.pipeline is not None:
            self.pipeline.finish(self.shutdown_timeout)
        if self.engine is not None:
            self._exit_on_next_signal()
            left = self.engine.close(time.monotonic() + self.shutdown_timeout)
            if self.listeners:
                self.log.info("daemon_stopped", queued=left, **self.summary())
        if self.cluster is not None:
            release_cluster(self.cluster)

    def _banner(self) -> None:
        out = [f"dsrouter running with {self.source}"]
        for block, listener in self.listeners:
            host, port = listener.address[:2]
            extra = ""
            if getattr(listener, "recv_buffer", None):
                extra = f"  recv_buffer {listener.recv_buffer}"
            out.append(f"  input  {block.name}  {block.type}  {host}:{port}{extra}")
        assert self.engine is not None
        for name, lane in self.engine.lanes.items():
            queue = self.engine.queue_type(lane)
            out.append(f"  output {name}  {_describe(lane.output)}  queue={queue}")
        if self.cluster is not None:
            opts = self.cluster.options
            out.append(
                f"  cluster {', '.join(opts.display_servers)}  stream={opts.stream}  "
                f"role={self.role}"
            )
        if self.metrics is not None:
            host, port = self.metrics.address
            out.append(f"  metrics http://{host}:{port}/metrics  http://{host}:{port}/healthz")
        out.append(f"  data   {self.data_dir}")
        out.append(_STOP_HELP)
        print("\n".join(out), flush=True)
        for block, listener in self.listeners:
            host, port = listener.address[:2]
            self.log.info(
                "listener_started", input=block.name, type=block.type, address=f"{host}:{port}"
            )


def _describe(output: Any) -> str:
    """``output.describe()``, or its type when a plugin's ``describe`` raises."""
    try:
        return str(output.describe())
    except Exception as exc:  # the banner must not crash on a plugin's bug
        return f"{type(output).__name__} (describe() raised {type(exc).__name__})"


_STOP_HELP = (
    "Stop with Ctrl+C or Ctrl+Break; reload with dsrouter reload."
    if sys.platform == "win32"
    else "Stop with Ctrl+C (SIGINT) or SIGTERM; reload with SIGHUP or dsrouter reload."
)


def run_daemon(
    config: Config,
    plugins: Plugins,
    log: Any,
    source: str,
    reload_config: Callable[[], Config] | None = None,
    role: str = "all",
) -> int:
    """Run until stopped; StartupError propagates to the CLI (exit 3)."""
    daemon = Daemon(config, plugins, log, source, reload_config, role=role)
    asyncio.run(daemon.run())
    sys.stdout.flush()
    return 0
