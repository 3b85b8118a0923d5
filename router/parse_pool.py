"""The parser processes seen from the daemon's main process.

The main process keeps everything that must have one owner — sockets and framing, throttle
budgets, the queues, the outputs — and hands the CPU-heavy middle (parse, normalize, route,
serialize) to ``workers`` processes running :func:`dsrouter.parse_worker.serve`. A batch is a
list of framed chunks; its answer is each output's JSON payloads, committed as bytes.

* Each process has one pipe and two threads here: a writer (so a full pipe never blocks the
  event loop) and a reader that queues answers and wakes the loop.
* Batches get increasing ids; the pipeline commits answers in id order, so events reach the
  queues in the order they arrived, whichever process parsed them.
* A process that dies (killed, out of memory) loses nothing: its unanswered batches are
  parsed in the main process from the copy kept here, and it is started again (at most
  :data:`RESTARTS` times, then the pool works with the processes it has left).
* At a stop, a process that does not answer (hung, stopped) cannot hold the daemon up:
  once ``shutdown_timeout`` has passed its batches are parsed here, and it is killed if it
  has not exited 2 s after being told to (:meth:`ParserPool.close`).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from dsrouter.parse_worker import Item, Routed, Sender, serve

RESTARTS = 3


def parser_count(setting: int | None) -> int:
    """``settings.workers``, or its default: one parser process per core on a machine with
    several (the main process keeps the sockets, queues and outputs; measured on 2 cores, 2
    parsers beat 1), none on one core (parsing stays on the loop)."""
    if setting is not None:
        return setting
    cores = os.cpu_count() or 1
    return min(cores, 8) if cores >= 2 else 0


class _Proc:
    """One parser process, its pipe and the batches it has not answered."""

    def __init__(self, index: int, ctx: Any, config: Any) -> None:
        self.index = index
        self.conn, child = ctx.Pipe(duplex=True)
        forked = ctx.get_start_method() == "fork"
        self.process = ctx.Process(
            target=serve, args=(child, config, forked), name=f"dsrouter-parser-{index}"
        )
        self.process.daemon = True
        self.process.start()
        child.close()
        self.outbox = Sender(self.conn, name=f"parser-{index}-writer")
        self.unanswered: dict[int, tuple[str, list[Item]]] = {}
        self.alive = True


class ParserPool:
    """``size`` parser processes; answers reach ``wake`` (called from reader threads)."""

    def __init__(self, config: Any, size: int, wake: Callable[[], None]) -> None:
        method = "spawn" if sys.platform == "win32" else "fork"
        self._ctx = multiprocessing.get_context(method)
        self._config, self._wake = config, wake
        self.answers: queue.SimpleQueue[Routed | tuple] = queue.SimpleQueue()
        self.restarts = 0
        self.procs = [self._start(i) for i in range(size)]

    def _start(self, index: int) -> _Proc:
        proc = _Proc(index, self._ctx, self._config)
        threading.Thread(
            target=self._read, args=(proc,), name=f"parser-{index}-reader", daemon=True
        ).start()
        return proc

    # -- the reader thread ----------------------------------------------------------------
    def _read(self, proc: _Proc) -> None:
        while True:
            try:
                answer = pickle.loads(proc.conn.recv_bytes())
            except (EOFError, OSError):
                break
            if answer.__class__ is tuple and answer[0] == "ready":  # ("ready", compiled)
                answer = ("ready", proc.index, answer[1])
            self.answers.put(answer)
            self._wake()
        self.answers.put(("lost", proc.index))
        self._wake()

    # -- used on the event loop -----------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return sum(len(p.unanswered) for p in self.procs)

    @property
    def capacity(self) -> int:
        """How many batches may be unanswered at once: two per live process."""
        return 2 * sum(1 for p in self.procs if p.alive)

    def send(self, batch: int, received_at: str, items: list[Item]) -> bool:
        """Hand a batch to the least busy live process; False when none is alive."""
        live = [p for p in self.procs if p.alive]
        if not live:
            return False
        proc = min(live, key=lambda p: len(p.unanswered))
        proc.unanswered[batch] = (received_at, items)
        proc.outbox.send(pickle.dumps((batch, received_at, items), 5))
        return True

    def answered(self, batch: int) -> tuple[str, list[Item]] | None:
        """Forget batch ``batch`` (answered); what was sent, if it was still unanswered."""
        for proc in self.procs:
            sent = proc.unanswered.pop(batch, None)
            if sent is not None:
                return sent
        return None

    def lost(self, index: int) -> dict[int, tuple[str, list[Item]]]:
        """Process ``index`` died: its unanswered batches (to parse here); start another
        in its place while restarts are left."""
        proc = self.procs[index]
        if not proc.alive:
            return {}
        proc.alive = False
        proc.outbox.stop()
        _reap(proc.process, 1.0)
        orphans, proc.unanswered = proc.unanswered, {}
        if self.restarts < RESTARTS:
            self.restarts += 1
            self.procs[index] = self._start(index)
        return orphans

    def reconfigure(self, config: Any) -> None:
        """Batches sent from now on are routed by ``config``."""
        self._config = config
        data = pickle.dumps(("config", config), 5)
        for proc in self.procs:
            if proc.alive:
                proc.outbox.send(data)

    def close(self, timeout: float = 2.0) -> None:
        """Tell every process to exit and wait for it (then make sure it has)."""
        for proc in self.procs:
            proc.alive = False
            proc.outbox.send(pickle.dumps(None))
            proc.outbox.stop()
        for proc in self.procs:
            _reap(proc.process, timeout)
            proc.conn.close()


def _reap(process: Any, timeout: float) -> None:
    """Wait up to ``timeout`` for ``process`` to exit, then kill it. Polls ``is_alive()``
    rather than ``join(timeout)``: a forked parser closes the sentinel descriptor it
    inherited, so ``join`` takes it for gone and waits in a blocking ``waitpid`` — forever,
    for a process that is hung or stopped."""
    deadline = time.monotonic() + timeout
    while process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if process.is_alive():
        process.kill()
        process.join()  # SIGKILL ends even a stopped process
