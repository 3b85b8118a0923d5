"""The dead-letter store: events an output can never deliver, kept with why, per output.

One JSON lines file per output, ``<directory>/<output>.jsonl``; each line is one dead letter::

    {"dlq_id": "1764291234567890-000000", "output": "siem", "time": "2026-11-28T01:00:00.123+00:00",
     "reason": "HTTP 400: ...", "attempts": 3, "response": {"status": 400, ...}, "event": {...}}

``dlq_id`` is unique and sorts in time order: the microsecond of the :meth:`DeadLetters.add` call
(never below the previous one of this process) and a counter within the call. Values that are not
JSON (bytes, a ``Decimal``, a huge int) are stored as their ``str()``: a dead letter never fails
on the value the output choked on.

An append is one ``os.write`` of all its lines and takes whole lines or nothing: when it fails
part way (a full disk) the file is truncated back and the ``OSError`` re-raised, so the caller
keeps the events queued and tries again later. Only one process writes a store at a time (the
daemon, or the CLI when no daemon runs); within it every method is thread-safe. No file is kept
open between calls, so a rewrite can replace it (``os.replace``) on every platform.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

Event = dict[str, Any]

GiB = 1 << 30
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SUFFIX = ".jsonl"
_PER_US = 1_000_000  # letters numbered within one microsecond (six digits)
_OPTS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
_BINARY = getattr(os, "O_BINARY", 0)  # no newline translation on Windows


class DeadLetterFull(OSError):
    """The store holds ``max_bytes`` already: handled like a full disk (errno ``ENOSPC``)."""

    def __init__(self, used: int, needed: int, limit: int) -> None:
        super().__init__(
            errno.ENOSPC,
            f"dead-letter store full: {used} bytes used, {needed} more needed, limit {limit}",
        )


@dataclass(frozen=True, slots=True)
class Letter:
    """An event to dead-letter, with the reason and how often delivery was tried."""

    event: Event
    reason: str
    attempts: int
    response: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter as read back from the store."""

    dlq_id: str
    output: str
    time: str
    reason: str
    attempts: int
    response: dict[str, Any] | None
    event: Event


# ``DeadLetters.list`` shadows the builtin inside the class body: these aliases name the types.
Letters = list[StoredLetter]
Events = list[Event]
Names = list[str]


class DeadLetters:
    """The dead-letter files of every output under ``directory``.

    ``max_bytes`` caps the size of all files together (0: no cap). Counters for metrics:
    ``refused_full`` (adds refused with :class:`DeadLetterFull`) and ``corrupt_lines`` (lines
    skipped by reads because they do not parse; counted each time one is read).
    """

    def __init__(self, directory: Path, max_bytes: int = GiB) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.refused_full = 0
        self.corrupt_lines = 0
        self._lock = threading.Lock()
        self._last_us = 0
        # output -> (st_dev, st_ino, size) of an append whose truncation failed: cut next time
        self._torn: dict[str, tuple[int, int, int]] = {}
        # output -> ((st_ino, st_size, st_mtime_ns), lines): counts() without rereading
        self._counted: dict[str, tuple[tuple[int, int, int], int]] = {}

    def path(self, output: str) -> Path:
        """The file of ``output``; ValueError unless the name is an identifier."""
        if not isinstance(output, str) or not _NAME.fullmatch(output):
            raise ValueError(f"invalid output name for the dead-letter store: {output!r}")
        return self.directory / (output + _SUFFIX)

    # --- writing -----------------------------------------------------------------------------

    def add(self, output: str, letters: Sequence[Letter]) -> builtins.list[str]:
        """Append ``letters`` to the file of ``output``; return their ids.

        Raises :class:`DeadLetterFull` when they would take the store over ``max_bytes`` and
        ``OSError`` when the write failed; in both cases nothing of them is stored.
        """
        path = self.path(output)
        if not letters:
            return []
        with self._lock:
            ids = self._ids(len(letters))
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            data = b"".join(
                _dumps(_record(i, output, stamp, letter))
                for i, letter in zip(ids, letters, strict=True)
            )
            self.directory.mkdir(parents=True, exist_ok=True)
            used = self._used()
            if self.max_bytes and used + len(data) > self.max_bytes:
                self.refused_full += 1
                raise DeadLetterFull(used, len(data), self.max_bytes)
            self._append(output, path, data)
        return ids

    def _ids(self, n: int) -> builtins.list[str]:
        us = max(time.time_ns() // 1000, self._last_us + 1)
        self._last_us = us + (n - 1) // _PER_US
        return [f"{us + i // _PER_US:016d}-{i % _PER_US:06d}" for i in range(n)]

    def _used(self) -> int:
        total = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as it:
            for entry in it:
                if entry.name.endswith((_SUFFIX, _SUFFIX + ".tmp")):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    def _append(self, output: str, path: Path, data: bytes) -> None:
        """One append of whole lines or nothing (truncated back when the write fails)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _BINARY, 0o640)
        try:
            self._repair(output, fd)
            st = os.fstat(fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except BaseException:
                try:
                    os.ftruncate(fd, st.st_size)
                except OSError:
                    self._torn[output] = (st.st_dev, st.st_ino, st.st_size)
                raise
        finally:
            os.close(fd)

    def _repair(self, output: str, fd: int) -> None:
        """Cut the tail an earlier failed append left, if the file is still that one."""
        torn = self._torn.get(output)
        if torn is None:
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == torn[:2] and st.st_size > torn[2]:
            os.ftruncate(fd, torn[2])
        del self._torn[output]

    # --- reading -----------------------------------------------------------------------------

    def outputs(self) -> builtins.list[str]:
        """The outputs that have dead letters, sorted by name."""
        names = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as it:
            for entry in it:
                name = entry.name[: -len(_SUFFIX)]
                if entry.name.endswith(_SUFFIX) and _NAME.fullmatch(name):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_size:
                            names.append(name)
        return sorted(names)

    def list(self, output: str | None = None) -> Iterator[StoredLetter]:
        """The dead letters of ``output`` (of every output when None), oldest first per file.

        A line that does not parse is skipped and counted in ``corrupt_lines``.
        """
        for name in [output] if output is not None else self.outputs():
            yield from self._read(name)

    def get(self, dlq_id: str) -> StoredLetter | None:
        """The dead letter with this id, or None."""
        needle = f'"dlq_id":"{dlq_id}"'.encode()
        for name in self.outputs():
            for letter in self._read(name, needle):
                if letter.dlq_id == dlq_id:
                    return letter
        return None

    def counts(self) -> dict[str, int]:
        """Dead letters (lines, a corrupt one included) per output that has any."""
        out = {}
        for name in self.outputs():
            with contextlib.suppress(FileNotFoundError):
                out[name] = self._count(name)
        return out

    def _read(self, output: str, needle: bytes | None = None) -> Iterator[StoredLetter]:
        path = self.path(output)
        with self._lock:  # the size now covers whole appends only
            try:
                fh = open(path, "rb")  # closed by the with below, outside the lock
            except FileNotFoundError:
                return
            remaining = os.fstat(fh.fileno()).st_size
        with fh:
            while remaining > 0:
                line = fh.readline(remaining)
                if not line:
                    break
                remaining -= len(line)
                if needle is not None and needle not in line:
                    continue
                letter = _parse(output, line)
                if letter is None:
                    with self._lock:
                        self.corrupt_lines += 1
                    continue
                yield letter

    def _count(self, output: str) -> int:
        path = self.path(output)
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._counted.get(output)
            if cached is not None and cached[0] == key:
                return cached[1]
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        self._counted[output] = (key, lines)
        return lines

    # --- removing ----------------------------------------------------------------------------

    def remove(self, output: str, dlq_ids: set[str]) -> int:
        """Delete these dead letters of ``output`` (a rewrite of its file); return how many."""
        path = self.path(output)
        if not dlq_ids:
            return 0
        with self._lock:
            return self._rewrite(output, path, dlq_ids)

    def _rewrite(self, output: str, path: Path, dlq_ids: set[str]) -> int:
        tmp = path.with_name(path.name + ".tmp")
        removed = kept = 0
        try:
            with open(path, "r+b") as src:
                self._repair(output, src.fileno())
                with open(tmp, "wb") as dst:
                    for line in src:
                        if _id_of(line) in dlq_ids:
                            removed += 1
                        else:
                            dst.write(line)
                            kept += 1
                    dst.flush()
                    os.fsync(dst.fileno())
            if removed and kept:
                os.replace(tmp, path)
                _sync_dir(self.directory)
            elif removed:
                path.unlink()
        except FileNotFoundError:
            return 0
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return removed

    def select(self, output: str | None, ids: Iterable[str] | None) -> Letters:
        """The dead letters of ``output`` (every output when None), only ``ids`` when given."""
        wanted = set(ids) if ids else None
        return [s for s in self.list(output) if wanted is None or s.dlq_id in wanted]

    def discard(self, letters: Iterable[StoredLetter]) -> int:
        """Delete these dead letters, whatever their outputs; return how many."""
        ids: dict[str, set[str]] = {}
        for s in letters:
            ids.setdefault(s.output, set()).add(s.dlq_id)
        return sum(self.remove(output, wanted) for output, wanted in ids.items())

    def replay(
        self, letters: Sequence[StoredLetter], publish: Callable[[str, Events], bool]
    ) -> tuple[int, Names]:
        """Put each output's letters back with ``publish(output, events)`` (False: no such
        output), then delete them; return ``(replayed, skipped outputs)``."""
        by_output: dict[str, Letters] = {}
        for s in letters:
            by_output.setdefault(s.output, []).append(s)
        done, skipped = 0, []
        for output, items in sorted(by_output.items()):
            if publish(output, [s.event for s in items]):
                done += self.discard(items)
            else:
                skipped.append(output)
        return done, skipped

    def purge(self, output: str | None = None) -> int:
        """Delete every dead letter of ``output`` (of every output when None); return how many."""
        names = [output] if output is not None else self.outputs()
        paths = [self.path(name) for name in names]
        total = 0
        with self._lock:
            for name, path in zip(names, paths, strict=True):
                try:
                    total += self._count(name)
                    path.unlink()
                except FileNotFoundError:
                    continue
                self._torn.pop(name, None)
                self._counted.pop(name, None)
        return total


def _record(dlq_id: str, output: str, stamp: str, letter: Letter) -> dict[str, Any]:
    response = dict(letter.response) if letter.response is not None else None
    return {
        "dlq_id": dlq_id,
        "output": output,
        "time": stamp,
        "reason": str(letter.reason),
        "attempts": int(letter.attempts),
        "response": response,
        "event": letter.event,
    }


def _dumps(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=str, option=_OPTS)
    except orjson.JSONEncodeError:  # a huge int, a non-str key of an odd type, a cycle...
        return orjson.dumps(_plain(record, 0), default=str, option=_OPTS)


def _plain(value: Any, depth: int) -> Any:
    """``value`` as plain JSON types, anything else as its ``str()``."""
    if depth > 64:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, bool | float | str) or value is None:
        return value
    if isinstance(value, int) and -(1 << 63) <= value < (1 << 64):
        return value
    return str(value)


def _parse(output: str, line: bytes) -> StoredLetter | None:
    """One stored line, or None when it is torn or not a dead letter."""
    if not line.endswith(b"\n"):
        return None
    try:
        rec = orjson.loads(line)
        letter = StoredLetter(
            dlq_id=rec["dlq_id"],
            output=output,
            time=rec["time"],
            reason=rec["reason"],
            attempts=rec["attempts"],
            response=rec.get("response"),
            event=rec["event"],
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    ok = isinstance(letter.dlq_id, str) and isinstance(letter.event, dict)
    return letter if ok else None


def _id_of(line: bytes) -> str | None:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    value = rec.get("dlq_id") if isinstance(rec, dict) else None
    return value if isinstance(value, str) else None


def _sync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
