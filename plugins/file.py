"""The ``file`` output: events as JSON lines, in files whose path is templated from event fields.

``path = "archive/{module}/{host}/{date}.jsonl"`` is resolved under the daemon's ``data_dir``
(an absolute path is used as is). Every value substituted into the path comes from the event
and so from the sender: it is reduced to ``[A-Za-z0-9._-]``, may not start with a dot and is
capped in length, so no event can name a file outside the output's directory. The final path is
checked to lie under the template's fixed prefix as a second guard.

Outcomes are per file: the events of a path that can never be written (a name too long, a
directory in the way, an event that does not render or serialize) are rejected alone; a
transient error (a full disk, EACCES, EROFS) retries that file's events and those of the files
not yet written, while files already written count as delivered. ``reopen()`` (SIGHUP, e.g.
from logrotate's postrotate) closes every file so the next write opens it again by path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson

from dsrouter.api import (
    Event,
    Option,
    Output,
    OutputContext,
    OutputType,
    PartialFailure,
    PermanentFailure,
    RetryLater,
    hookimpl,
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_PART = 100
_DUMPS = orjson.dumps
_NL = orjson.OPT_APPEND_NEWLINE
_BINARY = getattr(os, "O_BINARY", 0)  # no newline translation on Windows
#: Errors of a path that no retry can fix: its events are rejected (dead-lettered). EEXIST comes
#: from makedirs when a file stands where a directory should be. Every other OSError (a full
#: disk, EACCES, EROFS, EIO, too many open files, a directory removed meanwhile) is transient.
_PERMANENT_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EINVAL, errno.ELOOP, errno.EEXIST}
)


def sanitize(value: Any) -> str:
    """Turn an attacker-controlled value into one safe path component."""
    if value is None or value == "":
        return "unknown"
    text = _UNSAFE.sub("_", str(value))[:_MAX_PART]
    if text.startswith("."):
        text = "_" + text[1:]
    return text or "unknown"


def _getter(field: str) -> Callable[[Event], Any]:
    if field == "date":
        return lambda ev: (ev.get("received_at") or "unknown")[:10]
    if field == "hour":
        return lambda ev: (ev.get("received_at") or "unknown")[:13].replace("T", "_")
    if field.startswith("syslog."):
        sub = field[7:]
        return lambda ev: (ev.get("syslog") or {}).get(sub)
    return lambda ev: ev.get(field)


class PathTemplate:
    """A compiled ``path`` option: literal parts and sanitised event fields."""

    def __init__(self, template: str, base: Path) -> None:
        full = template if os.path.isabs(template) else os.path.join(str(base), template)
        self.parts = _PLACEHOLDER.split(full)  # literal, field, literal, field, ..., literal
        if any(p.count("{") or p.count("}") for p in self.parts[::2]):
            raise ValueError("path: braces must enclose a field name, e.g. {module}")
        self.fields = self.parts[1::2]
        self.getters = [_getter(f) for f in self.fields]
        prefix = self.parts[0]
        self.root = os.path.normpath(prefix if prefix.endswith(os.sep) else os.path.dirname(prefix))
        self._cache: dict[tuple, str] = {}

    def render(self, event: Event) -> str:
        if not self.fields:
            return self.parts[0]
        key = tuple(g(event) for g in self.getters)
        path = self._cache.get(key)
        if path is None:
            path = self._build(key)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = path
        return path

    def _build(self, values: tuple) -> str:
        out = [self.parts[0]]
        for value, literal in zip(values, self.parts[2::2], strict=True):
            out.append(sanitize(value))
            out.append(literal)
        path = os.path.normpath("".join(out))
        if os.path.commonpath([self.root, path]) != self.root:
            raise PermanentFailure("templated path escapes the output directory")
        return path


class FileOutput(Output):
    """Append events as JSON lines; one ``os.write`` per file per batch.

    Each file takes whole lines only: the size is noted before a group is appended and the file
    is truncated back to it when the write fails part way (a full disk), so a retry never
    leaves a torn or doubled line. The output is meant to be the only writer of its files.
    """

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        super().__init__(name, options, context)
        self.template = PathTemplate(options["path"], context.data_dir)
        self.max_open = options["max_open_files"]
        self.encode = _raw_line if options.get("format", "json") == "raw" else _json_line
        self.mode = _file_mode(options.get("mode", "0640"))
        self._fds: OrderedDict[str, int] = OrderedDict()
        # path -> (st_dev, st_ino, size): a torn append whose truncation failed, repaired on
        # the next open of that same file.
        self._torn: dict[str, tuple[int, int, int]] = {}

    def describe(self) -> str:
        return "".join(
            p if i % 2 == 0 else "{" + p + "}" for i, p in enumerate(self.template.parts)
        )

    def send(self, events: Sequence[Event]) -> None:
        rejected: dict[int, PermanentFailure] = {}
        try:
            groups = self._group(events)
        except Exception:  # some event cannot be rendered or serialized: sort them out
            groups, rejected = self._group_checked(events)
        bad: dict[str, PermanentFailure] = {}
        for n, (path, lines) in enumerate(groups.items()):
            try:
                self._append(path, b"".join(lines))
            except OSError as exc:
                reason = self._reason(path, exc)
                if exc.errno in _PERMANENT_ERRNOS:
                    bad[path] = PermanentFailure(reason)
                    continue
                self._fail(events, rejected, bad, set(list(groups)[n:]), reason)
        if bad or rejected:
            self._fail(events, rejected, bad, set(), "")

    def _group(self, events: Sequence[Event]) -> dict[str, list[bytes]]:
        """The fast path: lines grouped by file, in batch order."""
        groups: dict[str, list[bytes]] = {}
        render, encode = self.template.render, self.encode
        for ev in events:
            line = encode(ev)
            path = render(ev)
            group = groups.get(path)
            if group is None:
                groups[path] = [line]
            else:
                group.append(line)
        return groups

    def _group_checked(
        self, events: Sequence[Event]
    ) -> tuple[dict[str, list[bytes]], dict[int, PermanentFailure]]:
        """The slow path: the same grouping, with the events that cannot be written set aside."""
        groups: dict[str, list[bytes]] = {}
        rejected: dict[int, PermanentFailure] = {}
        for i, ev in enumerate(events):
            try:
                line = self.encode(ev)
            except Exception as exc:
                rejected[i] = PermanentFailure(f"cannot serialize event: {exc}")
                continue
            try:
                path = self.template.render(ev)
            except PermanentFailure as exc:
                rejected[i] = exc
                continue
            except Exception as exc:
                rejected[i] = PermanentFailure(f"cannot render path: {exc!r}")
                continue
            groups.setdefault(path, []).append(line)
        return groups, rejected

    def _fail(
        self,
        events: Sequence[Event],
        rejected: dict[int, PermanentFailure],
        bad: dict[str, PermanentFailure],
        unwritten: set[str],
        transient: str,
    ) -> NoReturn:
        """Raise the outcome of a batch that was not wholly delivered, by batch index."""
        retry: list[int] = []
        if bad or unwritten:
            render = self.template.render
            for i, ev in enumerate(events):
                if i in rejected:
                    continue
                path = render(ev)
                if path in unwritten:
                    retry.append(i)
                elif path in bad:
                    rejected[i] = bad[path]
        if len(retry) == len(events):
            raise RetryLater(transient)
        parts = []
        if rejected:
            reasons = "; ".join(sorted({str(f) for f in rejected.values()})[:3])
            parts.append(f"{len(rejected)} of {len(events)} events rejected: {reasons}")
        if retry:
            parts.append(f"{len(retry)} of {len(events)} events to retry: {transient}")
        raise PartialFailure("; ".join(parts), rejected=rejected, retry=retry)

    def _reason(self, path: str, exc: OSError) -> str:
        text = f"cannot write {self._show(path)}: {exc.strerror or exc}"
        where = exc.filename
        if not isinstance(where, str) or where == path:
            return text
        return f"{text} ({self._show(where)})"

    def _show(self, path: str) -> str:
        """``path`` for a reason text: relative to data_dir, long ones elided in the middle."""
        base = str(self.context.data_dir)
        if path.startswith(base + os.sep):
            path = path[len(base) + 1 :]
        return path if len(path) <= 120 else f"{path[:60]}…{path[-50:]}"

    def _append(self, path: str, data: bytes) -> None:
        """Append whole lines or nothing: truncate back to the old size when the write fails.

        The failed file is closed either way, so the retry reopens it by path (a stale handle
        cannot fail every retry); when even the truncation failed, that reopen cuts the tail.
        """
        fd = self._fd(path)
        st = os.fstat(fd)
        try:
            _write_all(fd, data)
        except BaseException:
            try:
                os.ftruncate(fd, st.st_size)
            except OSError:
                self._torn[path] = (st.st_dev, st.st_ino, st.st_size)
            self._drop(path)
            raise

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _BINARY, self.mode)
        if self._torn and path in self._torn:
            try:
                self._repair(path, fd)
            except BaseException:
                os.close(fd)
                raise
        self._fds[path] = fd
        while len(self._fds) > self.max_open:
            self._drop(next(iter(self._fds)))
        return fd

    def _repair(self, path: str, fd: int) -> None:
        """Cut the torn tail an earlier failed append left in this very file."""
        dev, ino, size = self._torn[path]
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (dev, ino) and st.st_size > size:
            os.ftruncate(fd, size)
        del self._torn[path]

    def _drop(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def reopen(self) -> None:
        """Close every file; the next write opens each by path (after logrotate moved it)."""
        for path in list(self._fds):
            self._drop(path)

    def close(self) -> None:
        self.reopen()


def _json_line(ev: Event) -> bytes:
    return _DUMPS(ev, option=_NL)


def _raw_line(ev: Event) -> bytes:
    """The message as received, one per line: CR and LF inside it written as ``#015`` /
    ``#012`` (rsyslog's escapes), so a line is always one event."""
    raw = ev.get("raw") or ""
    if "\n" in raw or "\r" in raw:
        raw = raw.replace("\r", "#015").replace("\n", "#012")
    return raw.encode() + b"\n"


def _file_mode(text: Any) -> int:
    """``"0640"`` → 0o640; anything else than an octal permission is a ValueError."""
    try:
        mode = int(str(text), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ValueError(f'mode must be an octal permission such as "0640", not {text!r}')
    return mode


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


OPTIONS = (
    Option("path", "string", help="file path template under data_dir, e.g. {module}/{date}.jsonl"),
    Option("max_open_files", "int", 64, help="open file handles kept (least recently used closed)"),
    Option(
        "format",
        "enum",
        "json",
        choices=("json", "raw"),
        help="json: the normalized event per line; raw: the message as received",
    ),
    Option("mode", "string", "0640", help="permissions of new files (octal; the umask applies)"),
)


def _create(name: str, options: Mapping[str, Any], context: OutputContext) -> FileOutput:
    return FileOutput(name, options, context)


@hookimpl
def dsrouter_register_outputs(register) -> None:
    """Register the ``file`` output type."""
    register(OutputType("file", _create, OPTIONS, help="JSON lines files, path templated"))
