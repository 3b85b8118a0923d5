"""CEF: the seven header fields and the ``key=value`` extension (FORMATS §3, §4).

Every regex here is linear by construction: alternatives start with disjoint characters and
no two adjacent repeats can match the same text, so hostile input (100k backslashes, ``a=``
runs, pipes) cannot make them backtrack.

* Header: ``CEF:`` (optionally ``CEF: ``) + version, then seven ``|``-terminated fields in
  which ``\\|`` and ``\\\\`` are escapes. Only the header is split on ``|``: extension values
  may hold raw pipes.
* Extension: a value runs until the next `` key=`` (key ``[A-Za-z0-9_.\\-\\[\\]]+``); a run of
  spaces before a key is one separator; trailing whitespace at the end is dropped; empty
  values are kept; ``\\= \\\\ \\n \\r \\|`` are unescaped, other backslashes are kept.
"""

from __future__ import annotations

import re
from itertools import islice

__all__ = [
    "KEY",
    "clean_pairs",
    "pairs_from",
    "parse_cef",
    "parse_extension",
    "split_extension",
    "unescape_last",
    "unescape_value",
]

KEY = r"[A-Za-z0-9_.\[\]-]++"  # possessive: a key is always followed by "="
_FIELD = r"((?:[^|\\]|\\.)*)\|"
_HEADER = re.compile(r"CEF: ?(\d{1,3})\|" + _FIELD * 6, re.S)
_FIRST_KEY = re.compile(rf" *({KEY})=")
#: One split of the text after the first ``key=``: ``[v1, k2, v2, k3, v3, ...]``.
split_extension = re.compile(rf" ({KEY})=").split
_HEADER_ESCAPE = re.compile(r"\\([\\|])")


def unescape_value(value: str) -> str:
    """Undo CEF extension escaping; unknown escapes (``c:\\windows``) keep their backslash."""
    if "\\" not in value:
        return value
    if "\\\\" in value:  # the leftmost "\\\\" is always a real pair: split there
        return "\\".join(map(_unescape_simple, value.split("\\\\")))
    return _unescape_simple(value)


def _unescape_simple(value: str) -> str:
    """Unescape a text that holds no escaped backslash: plain replaces are exact."""
    if "\\" in value:
        value = value.replace("\\=", "=")
        if "\\" in value:
            value = value.replace("\\n", "\n").replace("\\r", "\r").replace("\\|", "|")
    return value


def parse_extension(ext: str) -> tuple[dict[str, str], str | None]:
    """The extension text → ({key: unescaped value}, error or None)."""
    ext = ext.rstrip()
    m = _FIRST_KEY.match(ext)
    if m is not None:
        return pairs_from(m.group(1), ext[m.end() :]), None
    if not ext:
        return {}, None
    parts = split_extension(" " + ext)  # [junk, k1, v1, k2, v2, ...]
    if len(parts) < 3:
        return {}, "CEF extension holds no key=value pair"
    return clean_pairs(
        dict(zip(parts[1::2], parts[2::2], strict=False)), ext
    ), "CEF extension starts with junk"


def pairs_from(first_key: str, rest: str) -> dict[str, str]:
    """Pairs from the first key and the text after its ``=`` (already right-stripped)."""
    it = iter(split_extension(rest))
    d = {first_key: next(it)}
    d.update(zip(it, it, strict=False))
    if "  " in rest or "\\" in rest:
        clean_pairs(d, rest)
    return d


def clean_pairs(d: dict[str, str], text: str) -> dict[str, str]:
    """Drop the spaces of a multi-space separator; unescape values that hold a backslash."""
    if "  " in text:
        for k, v in d.items():
            if v[-1:] == " ":
                d[k] = v.rstrip(" ")
    return unescape_last(d, len(d), text)


def unescape_last(d: dict, n: int, text: str) -> dict:
    """Unescape the backslashed values among the last ``n`` entries of ``d``, taken from
    ``text`` (which holds every backslash they do: the walk stops when all are seen)."""
    left = text.count("\\")
    if left:
        # backslashes sit mostly in the last values (packet data, msg): walk back, stop early
        for k in islice(reversed(d), n):
            v = d[k]
            seen = v.count("\\")
            if seen:
                d[k] = unescape_value(v)
                left -= seen
                if left <= 0:
                    break
    return d


def parse_cef(body: str) -> tuple[list[str] | None, dict[str, str], str | None]:
    """``CEF:...`` → (the seven header fields, extension pairs, error or None).

    The header list is ``[version, vendor, product, product_version, signature_id, name,
    severity]``, unescaped; it is None when the header is not complete.
    """
    m = _HEADER.match(body)
    if m is None:
        return None, {}, _header_problem(body)
    head = [g if "\\" not in g else _HEADER_ESCAPE.sub(r"\1", g) for g in m.groups()]
    head[6] = head[6].strip()
    pairs, err = parse_extension(body[m.end() :])
    return head, pairs, err


def _header_problem(body: str) -> str:
    if not re.match(r"CEF: ?\d", body):
        return "CEF version is missing"
    return f"CEF header is incomplete ({min(body.count('|'), 6)} of 7 '|' separators)"
