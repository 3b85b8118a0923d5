"""The ``file`` output's maintenance: compression, retention and idle rotation, off the worker.

One background thread per output walks the directory tree under the template's fixed prefix
(only directories and files the template could have produced, never a symlink), a bounded
number of entries and compressed bytes per step, resuming where the last step stopped; a
directory where the worker just rotated a file is tidied at once. In each leaf directory it
removes stale ``.gz.tmp`` files, deletes files last written more than ``retain`` ago, keeps
at most ``keep`` rotated files per active file, renames (or, with ``{date}``/``{hour}`` in the
path, leaves in place) active files of an earlier period nobody writes any more, and gzips
finished files.

The worker and this thread agree through :class:`Shared` (one per directory root in the
process, so the old and new output of a reload agree too): an active file is renamed, deleted
or compressed only while no worker has it open, and a worker that wants a file being
compressed gets ``EBUSY`` (a transient error: those events are retried).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .file_path import PathTemplate
from .file_rotate import Policy, compress, free_name, ms_stamp, same_content


class Shared:
    """Which active files are open (by any worker) or claimed (by a compression)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: Counter[str] = Counter()
        self.claimed: set[str] = set()
        self.work = threading.Lock()  # one maintenance unit at a time under a root
        self.refs = 0

    def idle(self, path: str) -> bool:
        """Call with ``lock`` held: no worker has ``path`` open and nobody claimed it."""
        return path not in self.open and path not in self.claimed

    def opened(self, path: str) -> None:
        """Call with ``lock`` held; raises EBUSY while ``path`` is being compressed."""
        if path in self.claimed:
            raise OSError(errno.EBUSY, "being compressed, retried shortly", path)
        self.open[path] += 1

    def forget(self, path: str) -> None:
        """Call with ``lock`` held: one opener of ``path`` closed it."""
        self.open[path] -= 1
        if self.open[path] <= 0:
            del self.open[path]


_REGISTRY: dict[str, Shared] = {}
_REGISTRY_LOCK = threading.Lock()


def acquire(root: str) -> Shared:
    with _REGISTRY_LOCK:
        shared = _REGISTRY.setdefault(root, Shared())
        shared.refs += 1
        return shared


def release(root: str) -> None:
    with _REGISTRY_LOCK:
        shared = _REGISTRY.get(root)
        if shared is not None:
            shared.refs -= 1
            if shared.refs <= 0:
                del _REGISTRY[root]


@dataclass
class Budget:
    """What one sweep step may still do; ``short`` once something was left for later,
    ``failed`` when a compression failed (a full disk: tried again a little later)."""

    entries: int
    bytes: int
    short: bool = False
    failed: bool = False

    @property
    def again_in(self) -> float | None:
        """How soon to come back, or None for the regular interval."""
        return 5.0 if self.failed else 1.0 if self.short else None


@dataclass
class _Group:
    """The files of one active name in a directory."""

    active: os.stat_result | None = None
    rotated: dict[str, dict[str, os.stat_result]] = field(default_factory=dict)  # stamp → form
    compressed: os.stat_result | None = None  # the active name + .gz
    temps: list[str] = field(default_factory=list)


class Maintenance:
    """The background thread; :meth:`sweep` and :meth:`tidy` also run it inline (tests)."""

    def __init__(
        self,
        template: PathTemplate,
        policy: Policy,
        shared: Shared,
        now: Callable[[], float],
        log: Any,
        interval: float = 60.0,
        entries: int = 10_000,
        bytes_per_step: int = 256 << 20,
    ) -> None:
        self.template, self.policy, self.shared, self.now = template, policy, shared, now
        self.log, self.interval = log, interval
        self.entries, self.bytes_per_step = entries, bytes_per_step
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.pending: OrderedDict[str, None] = OrderedDict()
        self.stack: list[tuple[str, int]] = []
        self.thread: threading.Thread | None = None
        self.errors = 0
        # a file whose compression failed -> (monotonic time of the next try, delay): a full
        # disk is tried again soon, a file that always fails only every few minutes
        self.backoff: dict[str, tuple[float, float]] = {}

    # -- the thread -----------------------------------------------------------------------
    def start(self, name: str) -> None:
        self.thread = threading.Thread(target=self._run, name=f"file-{name}-sweep", daemon=True)
        self.thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        with self.cond:
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout)

    def rotated(self, directory: str) -> None:
        """The worker rotated a file in ``directory``: tidy it soon (bounded backlog)."""
        with self.cond:
            if len(self.pending) < 1024:
                self.pending[directory] = None
            self.cond.notify()

    def _run(self) -> None:
        next_step = time.monotonic()
        while not self.stop.is_set():
            with self.cond:
                wait = next_step - time.monotonic()
                if not self.pending and wait > 0:
                    self.cond.wait(wait)
                dirs = list(self.pending)
                self.pending.clear()
            for directory in dirs:
                budget = self._budget()
                self._guarded(self.tidy, directory, budget)
                if budget.again_in is not None:  # left over: the walk comes by soon
                    next_step = min(next_step, time.monotonic() + budget.again_in)
            if time.monotonic() >= next_step and not self.stop.is_set():
                budget = self._budget()
                done = self._guarded(self.step, budget)
                again = budget.again_in or (self.interval if done else 1.0)
                next_step = time.monotonic() + again

    def _budget(self) -> Budget:
        return Budget(self.entries, self.bytes_per_step)

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            with self.shared.work:
                return fn(*args)
        except Exception as exc:  # maintenance trouble is logged, never a crash
            self.errors += 1
            self._warn("file_maintenance_failed", error=str(exc))
            return True

    def _warn(self, event: str, **kw: Any) -> None:
        if self.log is not None and (self.errors <= 10 or self.errors % 100 == 0):
            self.log.warning(event, root=self.template.root, **kw)

    # -- walking --------------------------------------------------------------------------
    def sweep(self) -> None:
        """One full pass, however many steps it takes (what failed waits for the next)."""
        self.step()
        while self.stack and not self.stop.is_set():
            self.step()

    def step(self, budget: Budget | None = None) -> bool:
        """Walk on for one budget's worth; True when a pass ended with nothing left over."""
        budget = budget or self._budget()
        if not self.stack:
            self.stack.append((self.template.root, 0))
        while self.stack and budget.entries > 0 and not self.stop.is_set():
            directory, level = self.stack.pop()
            if level == self.template.depth - 1:
                self.tidy(directory, budget)
            else:
                self._descend(directory, level, budget)
        return not self.stack and budget.again_in is None

    def _descend(self, directory: str, level: int, budget: Budget) -> None:
        for entry in _scan(directory):
            budget.entries -= 1
            if entry.is_dir(follow_symlinks=False) and self.template.ours(entry.name, level):
                self.stack.append((entry.path, level + 1))

    # -- one leaf directory ---------------------------------------------------------------
    def tidy(self, directory: str, budget: Budget | None = None) -> None:
        """Retention, ``keep``, finishing and compression for one leaf directory."""
        budget = budget or self._budget()
        now = self.now()
        groups = self._groups(directory, budget)
        removed = 0
        for active, group in groups.items():
            path = os.path.join(directory, active)
            for temp in group.temps:  # one maintenance unit at a time: never in progress
                removed += _unlink(os.path.join(directory, temp))
            removed += self._expire(path, group, now)
            removed += self._keep(path, group)
            self._finish(directory, active, group, now, budget)
        if removed and directory != self.template.root:
            with self.shared.lock, contextlib.suppress(OSError):
                os.rmdir(directory)  # only when empty: a host that went away leaves nothing

    def _groups(self, directory: str, budget: Budget) -> dict[str, _Group]:
        groups: dict[str, _Group] = {}
        for entry in _scan(directory):
            budget.entries -= 1
            if not entry.is_file(follow_symlinks=False):
                continue
            found = self.template.classify(entry.name)
            if found is None:
                continue
            active, stamp, suffix = found
            group = groups.setdefault(active, _Group())
            if suffix == ".gz.tmp":
                group.temps.append(entry.name)
                continue
            st = entry.stat(follow_symlinks=False)
            if stamp is not None:
                group.rotated.setdefault(stamp, {})[suffix] = st
            elif suffix:
                group.compressed = st
            else:
                group.active = st
        return groups

    def _expire(self, path: str, group: _Group, now: float) -> int:
        """Delete every file of the group last written more than ``retain`` ago."""
        if not self.policy.retain:
            return 0
        cutoff = now - self.policy.retain
        removed = 0
        if group.compressed is not None and group.compressed.st_mtime < cutoff:
            removed += _unlink(path + ".gz")
            group.compressed = None
        for stamp, forms in list(group.rotated.items()):
            if max(st.st_mtime for st in forms.values()) < cutoff:
                removed += self._drop_rotated(path, stamp, forms)
                del group.rotated[stamp]
        if group.active is not None and group.active.st_mtime < cutoff:
            with self.shared.lock:
                mtime = _mtime(path)
                if self.shared.idle(path) and mtime is not None and mtime < cutoff:
                    removed += _unlink(path)
                    group.active = None
        return removed

    def _keep(self, path: str, group: _Group) -> int:
        """At most ``keep`` rotated files per active file: the oldest go first."""
        keep = self.policy.keep
        if not keep or len(group.rotated) <= keep:
            return 0
        removed = 0
        for stamp in sorted(group.rotated)[: len(group.rotated) - keep]:
            removed += self._drop_rotated(path, stamp, group.rotated.pop(stamp))
        return removed

    def _drop_rotated(self, path: str, stamp: str, forms: dict[str, os.stat_result]) -> int:
        directory, active = os.path.split(path)
        name = os.path.join(directory, self.template.rotated_name(active, stamp))
        return sum(_unlink(name + suffix) for suffix in forms)

    def _finish(
        self, directory: str, active: str, group: _Group, now: float, budget: Budget
    ) -> None:
        """Rename or compress what will not be written any more."""
        path = os.path.join(directory, active)
        st = group.active
        if st is not None and self.policy.finished(st.st_mtime, now):
            if self.policy.in_place:
                if self.policy.compress:
                    self._compress(path, active, now, budget, claim=True)
            else:
                self._rename_idle(path, active, now, budget)
        if self.policy.compress:
            for stamp, forms in sorted(group.rotated.items()):
                if "" in forms:
                    rotated = os.path.join(directory, self.template.rotated_name(active, stamp))
                    self._compress(rotated, active, now, budget, claim=False)

    def _rename_idle(self, path: str, active: str, now: float, budget: Budget) -> None:
        with self.shared.lock:
            mtime = _mtime(path)
            if mtime is None or not self.shared.idle(path) or not self.policy.finished(mtime, now):
                return
            stamp = self.policy.time_stamp(mtime)
            target = free_name(self.template, os.path.dirname(path), active, stamp, now)
            os.rename(path, target)
        if self.policy.compress:
            self._compress(target, active, now, budget, claim=False)

    def _compress(self, src: str, active: str, now: float, budget: Budget, claim: bool) -> None:
        """gzip one finished file; ``claim`` it first when it has an active name."""
        if budget.bytes <= 0 or self.stop.is_set():
            budget.short = True
            return
        retry = self.backoff.get(src)
        if retry is not None and time.monotonic() < retry[0]:
            return
        if claim and not self._claim(src, now):
            return
        try:
            dst = src + ".gz"
            if os.path.lexists(dst):
                if same_content(dst, src):  # a crash came between the rename and the unlink
                    _unlink(src)
                    return
                directory = os.path.dirname(src)
                dst = free_name(self.template, directory, active, ms_stamp(now), now) + ".gz"
            budget.bytes -= _size(src)
            compress(src, dst, self.stop)
            self.backoff.pop(src, None)
        except OSError as exc:
            self.errors += 1
            budget.failed = True
            self._back_off(src)
            self._warn("file_compress_failed", file=src, error=exc.strerror or str(exc))
        finally:
            if claim:
                with self.shared.lock:
                    self.shared.claimed.discard(src)

    def _back_off(self, src: str) -> None:
        if len(self.backoff) >= 1024:
            self.backoff.clear()
        delay = min(600.0, 2 * self.backoff.get(src, (0.0, 2.5))[1])
        self.backoff[src] = (time.monotonic() + delay, delay)

    def _claim(self, path: str, now: float) -> bool:
        with self.shared.lock:
            mtime = _mtime(path)
            if mtime is None or not self.shared.idle(path) or not self.policy.finished(mtime, now):
                return False
            self.shared.claimed.add(path)
            return True


def _scan(directory: str) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
