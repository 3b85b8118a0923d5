"""Batches of messages → normalized events: what the daemon calls (:func:`parse_batch`).

Each message goes through :mod:`dsrouter.ds.normalize`'s fast path, or its careful path when
the fast one declines. In the parser processes (:func:`use_native`) each chunk of messages
goes through the compiled kernels (:mod:`dsrouter.ds.native`) instead: one call reads where
the envelopes and CEF headers lie, one cuts the extensions; both ways give the same events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson

from dsrouter.ds.native import Kernel
from dsrouter.ds.native import load as load_kernel
from dsrouter.ds.normalize import (
    MAX_KEYS,
    Event,
    Head,
    _failed,
    _fast,
    _finish,
    _front,
    _head,
    _heads,
    _slow,
)
from dsrouter.syslog import rfc3164_cache, rfc3164_to_iso

__all__ = ["iter_events", "parse_batch", "use_native"]

#: The compiled kernels once :func:`use_native` found them.
_kernel: Kernel | None = None
_CHUNK = 128  # messages per kernel call: its fixed cost is then ~0.1 µs per message


def parse_batch(messages: list[bytes], input: str, peer: str, received_at: str) -> list[Event]:
    """One normalized event per message, same order. Never raises on any input."""
    return list(iter_events(messages, input, peer, received_at))


def iter_events(messages: list[bytes], input: str, peer: str, received_at: str) -> Iterator[Event]:
    """:func:`parse_batch` one event at a time, for callers that finish with each event
    before the next (its working set stays in the CPU's caches). Never raises."""
    now = time.time()
    stamps = rfc3164_cache(now)
    if _kernel is not None:
        yield from _iter_native(messages, input, peer, received_at, now, stamps, _kernel)
        return
    for data in messages:
        text = data.decode("utf-8", "replace")
        receipt = (received_at, peer, input, text)
        try:
            ev = _fast(text, receipt, now, stamps) or _slow(text, receipt, now)
        except Exception as exc:
            ev = _failed(text, receipt, exc)
        yield ev


def use_native() -> bool:
    """Parse with the compiled kernels from now on, where numba works (the parser processes
    call this at start: compiling or loading them takes a second). Same events."""
    global _kernel
    _kernel = _kernel or load_kernel(MAX_KEYS)
    return _kernel is not None


def _iter_native(
    messages: list[bytes],
    input: str,
    peer: str,
    received_at: str,
    now: float,
    stamps: dict[str, str],
    kernel: Kernel,
) -> Iterator[Event]:
    """:func:`iter_events` with each chunk's envelopes and CEF headers read, and its
    extensions cut, in one kernel call each; what the kernels do not take (no fast match;
    status 1: reserved keys, multi-space separators) goes the Python way."""
    loads = orjson.loads
    for at in range(0, len(messages), _CHUNK):
        texts = [data.decode("utf-8", "replace") for data in messages[at : at + _CHUNK]]
        try:
            rows = kernel.fronts(texts)
        except Exception:  # a kernel bug: the regex reads every front of this chunk
            rows = [_NO_ROW] * len(texts)
        fronts = [
            _safe_front(text, row, now, stamps) for text, row in zip(texts, rows, strict=True)
        ]
        pieces, prefixes = [], []
        for text, front in zip(texts, fronts, strict=True):
            if front is not None:
                piece = text[front[2] :]
                if piece[-1:].isspace():  # the careful path's rstrip()
                    piece = piece.rstrip()
                pieces.append(piece)
                prefixes.append(front[1][2])
        try:
            json, ends, status = kernel.extensions(pieces, prefixes)
        except Exception:  # a kernel bug: this chunk goes the Python way
            fronts = [None] * len(texts)
        j = start = 0
        for text, front in zip(texts, fronts, strict=True):
            receipt = (received_at, peer, input, text)
            try:
                if front is not None and not status[j]:
                    env, head, _ = front
                    ev = _finish(loads(json[start : ends[j]]), env, head[1], receipt)
                else:
                    ev = _fast(text, receipt, now, stamps) or _slow(text, receipt, now)
            except Exception as exc:
                ev = _failed(text, receipt, exc)
            if front is not None:
                start = ends[j]
                j += 1
            yield ev


_NO_ROW = [0] * 7
#: PRI → (facility, severity).
_PRIS = [divmod(p, 8) for p in range(192)]


def _safe_front(
    text: str, row: list[int], now: float, stamps: dict[str, str]
) -> tuple[dict, Head, int] | None:
    """The envelope, the CEF header's entry and where the extension starts, from the kernel's
    row or else the fast regex; None sends the message the Python way."""
    try:
        ok, pri, stamp, host, host_end, header, ext = row
        if ok:
            bsd = text[stamp : stamp + 15]
            iso = stamps.get(bsd) or rfc3164_to_iso(bsd, now)
            if iso is not None:
                facility, severity = _PRIS[pri]
                env = {
                    "facility": facility,
                    "severity": severity,
                    "timestamp": iso,
                    "hostname": text[host:host_end],
                }
                entry = _heads.get(text[header:ext])
                if entry is not None:
                    return env, entry, ext
        front = _front(text, now, stamps)  # the regex: other forms, or a header not seen yet
        if front is None:
            return None
        m, env = front
        return env, _head(m, text), m.start(18)
    except Exception:  # a parser bug: the per-message path turns it into a failed event
        return None
