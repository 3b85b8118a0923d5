"""The syslog envelope: RFC 3164, RFC 5424 and the shapes Deep Security really sends (pure).

:func:`parse_envelope` splits one message into the envelope fields (a dict that becomes the
event's ``syslog`` object) and the body. It never raises. Shapes understood, after an optional
RFC 6587 octet count (``194 <86>...``):

* ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD [BOM]MSG`` (RFC 5424, ``-`` means absent);
* ``<PRI>Mmm dd HH:MM:SS HOST [TAG:] MSG`` (RFC 3164; the PRI may be missing, the day may be
  one digit) and the same with an ISO-8601 time stamp (DS's "include time zone" option);
* before a ``CEF:``/``LEEF:`` body, the host is everything between the time stamp and the
  body (it may be empty or hold spaces), except a trailing ``TAG:`` such as a relay's
  ``syslog:``, which becomes ``appname``;
* no envelope at all (bare CEF/LEEF or any other text).

RFC 3164 time stamps have no year and no zone: :func:`rfc3164_to_iso` adds the year (the
previous one when the date would be more than two days ahead of ``now``) and the local zone.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

__all__ = [
    "BODY_MARK",
    "ISO_TS",
    "SD",
    "parse_envelope",
    "parse_structured_data",
    "rfc3164_cache",
    "rfc3164_to_iso",
    "strip_octet_count",
]

MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

ISO_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?"
BSD_TS = r"[A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d"

_OCTETS = re.compile(r"\d{1,9} (?=<\d)")
_PRI = re.compile(r"<(\d{1,3})>")
_RFC5424 = re.compile(r"(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ")
#: RFC 5424 STRUCTURED-DATA: ``-`` or elements; linear (alternatives start differently).
SD = r'-|(?:\[(?:[^\]"\\]++|\\.|"(?:[^"\\]++|\\.)*+")*+\])+'
_SD = re.compile(SD, re.S)
#: One element (anchored, one at a time): its inside, which holds no unescaped ``]`` outside quotes.
_SD_ELEMENT = re.compile(r'\[((?:[^\]"\\]++|\\.|"(?:[^"\\]++|\\.)*+")*+)\]', re.S)
#: SD-ID and PARAM-NAME: 1 to 32 printable characters other than ``=``, space, ``]`` and ``"``.
_SD_NAME = re.compile(r'[^\s=\]"]{1,32}(?= |$)')
_SD_PARAM = re.compile(r' +([^\s=\]"]{1,32})="((?:[^"\\]|\\.)*)"', re.S)
_SD_ESCAPE = re.compile(r"\\([\"\\\]])")
_TIMESTAMP = re.compile(rf"(?:({BSD_TS})|({ISO_TS}))(?: +|$)")
#: Where a CEF or LEEF body starts: at the start or after a space, with a version and a pipe.
BODY_MARK = re.compile(r"(?:^|(?<= ))(?:CEF|LEEF): ?\d+(?:\.\d+)?\|")
_TAG = re.compile(r"([^\s:\[\]]{1,48})(?:\[([^\s\]]{0,32})\])?:")

_ts_cache: dict[str, str] = {}
_ts_cache_day = [0]


def strip_octet_count(text: str) -> str:
    """Drop an RFC 6587 octet count left at the start of a line (``194 <86>...``)."""
    m = _OCTETS.match(text)
    return text[m.end() :] if m else text


def rfc3164_cache(now: float) -> dict[str, str]:
    """The stamp → ISO cache valid for ``now``'s day (emptied when the day changes)."""
    day = int(now // 86400)
    if day != _ts_cache_day[0] or len(_ts_cache) > 8192:
        _ts_cache.clear()
        _ts_cache_day[0] = day
    return _ts_cache


def rfc3164_to_iso(stamp: str, now: float | None = None) -> str | None:
    """``'Oct  2 16:41:16'`` → ISO-8601 in the local zone, with the year inferred from ``now``.

    Returns None when the stamp is not a real date. Results are cached per stamp and day;
    :func:`rfc3164_cache` gives callers on a hot path direct access to the cache.
    """
    if now is None:
        now = time.time()
    cache = rfc3164_cache(now)
    iso = cache.get(stamp)
    if iso is None:
        iso = _convert_3164(stamp, now)
        if iso is not None and len(stamp) <= 16:
            cache[stamp] = iso
    return iso


def _convert_3164(stamp: str, now: float) -> str | None:
    parts = stamp.split()
    month = MONTHS.get(parts[0])
    if month is None or len(parts) != 3:
        return None
    try:
        day = int(parts[1])
        hh, mm, ss = (int(x) for x in parts[2].split(":"))
        ref = datetime.fromtimestamp(now)
        for year in range(ref.year, ref.year - 8, -1):  # Feb 29 goes back to a leap year
            when = _dated(year, month, day, hh, mm, ss)
            if when is not None and (when - ref).days < 2:
                return when.astimezone().isoformat()
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _dated(year: int, month: int, day: int, hh: int, mm: int, ss: int) -> datetime | None:
    try:
        return datetime(year, month, day, hh, mm, ss)
    except ValueError:  # Feb 29 outside a leap year, second 60...
        return None


def parse_structured_data(sd: str) -> dict[str, dict[str, str]]:
    """RFC 5424 STRUCTURED-DATA → ``{sd_id: {param: value}}``, unescaping ``\\" \\\\ \\]``.

    Linear in the input: every match is anchored where the previous one ended and no pattern
    can match the same text two ways. An element whose SD-ID is invalid is skipped; its
    parameters stop at the first one that is not ``NAME="VALUE"``.
    """
    out: dict[str, dict[str, str]] = {}
    pos = 0
    while (m := _SD_ELEMENT.match(sd, pos)) is not None:
        pos = m.end()
        inner = m.group(1)
        name = _SD_NAME.match(inner)
        if name is None:
            continue
        params = out.setdefault(name.group(), {})
        at = name.end()
        while (p := _SD_PARAM.match(inner, at)) is not None:
            at = p.end()
            v = p.group(2)
            params[p.group(1)] = _SD_ESCAPE.sub(r"\1", v) if "\\" in v else v
    return out


def parse_envelope(text: str, now: float | None = None) -> tuple[dict, str, str | None]:
    """Split a message into (envelope fields, body, error or None). Never raises.

    The envelope dict holds only the fields present: ``facility``, ``severity``, ``version``,
    ``timestamp``, ``hostname``, ``appname``, ``procid``, ``msgid``, ``structured_data``.
    An empty dict means the text has no syslog envelope.
    """
    env: dict = {}
    pos = 0
    m = _PRI.match(text)
    if m:
        pri = int(m.group(1))
        if pri > 191:
            return env, text, f"invalid syslog PRI <{m.group(1)}>"
        env["facility"], env["severity"] = divmod(pri, 8)
        pos = m.end()
        m5 = _RFC5424.match(text, pos)
        if m5 and m5.group(1) != "0":
            return _rfc5424(env, text, m5, now)
    m = _TIMESTAMP.match(text, pos)
    if m:
        if m.group(1):
            iso = rfc3164_to_iso(m.group(1), now)
            if iso is None:
                return env, text[pos:], f"invalid RFC 3164 time stamp {m.group(1)!r}"
            env["timestamp"] = iso
        else:
            env["timestamp"] = m.group(2)
        pos = m.end()
    elif not env:
        return env, text, None  # no envelope at all
    return env, _host_and_tag(env, text[pos:]), None


def _rfc5424(env: dict, text: str, m: re.Match, now: float | None) -> tuple[dict, str, str | None]:
    env["version"] = int(m.group(1))
    for key, value in zip(
        ("timestamp", "hostname", "appname", "procid", "msgid"), m.groups()[1:], strict=False
    ):
        if value != "-":
            env[key] = value
    sd = _SD.match(text, m.end())
    if sd is None:
        return env, text[m.end() :], "invalid RFC 5424 structured data"
    if sd.group() != "-":
        env["structured_data"] = parse_structured_data(sd.group())
    body = text[sd.end() :]
    if body[:1] == " ":
        body = body[1:]
    if body[:1] == "\ufeff":
        body = body[1:]
    return env, body, None


def _host_and_tag(env: dict, rest: str) -> str:
    """Fill hostname/appname/procid from the text after the time stamp; return the body."""
    mark = BODY_MARK.search(rest)
    if mark is None:  # plain RFC 3164: HOST [TAG:] MSG
        host, _, msg = rest.partition(" ")
        if host:
            env["hostname"] = host
        tag = _TAG.match(msg)
        if tag:
            _set_tag(env, tag)
            msg = msg[tag.end() :]
            if msg[:1] == " ":
                msg = msg[1:]
        return msg
    pre = rest[: mark.start()].rstrip()
    head, _, last = pre.rpartition(" ")
    tag = _TAG.fullmatch(last)
    if tag:
        _set_tag(env, tag)
        pre = head.rstrip()
    if pre:
        env["hostname"] = pre
    return rest[mark.start() :]


def _set_tag(env: dict, tag: re.Match) -> None:
    env["appname"] = tag.group(1)
    if tag.group(2):
        env["procid"] = tag.group(2)
