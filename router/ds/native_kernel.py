"""numba kernel of :mod:`dsrouter.ds.native`: header JSON + CEF extension texts → JSON objects.

Bytes in (UTF-8), bytes out; one pass per text, no allocation. A key is
``[A-Za-z0-9_.\\[\\]-]+`` followed by ``=``; a value runs until the next space that starts a
key. ``\\\\ \\= \\| \\n \\r`` are unescaped, other backslashes kept; ``"``, ``\\`` and control
characters are JSON-escaped; other bytes are copied (UTF-8 stays UTF-8).
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_CEF = np.frombuffer(b"CEF:", np.uint8)
_LEEF = np.frombuffer(b"LEEF:", np.uint8)
#: Kinds of names in the kernel's lookup table: integer-typed keys, reserved keys.
INT, RESERVED = 1, 2


@_jit
def _key_char(c: int) -> bool:
    return (
        (48 <= c <= 57)  # 0-9
        or (65 <= c <= 90)  # A-Z
        or (97 <= c <= 122)  # a-z
        or c == 95  # _
        or c == 46  # .
        or c == 91  # [
        or c == 93  # ]
        or c == 45  # -
    )


@_jit
def _key_length(buf, i, end):  # type: ignore[no-untyped-def]
    """Length of the key at ``i`` when ``key=`` starts there, else 0."""
    j = i
    while j < end and _key_char(buf[j]):
        j += 1
    if j > i and j < end and buf[j] == 61:  # =
        return j - i
    return 0


@_jit
def _kind(buf, start, length, names, offsets, kinds, table):  # type: ignore[no-untyped-def]
    """The kind (:data:`INT`, :data:`RESERVED`) of the key ``buf[start:start+length]``, 0 for
    a name not in ``names``: FNV-1a into the open-addressing ``table`` (see :func:`hash_name`)."""
    h = 2166136261
    for q in range(length):
        h = ((h ^ buf[start + q]) * 16777619) & 0xFFFFFFFF
    mask = table.shape[0] - 1
    s = h & mask
    while table[s] >= 0:
        t = table[s]
        a = offsets[t]
        if offsets[t + 1] - a == length:
            same = True
            for q in range(length):
                if names[a + q] != buf[start + q]:
                    same = False
                    break
            if same:
                return kinds[t]
        s = (s + 1) & mask
    return 0


def hash_name(name: bytes) -> int:
    """FNV-1a (32 bits) of a name, the hash :func:`_kind` computes."""
    h = 2166136261
    for c in name:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


@_jit
def _number(buf, start, end, out, o):  # type: ignore[no-untyped-def]
    """``-?[0-9]{1,18}`` as a JSON number (leading zeros dropped); -1 when it is not one."""
    i = start
    negative = i < end and buf[i] == 45
    if negative:
        i += 1
    if not 1 <= end - i <= 18:
        return -1
    for j in range(i, end):
        if not 48 <= buf[j] <= 57:
            return -1
    while i < end - 1 and buf[i] == 48:
        i += 1
    if negative and not (end - i == 1 and buf[i] == 48):
        out[o] = 45
        o += 1
    for j in range(i, end):
        out[o] = buf[j]
        o += 1
    return o


@_jit
def _string(buf, start, end, out, o):  # type: ignore[no-untyped-def]
    """The value unescaped (CEF) and escaped (JSON), in quotes."""
    out[o] = 34
    o += 1
    i = start
    while i < end:
        c = buf[i]
        if c == 92 and i + 1 < end:  # backslash: a CEF escape?
            d = buf[i + 1]
            if d == 61 or d == 124:  # \= \|
                out[o] = d
                o += 1
                i += 2
                continue
            if d == 92 or d == 110 or d == 114:  # \\ \n \r: the same in JSON
                out[o] = 92
                out[o + 1] = d
                o += 2
                i += 2
                continue
        if c == 34 or c == 92:
            out[o] = 92
            out[o + 1] = c
            o += 2
        elif c < 32:
            out[o] = 92  # \u00XX
            out[o + 1] = 117
            out[o + 2] = 48
            out[o + 3] = 48
            out[o + 4] = _HEX[c >> 4]
            out[o + 5] = _HEX[c & 15]
            o += 6
        else:
            out[o] = c
            o += 1
        i += 1
    out[o] = 34
    return o + 1


@_jit
def _value_end(buf, start, end):  # type: ignore[no-untyped-def]
    """Where the value from ``start`` ends (the first space that starts a key, or ``end``),
    and whether it holds two spaces in a row."""
    spaces = False
    for j in range(start, end):
        if buf[j] == 32:
            if j + 1 < end and buf[j + 1] == 32:
                spaces = True
            elif _key_length(buf, j + 1, end) > 0:
                return j, spaces
    return end, spaces


@_jit
def extensions(  # type: ignore[no-untyped-def]
    buf,
    starts,
    ends,
    heads,
    head_ends,
    out,
    out_ends,
    status,
    names,
    offsets,
    kinds,
    table,
    max_keys,
):
    """Text ``k`` is ``buf[starts[k]:ends[k]]``; its object, ``heads[head_ends[k-1]:
    head_ends[k]]`` (``{`` and the fields before the extension's) then the pairs, ends at
    ``out_ends[k]``. ``status[k]`` is 1 where the Python paths must take text ``k``: a
    reserved key, more than ``max_keys`` keys, two spaces in a row."""
    o = h = 0
    for k in range(starts.shape[0]):
        i, end = starts[k], ends[k]
        n = head_ends[k] - h
        more = n > 1  # the head holds fields: a comma before the first pair
        out[o : o + n] = heads[h : h + n]
        o += n
        h += n
        keys = 0
        while i < end:
            length = _key_length(buf, i, end)
            if length == 0:
                break
            keys += 1
            kind = _kind(buf, i, length, names, offsets, kinds, table)
            if keys > max_keys or kind == RESERVED:
                status[k] = 1
            if keys > 1 or more:
                out[o] = 44  # ,
                o += 1
            out[o] = 34
            out[o + 1 : o + 1 + length] = buf[i : i + length]
            o += length + 1
            out[o] = 34
            out[o + 1] = 58  # :
            o += 2
            value = i + length + 1
            nxt, spaces = _value_end(buf, value, end)
            r = _number(buf, value, nxt, out, o) if kind == INT else -1
            o = _string(buf, value, nxt, out, o) if r < 0 else r
            if spaces:  # separators to strip: the careful path's
                status[k] = 1
            i = nxt + 1
        out[o] = 125  # }
        o += 1
        out_ends[k] = o


@_jit
def _digit(c: int) -> bool:
    return 48 <= c <= 57


@_jit
def _space(c: int) -> bool:
    """ASCII whitespace as Python's ``\\s`` sees it."""
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31


@_jit
def _at(buf, i, end, word):  # type: ignore[no-untyped-def]
    """Does ``buf[i:end]`` start with ``word``?"""
    if i + word.shape[0] > end:
        return False
    for q in range(word.shape[0]):
        if buf[i + q] != word[q]:
            return False
    return True


@_jit
def _bsd_stamp(buf, i, end):  # type: ignore[no-untyped-def]
    """``[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d`` at ``i``."""
    if i + 15 > end or not (65 <= buf[i] <= 90 and 97 <= buf[i + 1] <= 122):
        return False
    if not (97 <= buf[i + 2] <= 122 and buf[i + 3] == 32 and buf[i + 6] == 32):
        return False
    if not ((buf[i + 4] == 32 or _digit(buf[i + 4])) and _digit(buf[i + 5])):
        return False
    for q in (7, 8, 10, 11, 13, 14):
        if not _digit(buf[i + q]):
            return False
    return buf[i + 9] == 58 and buf[i + 12] == 58


@_jit
def _front(buf, i, end, row):  # type: ignore[no-untyped-def]
    """The fast regex of :mod:`dsrouter.ds.normalize` on an ASCII RFC 3164 CEF message at
    ``i``: ``row`` gets ``(1, pri, stamp, host, host end, header, extension)``, offsets from
    ``i``; ``row[0]`` stays 0 where it does not match in that form (the regex decides)."""
    s = i
    if i >= end or buf[i] != 60:  # <
        return
    i += 1
    pri = 0
    while i < end and _digit(buf[i]) and i - s <= 3:
        pri = pri * 10 + buf[i] - 48
        i += 1
    if i - s < 2 or i - s > 4 or i >= end or buf[i] != 62 or pri >= 192:  # >
        return
    stamp = i + 1
    if not _bsd_stamp(buf, stamp, end) or stamp + 15 >= end or buf[stamp + 15] != 32:
        return
    host = j = stamp + 16
    while j < end and not _space(buf[j]):
        if buf[j] >= 128:
            return
        j += 1
    if j == host or j >= end or buf[j] != 32 or buf[j - 1] == 58:  # a host, not "...:"
        return
    for q in range(host, j):  # "CEF:" or "LEEF:" in the host: the careful path
        if _at(buf, q, j, _CEF) or _at(buf, q, j, _LEEF):
            return
    k = j + 1
    if not _at(buf, k, end, _CEF):
        return
    k += 4
    if k < end and buf[k] == 32:
        k += 1
    header = k
    while k < end and _digit(buf[k]) and k - header < 4:
        k += 1
    if k == header or k - header > 3 or k >= end or buf[k] != 124:  # version, |
        return
    for _ in range(6):
        k += 1
        while k < end and buf[k] != 124:
            if buf[k] == 92 or buf[k] >= 128:  # a backslash (or non-ASCII): the regex path
                return
            k += 1
        if k >= end:
            return
    ext = k + 1
    if _key_length(buf, ext, end) == 0:
        return
    row[0], row[1], row[2], row[3] = 1, pri, stamp - s, host - s
    row[4], row[5], row[6] = j - s, header - s, ext - s


@_jit
def fronts(buf, starts, ends, rows):  # type: ignore[no-untyped-def]
    """:func:`_front` for each text ``buf[starts[k]:ends[k]]`` into ``rows[k]``."""
    for k in range(starts.shape[0]):
        _front(buf, starts[k], ends[k], rows[k])
