"""The ``file`` output: events as JSON lines (or raw lines), in files whose path is templated
from event fields, rotated, compressed and expired: an archive that outlives the console.

``path = "archive/{module}/{host}/{date}.jsonl"`` is resolved under the daemon's ``data_dir``
(an absolute path is used as is); ``file_path`` makes every substituted value harmless.
``file_handles`` writes whole lines and rotates; ``file_rotate`` names and compresses;
``file_sweep`` compresses, expires (``retain``, ``keep``) and finishes idle files on its own
thread. See docs/outputs/file.md.

Outcomes are per file: the events of a path that can never be written (a name too long, a
directory in the way, an event that does not render or serialize) are rejected alone; a
transient error (a full disk, EACCES, EROFS, a file being compressed) retries that file's
events and those of the files not yet written, while files already written count as
delivered. ``reopen()`` (SIGHUP, e.g. from logrotate's postrotate) closes every file so the
next write opens it again by path.
"""

from __future__ import annotations

import errno
import os
import time
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
from dsrouter.delivery.options import raw_needed

from .file_handles import Files
from .file_path import PathTemplate, sanitize
from .file_rotate import Policy
from .file_sweep import Maintenance, acquire, release

__all__ = ["FileOutput", "PathTemplate", "sanitize"]

_DUMPS = orjson.dumps
_NL = orjson.OPT_APPEND_NEWLINE
#: Errors of a path that no retry can fix: its events are rejected (dead-lettered). EEXIST comes
#: from makedirs when a file stands where a directory should be. Every other OSError (a full
#: disk, EACCES, EROFS, EIO, too many open files, a file being compressed) is transient.
_PERMANENT_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EINVAL, errno.ELOOP, errno.EEXIST}
)


class FileOutput(Output):
    """Append events as lines; one ``os.write`` per file per batch (see the module docstring).

    ``now`` (seconds since the epoch) is the clock rotation and retention read; tests pass
    their own. ``background=False`` leaves the maintenance thread unstarted: the caller runs
    ``self.maintenance.sweep()`` itself.
    """

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        context: OutputContext,
        now: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        super().__init__(name, options, context)
        self.template = PathTemplate(
            options["path"], context.data_dir, int(options.get("max_paths", 0))
        )
        self.policy = Policy(options, self.template)
        self.encode = _raw_line if options.get("format", "json") == "raw" else _json_line
        # JSON lines to one fixed file: the queued payloads are the lines (no re-serialising)
        self.takes_payloads = self.encode is _json_line and self.template.static
        self.now, self.background = now, background
        mode = _file_mode(options.get("mode", "0640"))
        self.shared = acquire(self.template.root)
        self.maintenance: Maintenance | None = None
        if self.policy.needs_sweep:
            self.maintenance = Maintenance(
                self.template, self.policy, self.shared, now, context.logger
            )
        self.files = Files(
            self.template,
            self.policy,
            self.shared,
            mode,
            int(options.get("max_open_files", 64)),
            options.get("sync", "never") == "batch",
            self.maintenance.rotated if self.maintenance else _ignore,
        )
        self._released = False
        self._overflow_told = False

    @property
    def _fds(self) -> Mapping[str, Any]:
        return self.files.fds

    def open(self) -> None:
        if self.maintenance is not None and self.background:
            self.maintenance.start(self.name)

    def describe(self) -> str:
        return self.template.describe()

    def send(self, events: Sequence[Event]) -> None:
        self.files.tick(self.now())
        rejected: dict[int, PermanentFailure] = {}
        try:
            groups = self._group(events)
        except Exception:  # some event cannot be rendered or serialized: sort them out
            groups, rejected = self._group_checked(events)
        if self.template.overflowed and not self._overflow_told:
            self._overflow_told = True
            log = self.context.logger
            if log is not None:
                log.warning(
                    "file_paths_overflow",
                    output=self.name,
                    max_paths=self.template.max_paths,
                    help="events with new path values go to _overflow names; raise max_paths "
                    "if these senders are genuine",
                )
        bad: dict[str, PermanentFailure] = {}
        for n, (path, lines) in enumerate(groups.items()):
            try:
                self.files.append(path, b"".join(lines))
            except OSError as exc:
                reason = self._reason(path, exc)
                if exc.errno in _PERMANENT_ERRNOS:
                    bad[path] = PermanentFailure(reason)
                    continue
                self._fail(events, rejected, bad, set(list(groups)[n:]), reason)
        if bad or rejected:
            self._fail(events, rejected, bad, set(), "")

    def send_payloads(self, payloads: Sequence[bytes]) -> None:
        """The fixed-path JSON case: the payloads joined, in one append."""
        self.files.tick(self.now())
        path = self.template.render({})
        try:
            self.files.append(path, b"\n".join([*payloads, b""]))  # no copy to add the last
        except OSError as exc:
            reason = self._reason(path, exc)
            if exc.errno in _PERMANENT_ERRNOS:
                raise PermanentFailure(reason) from exc
            raise RetryLater(reason) from exc

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

    def reopen(self) -> None:
        """Close every file; the next write opens each by path (after logrotate moved it)."""
        self.files.close_all()

    def close(self) -> None:
        self.files.close_all()
        if self.maintenance is not None:
            self.maintenance.close()
        if not self._released:
            self._released = True
            release(self.template.root)


def _ignore(directory: str) -> None:
    pass


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
    problem = _check_mode(text)
    if problem is not None:
        raise ValueError(f"mode: {problem}")
    return int(str(text), 8)


# -- options ----------------------------------------------------------------------------------


def _check_mode(text: Any) -> str | None:
    try:
        mode = int(str(text), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        return f'expected an octal permission such as "0640", not {text!r}'
    return None


def _check_path(text: Any) -> str | None:
    try:
        PathTemplate(str(text), _CHECK_BASE)
    except ValueError as exc:
        return str(exc)
    return None


def _check_rotate(value: Any) -> str | None:
    if isinstance(value, int) and value <= 0:
        return "a rotation size must be above 0, e.g. 100MiB"
    return None


def _positive(value: Any) -> str | None:
    return None if value is None or value > 0 else "must be above 0, e.g. 400d"


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 (no limit) or more"


def _at_least_one(value: Any) -> str | None:
    return None if value >= 1 else "must be 1 or more"


_CHECK_BASE = Path(os.path.abspath(os.sep))

OPTIONS = (
    Option(
        "path",
        "string",
        help="file path template under data_dir, e.g. archive/{module}/{host}/{date}.jsonl",
        validate=_check_path,
    ),
    Option(
        "format",
        "enum",
        "json",
        choices=("json", "raw"),
        help="json: the normalized event per line; raw: the message as received",
    ),
    Option(
        "rotate",
        "enum_or_size",
        None,
        choices=("daily", "hourly"),
        help='"daily", "hourly" or a size (100MiB): when a file is set aside for a new one',
        validate=_check_rotate,
    ),
    Option(
        "retain",
        "duration",
        None,
        help="delete files last written longer ago than this (e.g. 400d); unset: keep all",
        validate=_positive,
    ),
    Option(
        "keep", "int", 0, help="rotated files kept per file (0: no limit)", validate=_not_negative
    ),
    Option("compress", "bool", False, help="gzip files once finished (never the one written)"),
    Option(
        "mode",
        "string",
        "0640",
        help="permissions of new files (octal; the umask applies)",
        validate=_check_mode,
    ),
    Option(
        "sync",
        "enum",
        "never",
        choices=("never", "batch"),
        help="batch: fdatasync every file a batch wrote before it counts as delivered",
    ),
    Option(
        "max_paths",
        "int",
        100_000,
        help="distinct values of the path's fields other than {date}/{hour}; events with new "
        "values past this go to _overflow names (counted, logged once); 0: no limit",
        validate=_not_negative,
    ),
    Option(
        "max_open_files",
        "int",
        64,
        help="open file handles kept (least recently used closed)",
        validate=_at_least_one,
    ),
)


def _create(name: str, options: Mapping[str, Any], context: OutputContext) -> FileOutput:
    return FileOutput(name, options, context)


@hookimpl
def dsrouter_register_outputs(register) -> None:
    """Register the ``file`` output type."""
    register(
        OutputType(
            "file",
            _create,
            OPTIONS,
            help="JSON lines files: templated, rotated, compressed, expired",
            validate=raw_needed,
        )
    )
