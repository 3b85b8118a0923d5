"""The CEF extension cut in machine code (numba), for the parser processes.

:func:`extensions_json` turns a list of extension texts (``key=value key=value ...``, each
starting at its first key, trailing whitespace removed) into one JSON object each, in one
call per chunk of messages. Each object starts with the JSON of the
message's header fields, which the caller passes (cached per CEF header), so ``orjson.loads``
gives the whole dict in the event's key order with no merge in Python. The pairs get the
same cut as :data:`dsrouter.ds.cef.split_extension` (a value runs until the next `` key=``),
the same unescaping as :func:`dsrouter.ds.cef.unescape_value`, and the integer-typed keys
(:data:`~dsrouter.ds.catalog.INT_KEYS`) written as JSON numbers where the text is
``-?[0-9]{1,18}``; integer and reserved keys are found through one hash table. Measured on
the benchmark's events, that is about half the CPU of the same step in Python
(docs/benchmarks.md).

numba compiles the kernel on first use and caches the machine code (beside this file, or in
numba's user cache when that is not writable). It is optional: :func:`load` returns None
where numba is not installed or fails, and the parser keeps its pure-Python path, which
gives the same events (``tests/ds/test_native.py`` holds the two equal on every input).

Memory safety: numba does not check bounds, so the output buffer is sized for the worst case
(every byte a control character that JSON writes as ``\\u00XX``: 6 bytes out per byte in, plus
8 per text, plus the heads), and the kernel writes nothing else. The buffer is
``numpy.empty``: pages the kernel does not write are never touched, so memory follows the
output, not the bound.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

from dsrouter.ds.catalog import INT_KEYS, RESERVED

__all__ = ["Kernel", "load"]


class Kernel(NamedTuple):
    """The compiled kernels, each over a chunk of texts."""

    #: ``texts → rows``: where the fast regex of :mod:`dsrouter.ds.normalize` matches text i
    #: in its ASCII RFC 3164 form, ``rows[i]`` is ``[1, pri, stamp, host, host end, header,
    #: extension]`` (character offsets); ``rows[i][0]`` is 0 where the regex must decide.
    fronts: Callable[[list[str]], list[list[int]]]
    #: ``(texts, heads) → (json, ends, status)``: ``json[ends[i-1]:ends[i]]`` is text i's
    #: object, ``heads[i]`` (``{`` and the JSON of the fields before the extension's, no closing
    #: brace) then text i's pairs; status 1 means the Python paths take text i (a reserved key,
    #: more than ``max_keys`` keys, two spaces in a row).
    extensions: Callable[[list[str], list[bytes]], tuple[bytes, list[int], bytes]]


def load(max_keys: int) -> Kernel | None:
    """The compiled kernels, or None (numba missing, broken, or ``DSROUTER_NATIVE=0``)."""
    if os.environ.get("DSROUTER_NATIVE", "1") == "0":
        return None
    try:
        import numpy as np

        from dsrouter.ds import native_kernel as nk
    except Exception:  # ImportError, or numba failing to initialise on this platform
        return None
    names = _table(
        np, nk, {**dict.fromkeys(INT_KEYS, nk.INT), **dict.fromkeys(RESERVED, nk.RESERVED)}
    )

    def texts_buffer(texts: list[str]) -> tuple[Any, Any, Any]:
        """The texts as one UTF-8 buffer, with where each starts and ends in it."""
        blob = "\n".join(texts)
        data = blob.encode()
        ascii = len(data) == len(blob)  # then byte offsets are character offsets
        sizes = [len(t) for t in texts] if ascii else [len(t.encode()) for t in texts]
        lengths = np.array(sizes, np.int64)
        ends = np.cumsum(lengths + 1) - 1
        return np.frombuffer(data, np.uint8), ends - lengths, ends

    def fronts(texts: list[str]) -> list[list[int]]:
        rows = np.zeros((len(texts), 7), np.int64)
        nk.fronts(*texts_buffer(texts), rows)
        return rows.tolist()

    def extensions_json(texts: list[str], heads: list[bytes]) -> tuple[bytes, list[int], bytes]:
        buf, starts, ends = texts_buffer(texts)
        head = b"".join(heads)
        head_ends = np.cumsum(np.array([len(h) for h in heads], np.int64))
        out = np.empty(6 * len(buf) + 8 * len(texts) + len(head) + 16, np.uint8)
        out_ends = np.empty(len(texts), np.int64)
        status = np.zeros(len(texts), np.uint8)
        nk.extensions(buf, starts, ends, np.frombuffer(head, np.uint8), head_ends, out,
                      out_ends, status, *names, max_keys)  # fmt: skip
        return out[: out_ends[-1]].tobytes() if texts else b"", out_ends.tolist(), status.tobytes()

    kernel = Kernel(fronts, extensions_json)
    try:  # compile (or load the cache) now, not on the first batch
        kernel.extensions(["a=1"], [b"{"])
        kernel.fronts(["<1>Jan  1 00:00:00 h CEF:0|||||||a=1"])
    except Exception:
        return None
    return kernel


def _table(np: Any, nk: Any, kinds: dict[str, int]) -> tuple[Any, Any, Any, Any]:
    """ASCII names and their kinds as the kernel's lookup: the names as one byte array, their
    offsets, their kinds, and an open-addressing table (FNV-1a, at most a quarter full) of
    name indexes, -1 where empty."""
    ordered = sorted(kinds)
    offsets = [0]
    for name in ordered:
        offsets.append(offsets[-1] + len(name))
    size = 1 << max(4, (4 * len(ordered)).bit_length())
    table = np.full(size, -1, np.int32)
    for t, name in enumerate(ordered):
        s = nk.hash_name(name.encode()) & (size - 1)
        while table[s] >= 0:
            s = (s + 1) & (size - 1)
        table[s] = t
    return (
        np.frombuffer("".join(ordered).encode(), np.uint8),
        np.array(offsets, np.int64),
        np.array([kinds[n] for n in ordered], np.uint8),
        table,
    )
