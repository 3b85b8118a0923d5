"""The ``siem`` output's encoders: an event → one syslog message (pure functions).

* ``raw``: the message as received. When it already starts with a syslog PRI (``<134>...``)
  it is sent unchanged; otherwise (a bare CEF/LEEF line, an SNS event) a syslog header is put
  in front of it, so the receiver always gets a syslog message.
* ``cef``: CEF:0 rebuilt from the normalized event. Header fields escape ``\\`` and ``|``
  (CR/LF become spaces: CEF has no escape for them there); extension values escape ``\\``,
  ``=``, LF (``\\n``) and CR (``\\r``).
* ``leef``: LEEF 2.0, TAB-delimited, with QRadar's attribute names (``usrName``, ``srcPort``,
  ``dstPort``, ``srcMAC``, ``dstMAC``, ``sev``, ``devTime``). LEEF has no escape for ``|`` in
  the header nor for the delimiter in values: header pipes become ``_``, TABs in values
  spaces; backslashes, LF and CR in values are escaped as in CEF (what DS itself does).
* ``json``: the normalized event as one JSON object.

The extension (CEF) and attributes (LEEF) carry the event's extension keys only: header,
derived, alias, envelope and receipt fields (``host``, ``module``, ``raw``...) are either in
the header or re-derived by whoever parses the message. Keys outside CEF's key characters get
``_`` in place of the others. The syslog header is RFC 5424 or RFC 3164, with the event's own
time stamp, facility and severity.
"""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from dsrouter.api import Event
from dsrouter.ds.catalog import LEEF_TO_CEF, RESERVED

__all__ = [
    "Encoder",
    "Stamp",
    "cef_body",
    "event_stamp",
    "frame",
    "json_body",
    "leef_body",
    "truncate",
]

_PRI = re.compile(r"<(\d{1,3})>")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_.\[\]-]")
_HOST_BAD = re.compile(r"[^!-~]")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TO_LEEF = {cef: leef for leef, cef in LEEF_TO_CEF.items() if cef != "severity"}
_CEF_HEAD_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "\n": " ", "\r": " "})
_LEEF_HEAD = str.maketrans({"|": "_", "\n": " ", "\r": " ", "\t": " "})
#: Java SimpleDateFormat of the ``devTime`` attribute (QRadar reads it).
DEV_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"
_RFC5424_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value, default=str).decode()


_keys: dict[str, str] = {}


def _key(name: str) -> str:
    """``name`` with every character outside CEF's key characters as ``_`` (cached)."""
    key = _keys.get(name)
    if key is None:
        key = _KEY_BAD.sub("_", name) or "_"
        if len(_keys) >= 4096:  # bounded memory
            _keys.clear()
        _keys[name] = key
    return key


def _ext_value(text: str) -> str:
    """A CEF extension value: backslash, ``=``, LF and CR escaped with a backslash."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "=" in text:
        text = text.replace("=", "\\=")
    if "\n" in text or "\r" in text:
        text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text


def _leef_value(text: str) -> str:
    """A LEEF value: backslash, LF and CR escaped as in CEF, a TAB (the delimiter) a space."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\n" in text or "\r" in text or "\t" in text:
        text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", " ")
    return text


def extension(ev: Event) -> list[tuple[str, Any]]:
    """The event's extension keys and values, in event order (shadowed ones included)."""
    key, reserved = _key, RESERVED
    pairs = [(key(k), v) for k, v in ev.items() if v is not None and k not in reserved]
    shadowed = ev.get("ext_shadowed")
    if isinstance(shadowed, Mapping):
        pairs += [(key(str(k)), v) for k, v in shadowed.items() if v is not None]
    return pairs


def _header_values(ev: Event) -> tuple[str, str, str, str, str]:
    """Vendor, product, version, signature ID, name; placeholders for events without them."""
    name = ev.get("name")
    if name is None:
        name = "syslog message" if ev.get("format") == "syslog" else "unparsed message"
    return (
        _text(ev.get("vendor", "dsrouter")),
        _text(ev.get("product", "dsrouter")),
        _text(ev.get("product_version", "")),
        _text(ev.get("signature_id", 0)),
        _text(name),
    )


def _pairs(ev: Event) -> list[tuple[str, Any]]:
    pairs = extension(ev)
    if ev.get("format") == "unknown" and "msg" not in ev and ev.get("raw"):
        pairs.append(("msg", ev["raw"]))  # an unparsed message travels whole
    return pairs


def cef_body(ev: Event) -> str:
    """``CEF:0|vendor|product|version|signature|name|severity|k=v ...``."""
    head = [v.translate(_CEF_HEAD_ESCAPES) for v in _header_values(ev)]
    severity = ev.get("severity")
    head.append("Unknown" if severity is None else _text(severity).translate(_CEF_HEAD_ESCAPES))
    ext = " ".join([f"{k}={_ext_value(_text(v))}" for k, v in _pairs(ev)])
    return "CEF:0|" + "|".join(head) + "|" + ext


def leef_body(ev: Event, dev_time: str | None) -> str:
    """``LEEF:2.0|vendor|product|version|eventID|`` then TAB-separated ``key=value``."""
    vendor, product, version, event_id, name = _header_values(ev)
    head = "|".join(v.translate(_LEEF_HEAD) for v in (vendor, product, version, event_id))
    attrs = {"name": name}
    if ev.get("severity") is not None:
        attrs["sev"] = _text(ev["severity"])
    if dev_time is not None and "devTime" not in ev:
        attrs["devTime"] = dev_time
        attrs["devTimeFormat"] = DEV_TIME_FORMAT
    for k, v in _pairs(ev):
        attrs.setdefault(_TO_LEEF.get(k, k), _text(v))  # the header's name and sev win
    body = "\t".join([f"{k}={_leef_value(v)}" for k, v in attrs.items()])
    return f"LEEF:2.0|{head}|{body}"


def json_body(ev: Event) -> str:
    """The normalized event as one JSON object (values JSON cannot hold as their text)."""
    return orjson.dumps(ev, default=str).decode()


# ---- the syslog header ----------------------------------------------------------------------


class Stamp(NamedTuple):
    """One event time in the shapes the output writes."""

    rfc5424: str  # 2026-11-27T23:18:32.250+01:00
    rfc3164: str  # Nov 27 23:18:32 (the wall clock of the stamp's own zone)
    dev_time: str  # LEEF devTime in DEV_TIME_FORMAT


def event_stamp(ev: Event) -> Stamp:
    """The event's time: its syslog time stamp, else its receipt time, else now."""
    syslog = ev.get("syslog")
    for text in (
        syslog.get("timestamp") if isinstance(syslog, Mapping) else None,
        ev.get("received_at"),
    ):
        if isinstance(text, str) and text and (stamp := _stamp(text)) is not None:
            return stamp
    return _shapes(datetime.now(UTC), None)


@functools.lru_cache(maxsize=4096)
def _stamp(text: str) -> Stamp | None:
    """An ISO-8601 text as a Stamp (cached: a batch's events mostly share a few times)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _shapes(when if when.tzinfo is not None else when.astimezone(), text)


def _shapes(when: datetime, text: str | None) -> Stamp:
    rfc5424 = text if text and _RFC5424_TS.fullmatch(text) else when.isoformat()  # kept as sent
    rfc3164 = f"{_MONTHS[when.month - 1]} {when.day:2d} {when:%H:%M:%S}"
    dev_time = f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}{when:%z}"
    return Stamp(rfc5424, rfc3164, dev_time)


def syslog_header(style: str, pri: int, stamp: Stamp, host: str, app: str) -> str:
    """``<PRI>1 TS HOST APP - - - `` (RFC 5424) or ``<PRI>Mmm dd hh:mm:ss HOST [APP: ]``."""
    if style == "rfc5424":
        return f"<{pri}>1 {stamp.rfc5424} {host} {app or '-'} - - - "
    tag = f"{app}: " if app else ""
    return f"<{pri}>{stamp.rfc3164} {host} {tag}"


def clean_host(name: str) -> str:
    """A header HOSTNAME: printable ASCII without spaces (others become ``_``), 255 at most."""
    return _HOST_BAD.sub("_", name)[:255]


def _pri(ev: Event, facility: int | None) -> int:
    syslog = ev.get("syslog")
    syslog = syslog if isinstance(syslog, Mapping) else {}
    fac = facility if facility is not None else syslog.get("facility")
    sev = syslog.get("severity")
    fac = fac if isinstance(fac, int) and 0 <= fac <= 23 else 16
    sev = sev if isinstance(sev, int) and 0 <= sev <= 7 else 6
    return fac * 8 + sev


class Encoder:
    """Events → syslog messages (UTF-8 bytes, unframed) for one output's options.

    ``hostname`` is ``"original"`` (the sender's syslog host, else ``host``), ``"host"`` (the
    protected computer, else the sender), ``"local"`` (this machine) or a literal name.
    """

    def __init__(
        self,
        fmt: str,
        header: str = "rfc5424",
        hostname: str = "original",
        app_name: str = "",
        facility: int | None = None,
    ) -> None:
        self.format, self.header, self.app, self.facility = fmt, header, app_name, facility
        self.local = clean_host(socket.gethostname()) or "localhost"
        self.host: Callable[[Event], str] = self._host_rule(hostname)
        bodies: dict[str, Callable[[Event, str], str]] = {
            "cef": lambda ev, dev_time: cef_body(ev),
            "leef": leef_body,
            "json": lambda ev, dev_time: json_body(ev),
            "raw": lambda ev, dev_time: _text(ev.get("raw", "")),
        }
        self.body = bodies[fmt]

    def _host_rule(self, rule: str) -> Callable[[Event], str]:
        def pick(ev: Event, keys: tuple[str, ...]) -> str:
            syslog = ev.get("syslog")
            sys_host = syslog.get("hostname") if isinstance(syslog, Mapping) else None
            for name in (sys_host if k == "syslog" else ev.get(k) for k in keys):
                if isinstance(name, str) and (name := clean_host(name)):
                    return name
            return self.local

        if rule == "original":
            return lambda ev: pick(ev, ("syslog", "host"))
        if rule == "host":
            return lambda ev: pick(ev, ("host", "syslog"))
        literal = self.local if rule == "local" else clean_host(rule)
        return lambda ev: literal

    def __call__(self, ev: Event) -> bytes:
        if self.format == "raw":
            raw = _text(ev.get("raw", ""))
            m = _PRI.match(raw)
            if m is not None and int(m.group(1)) <= 191:
                return raw.encode("utf-8", "replace")
        stamp = event_stamp(ev)
        head = syslog_header(self.header, _pri(ev, self.facility), stamp, self.host(ev), self.app)
        return (head + self.body(ev, stamp.dev_time)).encode("utf-8", "replace")


def truncate(message: bytes, limit: int) -> bytes:
    """``message`` cut to at most ``limit`` bytes, never inside a UTF-8 character."""
    return message[:limit].decode("utf-8", "ignore").encode()


def frame(message: bytes, framing: str) -> bytes:
    """One message framed for a stream: ``LEN SP MSG`` (RFC 6587 octet counting) or ``MSG LF``.

    With LF framing a trailing LF is dropped and inner LFs are written ``#012`` (rsyslog's
    escape), so the receiver sees one message.
    """
    if framing == "octet-counted":
        return b"%d %b" % (len(message), message)
    if b"\n" in message:
        message = message.removesuffix(b"\n").replace(b"\n", b"#012")
    return message + b"\n"
