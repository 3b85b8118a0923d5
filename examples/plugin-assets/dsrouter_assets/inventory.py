"""The asset inventory behind ``asset_owner(host)`` and ``asset_criticality(host)``.

The inventory is a CSV file with a header row naming at least a ``host`` column (``owner``,
``criticality`` and any others are optional), e.g.::

    host,owner,criticality,location
    web-01,alice,high,dc1

Its path comes from the ``DSROUTER_ASSETS`` environment variable, never from a rule or an
event. It is read lazily, on the first lookup in each process, and read again when its
modification time or size changes; the file is looked at (``stat``) at most once every
``CHECK_EVERY`` seconds, never once per event. A file over ``MAX_BYTES``, or without a ``host``
column, is not loaded: one log line says why and the inventory loaded before stays in use.
Hosts match case-insensitively; a fully qualified name (``web-01.example.com``) falls back to
its first label (``web-01``) when the inventory has no row for the full name. An unknown host,
or an empty cell, gives null.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import math
import os
import threading
import time
from collections.abc import Callable

ENV = "DSROUTER_ASSETS"
MAX_BYTES = 16 * 1024 * 1024  # a bigger inventory is refused: it would be held in every parser
CHECK_EVERY = 5.0  # seconds between two looks at the file's modification time

log = logging.getLogger("dsrouter_assets")

Rows = dict[str, dict[str, str]]


class Inventory:
    """Host → row of the CSV named by the environment variable ``env``; thread-safe."""

    def __init__(
        self,
        env: str = ENV,
        max_bytes: int = MAX_BYTES,
        check_every: float = CHECK_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env = env
        self.max_bytes = max_bytes
        self.check_every = check_every
        self.clock = clock
        self.rows: Rows = {}
        self.stats = {"loads": 0, "stats": 0}
        self._lock = threading.Lock()
        self._seen: object = None  # what the last look found: a file version, or a problem
        self._next_check = -math.inf

    def reset(self) -> None:
        """Forget what was loaded: the next lookup reads the file again (for tests)."""
        with self._lock:
            self.rows, self._seen, self._next_check = {}, None, -math.inf

    def lookup(self, host: object, column: str) -> str | None:
        """The ``column`` cell of ``host``'s row, or None (unknown host, empty cell)."""
        rows = self._current()
        key = str(host).strip().rstrip(".").lower()
        row = rows.get(key)
        if row is None and "." in key and not _is_ip(key):
            row = rows.get(key.split(".", 1)[0])
        value = row.get(column) if row is not None else None
        return value or None

    def _current(self) -> Rows:
        if self.clock() < self._next_check:
            return self.rows
        with self._lock:
            now = self.clock()
            if now >= self._next_check:  # not refreshed by another thread meanwhile
                self._next_check = now + self.check_every
                self._refresh()
        return self.rows

    def _refresh(self) -> None:
        path = os.environ.get(self.env, "").strip()
        if not path:
            self._problem(("unset",), f"{self.env} is not set: every asset lookup is null")
            self.rows = {}
            return
        self.stats["stats"] += 1
        try:
            st = os.stat(path)
        except OSError as exc:
            self._problem(("stat", path, exc.errno), self._keeping(f"cannot read {path}", exc))
            return
        version = (path, st.st_mtime_ns, st.st_size, st.st_ino)
        if version == self._seen:
            return
        self._seen = version
        try:
            with open(path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except OSError as exc:
            log.error(self._keeping(f"cannot read {path}", exc))
            return
        if len(data) > self.max_bytes:
            size = max(st.st_size, len(data))
            log.error(
                self._keeping(f"{path} is {size} bytes, over the {self.max_bytes}-byte limit")
            )
            return
        try:
            rows, duplicates = parse(data)
        except ValueError as exc:
            log.error(self._keeping(f"{path}: {exc}"))
            return
        self.rows = rows
        self.stats["loads"] += 1
        more = f" ({duplicates} duplicate host row(s) ignored)" if duplicates else ""
        log.info(f"dsrouter-assets: loaded {len(rows)} host(s) from {path}{more}")

    def _problem(self, key: tuple, message: str) -> None:
        """Log ``message`` once, not again until the situation changes."""
        if self._seen != key:
            self._seen = key
            log.warning(f"dsrouter-assets: {message}")

    def _keeping(self, what: str, exc: OSError | None = None) -> str:
        why = f": {exc.strerror or exc}" if exc is not None else ""
        kept = f"the {len(self.rows)} host(s) loaded before" if self.rows else "no inventory"
        return f"dsrouter-assets: {what}{why}; not loaded, keeping {kept}"


def parse(data: bytes) -> tuple[Rows, int]:
    """CSV bytes (UTF-8, a BOM allowed) → ``({host: {column: value}}, duplicates)``.

    Column names are matched case-insensitively; the first row of a host wins. ValueError
    when there is no ``host`` column or the text is not UTF-8."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    if "host" not in header:
        raise ValueError("no 'host' column in the header row")
    rows: Rows = {}
    duplicates = 0
    for cells in reader:
        row = {k: v.strip() for k, v in zip(header, cells, strict=False) if k}
        host = row.get("host", "").rstrip(".").lower()
        if not host:
            continue
        if host in rows:
            duplicates += 1
            continue
        if "criticality" in row:
            row["criticality"] = row["criticality"].lower()
        rows[host] = row
    return rows, duplicates


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


#: The inventory the registered functions read (one per process).
INVENTORY = Inventory()


def asset_owner(host: str) -> str | None:
    """The ``owner`` of ``host`` in the inventory, or None."""
    return INVENTORY.lookup(host, "owner")


def asset_criticality(host: str) -> str | None:
    """The ``criticality`` of ``host`` in the inventory (lower case), or None."""
    return INVENTORY.lookup(host, "criticality")
