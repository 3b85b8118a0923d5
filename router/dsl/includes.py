"""The files an ``include`` pattern names, found with a bounded walk.

The same patterns as :mod:`glob` (``*``, ``?``, ``[...]`` within a name, ``**`` for any
number of directories; names starting with ``.`` only match a pattern that starts with
``.``), with two differences that keep ``dsrouter check`` from wandering: at most
``max_entries`` directory entries are looked at (``include "/**/*.rules"`` would otherwise
walk the whole file system), and ``**`` does not follow symbolic links to directories (no
loops). Directories never match (anything else does, and the loader refuses what is not
a regular file with its own error).
"""

from __future__ import annotations

import fnmatch
import os
import re

MAX_ENTRIES = 50_000
_MAGIC = re.compile(r"[*?[]")
_SEPARATORS = re.compile(r"[\\/]" if os.sep == "\\" else "/")


class WalkTooLong(Exception):
    """More than ``max_entries`` directory entries would have to be read."""


def find(pattern: str, max_files: int, max_entries: int = MAX_ENTRIES) -> list[str]:
    """Sorted paths of the files ``pattern`` (absolute) matches; at most ``max_files + 1``
    (so a caller can tell "too many"). Raises :class:`WalkTooLong`."""
    parts = _SEPARATORS.split(pattern)
    first = next((i for i, p in enumerate(parts) if _MAGIC.search(p)), len(parts))
    root = os.sep.join(parts[:first]) or os.sep
    if first == len(parts):
        return [root] if _file_like(root) else []
    walk = _Walk(max_files + 1, max_entries)
    walk.visit(root, [p for p in parts[first:] if p])
    return sorted(walk.found)[: max_files + 1]


class _Walk:
    def __init__(self, max_found: int, max_entries: int) -> None:
        self.found: set[str] = set()
        self.max_found, self.entries = max_found, max_entries

    def visit(self, directory: str, comps: list[str]) -> None:
        if len(self.found) >= self.max_found or not comps:
            return
        head, rest = comps[0], comps[1:]
        if head == "**":
            self.visit(directory, rest)
            for entry in self._entries(directory):
                if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    self.visit(entry.path, comps)
        elif _MAGIC.search(head):
            hidden_ok = head.startswith(".")
            for entry in self._entries(directory):
                if (hidden_ok or not entry.name.startswith(".")) and fnmatch.fnmatch(
                    entry.name, head
                ):
                    self._take(entry.path, rest)
        else:
            self._take(os.path.join(directory, head), rest)

    def _take(self, path: str, rest: list[str]) -> None:
        if rest:
            if os.path.isdir(path):
                self.visit(path, rest)
        elif _file_like(path):
            self.found.add(path)

    def _entries(self, directory: str) -> list[os.DirEntry]:
        try:
            with os.scandir(directory) as it:
                entries = []
                for entry in it:
                    self.entries -= 1
                    if self.entries < 0:
                        raise WalkTooLong
                    entries.append(entry)
                return entries
        except OSError:  # unreadable or gone: nothing matches there
            return []


def _file_like(path: str) -> bool:
    return os.path.lexists(path) and not os.path.isdir(path)
