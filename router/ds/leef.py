"""LEEF 1.0 and 2.0 (FORMATS §5).

``LEEF:1.0|Vendor|Product|Version|EventID|attrs`` (TAB-separated attributes) and
``LEEF:2.0|Vendor|Product|Version|EventID|[Delimiter|]attrs``. DS omits the delimiter field
(TAB): a sixth segment that contains ``=`` is the first attribute, not a delimiter. A
delimiter is one character, or hex as ``x09``, ``0x09``, ``\\x09``, or ``\\t``. A piece
without a valid ``key=`` belongs to the previous value (values may hold the delimiter).
Values are unescaped like CEF values (DS escapes backslashes as ``\\\\``). A TAB-delimited
message that holds no TAB but ``#011`` came through an rsyslog relay that escaped control
characters as ``#ooo`` (its default): those escapes are undone first. Keys are mapped
to their CEF names by the caller (:data:`dsrouter.ds.catalog.LEEF_TO_CEF`).
"""

from __future__ import annotations

import re

from dsrouter.ds.cef import KEY, unescape_value

__all__ = ["decode_delimiter", "parse_leef"]

_HEADER = re.compile(r"LEEF: ?(\d{1,2}(?:\.\d{1,2})?)\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|")
_PAIR = re.compile(rf"({KEY})=")
_HEX = re.compile(r"(?:0?[xX]|\\x)([0-9A-Fa-f]{1,4})")
#: rsyslog's escapeControlCharactersOnReceive writes a control character as ``#`` + 3 octal digits.
_OCTAL_ESCAPE = re.compile(r"#(0[0-3][0-7]|177)")


def _unescape_control(text: str) -> str:
    """Undo rsyslog's ``#ooo`` escapes of control characters (``#011`` is a TAB)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def decode_delimiter(spec: str) -> str | None:
    """The LEEF 2.0 delimiter field → the character, or None when it is not a delimiter."""
    if len(spec) == 1:
        return spec
    if spec == "\\t":
        return "\t"
    m = _HEX.fullmatch(spec)
    return chr(int(m.group(1), 16)) if m else None


def parse_leef(body: str) -> tuple[list[str] | None, dict[str, str], str | None]:
    """``LEEF:...`` → ([version, vendor, product, product_version, event_id], attrs, error)."""
    m = _HEADER.match(body)
    if m is None:
        return (
            None,
            {},
            f"LEEF header is incomplete ({min(body.count('|'), 4)} of 5 '|' separators)",
        )
    head = [g.strip() if i == 0 else g for i, g in enumerate(m.groups())]
    rest = body[m.end() :]
    delimiter = "\t"
    if head[0] != "1.0":
        spec, bar, after = rest.partition("|")
        if bar and "=" not in spec:
            found = decode_delimiter(spec) if spec else "\t"
            if found is None:
                return head, {}, f"LEEF delimiter {spec[:16]!r} is not valid"
            delimiter, rest = found, after
    if delimiter == "\t" and "\t" not in rest and "#011" in rest:
        rest = _unescape_control(rest)  # TABs escaped by an rsyslog relay on the way
    return head, _attributes(rest.rstrip("\r\n"), delimiter), None


def _attributes(text: str, delimiter: str) -> dict[str, str]:
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for piece in text.rstrip().split(delimiter):
        m = _PAIR.match(piece)
        if m is not None:
            current = parts[m.group(1)] = [piece[m.end() :]]
        elif current is not None and piece:
            current.append(piece)
    attrs = {k: v[0] if len(v) == 1 else delimiter.join(v) for k, v in parts.items()}
    if "\\" in text:
        for k, v in attrs.items():
            if "\\" in v:
                attrs[k] = unescape_value(v)
    return attrs
