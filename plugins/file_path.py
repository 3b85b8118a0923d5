"""Path templates of the ``file`` output: ``path`` compiled once, rendered safely per event.

Every value substituted into a path comes from the event, so from the sender. Each value is
reduced to ``[A-Za-z0-9._-]``, capped at 100 characters and may not start with ``.`` or ``-``.
Each path component built from a placeholder is then made harmless as a whole: it never
starts with ``-`` (``tar czf x.tgz *`` in the archive would read ``--remove-files`` as an
option), is never a Windows device name (``CON``, ``nul.txt``, ``Com1``...), never ends with
``.`` (Windows drops it), and directly under ``data_dir`` never takes a name of the daemon's own
(``queues``, ``deadletter``...). A file name never looks like one the output derives from
another (rotated, ``.gz``, ``.gz.tmp``), so no event can make the retention sweep take its file
for someone else's. The final path is checked to lie under the template's fixed prefix as a
second guard.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsrouter.api import Event, PermanentFailure

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")
#: The time stamp of a rotated file: a day, an hour, or a millisecond (size rotation).
STAMP = r"\d{4}-\d{2}-\d{2}(?:T\d{2}(?:-\d{2}-\d{2}\.\d{3})?)?"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_VALUE = "[A-Za-z0-9._-]+"
_SEPARATORS = re.compile(r"[/\\]" if os.name == "nt" else "/")
MAX_PART = 100
#: Rendered paths kept per template; each key holds values of at most MAX_PART characters.
CACHE_MAX = 4096
_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789"}
)
#: The name every templated value takes once ``max_paths`` distinct ones were seen.
OVERFLOW = "_overflow"
#: What the daemon keeps in data_dir itself: a templated first component never takes these.
RESERVED = frozenset({"queues", "deadletter", "dsrouter.lock", "dsrouter.pid", "control.sock"})


def sanitize(value: Any) -> str:
    """Turn an attacker-controlled value into one safe piece of a path component.

    A value longer than :data:`MAX_PART` keeps its first characters and gains a digest of the
    whole, so two long values that share a prefix still name different files.
    """
    if value is None or value == "":
        return "unknown"
    text = str(value)
    if len(text) > MAX_PART:
        digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).hexdigest()
        text = f"{text[: MAX_PART - 17]}_{digest}"
    text = _UNSAFE.sub("_", text)
    if text[:1] in (".", "-"):
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


def _cacheable(values: tuple) -> bool:
    """Only short values are kept as cache keys: memory never follows the sender's sizes."""
    for v in values:
        if v is None:
            continue
        t = type(v)
        if t is str:
            if len(v) > MAX_PART:
                return False
        elif t is not int or v.bit_length() > 64:
            return False
    return True


class _Component:
    """One path component: literal text around placeholders (``literals`` has one more)."""

    def __init__(self, text: str) -> None:
        parts = PLACEHOLDER.split(text)
        self.literals, self.fields = parts[::2], parts[1::2]
        if any("{" in lit or "}" in lit for lit in self.literals):
            raise ValueError("braces must enclose a field name, e.g. {module}")
        pattern = _VALUE.join(re.escape(lit) for lit in self.literals)
        self.regex = re.compile(pattern)


class PathTemplate:
    """A compiled ``path`` option: a fixed directory (``root``) and templated components."""

    def __init__(self, template: str, base: Path, max_paths: int = 0) -> None:
        full = template if os.path.isabs(template) else os.path.join(str(base), template)
        names = _SEPARATORS.split(full)
        first = next((i for i, n in enumerate(names) if PLACEHOLDER.search(n)), len(names) - 1)
        self.root = os.path.normpath(os.sep.join(names[:first]) or os.sep)
        self.texts = [n for n in names[first:] if n not in ("", ".")]
        self.comps = [_Component(n) for n in self.texts]
        if not self.comps or not names[-1]:
            raise ValueError("must end with a file name, e.g. {date}.jsonl")
        if ".." in self.texts:
            raise ValueError("'..' may not come after a placeholder")
        if any(c.fields and c.literals[0].startswith("-") for c in self.comps):
            raise ValueError("a templated name may not start with '-'")
        self.fields = [f for c in self.comps for f in c.fields]
        self.getters = [_getter(f) for f in self.fields]
        tail = self.comps[-1].literals[-1]
        self.ext = tail[tail.rfind(".") :] if "." in tail else ""
        if self.ext in (".gz", ".tmp"):
            raise ValueError("the file name may not end in .gz or .tmp (the output's own)")
        self.guard_reserved = self.root == os.path.normpath(str(base))
        self._rotated = re.compile(rf"(?P<stem>.+)\.(?P<stamp>{STAMP}){re.escape(self.ext)}")
        # max_paths: distinct values of the fields other than {date}/{hour}, then _overflow
        self.max_paths = max_paths
        self._keyed = [i for i, f in enumerate(self.fields) if f not in ("date", "hour")]
        self._seen: set[tuple] = set()
        self.overflowed = 0  # events written to an _overflow path
        self._fixed = None if self.fields else self._build(())
        self._cache: dict[tuple, str] = {}

    @property
    def static(self) -> bool:
        """True when every event goes to the same path (no placeholder)."""
        return self._fixed is not None

    @property
    def granularity(self) -> str | None:
        """``hourly`` / ``daily`` when the path itself changes every hour / day."""
        if "hour" in self.fields:
            return "hourly"
        return "daily" if "date" in self.fields else None

    def describe(self) -> str:
        return os.path.join(self.root, *self.texts)

    def render(self, event: Event) -> str:
        if self._fixed is not None:
            return self._fixed
        key = tuple(g(event) for g in self.getters)
        try:
            path = self._cache.get(key)
        except TypeError:  # an unhashable value (a list): rendered, never cached
            return self._build(key)
        if path is None:
            counted = self.overflowed
            path = self._build(key)
            if _cacheable(key) and counted == self.overflowed:  # overflow: counted every time
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
                self._cache[key] = path
        return path

    def _build(self, values: tuple) -> str:
        if self.max_paths and self._keyed:
            values = self._bounded(values)
        it = iter(values)
        out = []
        last = len(self.comps) - 1
        for level, comp in enumerate(self.comps):
            text = comp.literals[0]
            for literal in comp.literals[1:]:
                text += sanitize(next(it)) + literal
            out.append(self._harmless(text, level, level == last) if comp.fields else text)
        path = os.path.normpath(os.path.join(self.root, *out))
        if os.path.commonpath([self.root, path]) != self.root:
            raise PermanentFailure("templated path escapes the output directory")
        return path

    def _bounded(self, values: tuple) -> tuple:
        """``values`` while fewer than ``max_paths`` distinct ones were seen, else the
        ``_overflow`` names (a sender inventing hosts cannot make unbounded directories)."""
        key = tuple(sanitize(values[i]) for i in self._keyed)
        if key in self._seen:
            return values
        if len(self._seen) < self.max_paths:
            self._seen.add(key)
            return values
        self.overflowed += 1
        keyed = set(self._keyed)
        return tuple(OVERFLOW if i in keyed else v for i, v in enumerate(values))

    def _harmless(self, name: str, level: int, leaf: bool) -> str:
        """A rendered component no shell glob, Windows or sweep can misread."""
        if name.startswith("-"):
            name = "_" + name[1:]
        if name.split(".", 1)[0].upper() in _DEVICES:
            name = "_" + name
        if name.endswith("."):
            name = name[:-1] + "_"
        if level == 0 and self.guard_reserved and name.lower() in RESERVED:
            name = "_" + name
        if leaf and self._looks_derived(name):
            cut = len(name) - len(self.ext)
            name = name[:cut] + "_" + name[cut:]
        return name

    def _looks_derived(self, name: str) -> bool:
        if name.endswith((".gz", ".gz.tmp")):
            return True
        return self._rotated.fullmatch(name) is not None

    # -- reading the tree back (the retention sweep) --------------------------------------
    @property
    def depth(self) -> int:
        """How many components below ``root`` a file of this template is."""
        return len(self.comps)

    def ours(self, name: str, level: int) -> bool:
        """Could rendering have produced ``name`` at this level (a directory or, at the
        deepest level, an active file name)?"""
        comp = self.comps[level]
        if comp.regex.fullmatch(name) is None:
            return False
        if not comp.fields:
            return True
        leaf = level == len(self.comps) - 1
        return self._harmless(name, level, leaf) == name

    def classify(self, name: str) -> tuple[str, str | None, str] | None:
        """A leaf-level file name as ``(active name, rotation stamp or None, suffix)``; the
        suffix is ``""``, ``".gz"`` or ``".gz.tmp"``; None when the file is not this output's."""
        suffix = ""
        for end in (".gz.tmp", ".gz"):
            if name.endswith(end):
                name, suffix = name[: -len(end)], end
                break
        leaf = len(self.comps) - 1
        m = self._rotated.fullmatch(name)
        if m is not None:
            active = m["stem"] + self.ext
            return (active, m["stamp"], suffix) if self.ours(active, leaf) else None
        return (name, None, suffix) if self.ours(name, leaf) else None

    def rotated_name(self, active: str, stamp: str) -> str:
        """``x.jsonl`` → ``x.<stamp>.jsonl`` (the extension is the template's)."""
        cut = len(active) - len(self.ext)
        return f"{active[:cut]}.{stamp}{active[cut:]}"
