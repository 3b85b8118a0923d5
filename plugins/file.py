"""The ``file`` output: events as JSON lines, in files whose path is templated from event fields.

``path = "archive/{module}/{host}/{date}.jsonl"`` is resolved under the daemon's ``data_dir``
(an absolute path is used as is). Every value substituted into the path comes from the event
and so from the sender: it is reduced to ``[A-Za-z0-9._-]``, may not start with a dot and is
capped in length, so no event can name a file outside the output's directory. The final path is
checked to lie under the template's fixed prefix as a second guard.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from dsrouter.api import (
    Event,
    Option,
    Output,
    OutputContext,
    OutputType,
    PermanentFailure,
    hookimpl,
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_PART = 100
_DUMPS = orjson.dumps
_NL = orjson.OPT_APPEND_NEWLINE


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
    """Append events as JSON lines; one ``os.write`` per file per batch."""

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        super().__init__(name, options, context)
        self.template = PathTemplate(options["path"], context.data_dir)
        self.max_open = options["max_open_files"]
        self._fds: OrderedDict[str, int] = OrderedDict()

    def describe(self) -> str:
        return "".join(
            p if i % 2 == 0 else "{" + p + "}" for i, p in enumerate(self.template.parts)
        )

    def send(self, events: Sequence[Event]) -> None:
        groups: dict[str, list[bytes]] = {}
        render = self.template.render
        for ev in events:
            line = _DUMPS(ev, option=_NL)
            path = render(ev)
            group = groups.get(path)
            if group is None:
                groups[path] = [line]
            else:
                group.append(line)
        for path, lines in groups.items():
            self._write(self._fd(path), b"".join(lines))

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._fds[path] = fd
        while len(self._fds) > self.max_open:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


OPTIONS = (
    Option("path", "string", help="file path template under data_dir, e.g. {module}/{date}.jsonl"),
    Option("max_open_files", "int", 64, help="open file handles kept (least recently used closed)"),
)


def _create(name: str, options: Mapping[str, Any], context: OutputContext) -> FileOutput:
    return FileOutput(name, options, context)


@hookimpl
def dsrouter_register_outputs(register) -> None:
    """Register the ``file`` output type."""
    register(OutputType("file", _create, OPTIONS, help="JSON lines files, path templated"))
