"""What the ``windows_eventlog`` output writes for one event: pure functions, tested anywhere.

One normalized event becomes one :class:`Record`, the arguments of ``ReportEventW``:

* **type** from the DS severity (CEF 0-10): ``error_severity`` and up is an error,
  ``warning_severity`` and up a warning, anything lower (or no severity) information; an
  event dsrouter could not parse is a warning;
* **category** from the module (:data:`CATEGORIES`, 0 for ``unknown``);
* **event ID** ``event_id_base + 1000 x category + (signature ID mod 1000)``: a DS signature ID
  (1000552) does not fit the 16 bits Event Viewer shows, so its last three digits ride in the
  ID and the whole ID in the strings. The top 16 bits (the "qualifiers": severity, customer
  and facility bits) stay 0, because the generic message file registered by
  ``dsrouter eventlog install-source`` defines its ``%1`` entries with qualifiers 0 and Event
  Viewer looks messages up by the full 32-bit value;
* **strings** in a fixed order (:data:`FIELDS` after the message), so filters and forwarders
  can rely on the positions;
* optional **raw data**: the message as received, UTF-8, capped.

Limits (``ReportEventW``): one string holds at most 31,839 UTF-16 code units; raw data above
61,440 bytes fails with RPC_S_INVALID_BOUND; a whole record at most 0x3FFFF bytes. Here every
field is cut at :data:`MAX_FIELD`, the message at ``max_message`` and all strings together at
:data:`MAX_TOTAL` (what one maximal string takes, which Microsoft documents to work), with a
visible marker where something was cut. Values come from the sender: NUL (which would end the
string early) becomes U+FFFD and ``%%`` before a digit (which Event Viewer would replace with a
parameter message) gets a zero-width space between the two signs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: ``ReportEventW`` event types.
ERROR, WARNING, INFORMATION = 0x0001, 0x0002, 0x0004
TYPE_NAMES = {ERROR: "error", WARNING: "warning", INFORMATION: "information"}

#: Module -> event category (shown as "(N)" in Event Viewer's Task Category column).
CATEGORIES: dict[str, int] = {
    "unknown": 0,
    "anti_malware": 1,
    "web_reputation": 2,
    "firewall": 3,
    "intrusion_prevention": 4,
    "integrity_monitoring": 5,
    "log_inspection": 6,
    "application_control": 7,
    "device_control": 8,
    "system": 9,
}
ID_SPAN = 1000  # event IDs per category
#: Event IDs are 16 bits with the qualifiers left at 0: the base may go up to this.
MAX_EVENT_ID_BASE = 0xFFFF - (max(CATEGORIES.values()) + 1) * ID_SPAN + 1

MAX_STRING = 31_839  # UTF-16 code units in one ReportEventW string (Windows Vista and later)
MAX_TOTAL = MAX_STRING  # all strings of one record together
MAX_FIELD = 1024  # each of the field strings after the message
MAX_RAW_DATA = 61_440  # bytes of raw data (RPC_S_INVALID_BOUND above)

#: The strings after the message (%2, %3, ...): event field, label in the message.
FIELDS: tuple[tuple[str, str], ...] = (
    ("name", "Name"),
    ("severity", "Severity"),
    ("module", "Module"),
    ("signature_id", "Signature ID"),
    ("host", "Host"),
    ("src", "Source"),
    ("spt", "Source port"),
    ("dst", "Destination"),
    ("dpt", "Destination port"),
    ("act", "Action"),
    ("event_id", "dsrouter event ID"),
    ("received_at", "Received at"),
)
#: Left out of the message's list of other fields: shown above, or bulky and kept elsewhere.
_NOT_LISTED = frozenset(
    {f for f, _ in FIELDS} | {"raw", "syslog", "cef_version", "leef_version", "format"}
)
_LABEL_KEY = re.compile(r"^c[sn]\d+Label$|^cfp\d+Label$|^flexString\d+Label$")
_PERCENT = re.compile(r"%%(?=\d)")


@dataclass(frozen=True)
class Layout:
    """The checked options that shape a record."""

    error_severity: int = 8
    warning_severity: int = 4
    event_id_base: int = 0
    max_message: int = 8192
    raw_data: bool = False
    max_raw_data: int = 4096

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> Layout:
        """The layout of an output's options; ValueError when they do not fit together."""
        layout = cls(
            error_severity=opts.get("error_severity", 8),
            warning_severity=opts.get("warning_severity", 4),
            event_id_base=opts.get("event_id_base", 0),
            max_message=opts.get("max_message", 8192),
            raw_data=opts.get("raw_data", False),
            max_raw_data=int(opts.get("max_raw_data", 4096)),
        )
        for problem in (
            check_severity(layout.error_severity),
            check_severity(layout.warning_severity),
            check_event_id_base(layout.event_id_base),
            check_max_message(layout.max_message),
            check_max_raw_data(layout.max_raw_data),
        ):
            if problem:
                raise ValueError(problem)
        if layout.warning_severity > layout.error_severity:
            raise ValueError("warning_severity must not be above error_severity")
        return layout


@dataclass(frozen=True)
class Record:
    """The arguments of one ``ReportEventW`` call."""

    type: int
    category: int
    event_id: int
    strings: tuple[str, ...]
    data: bytes | None = None


# ---- option checks (``dsrouter check`` runs them through Option.validate) ----------------


def check_severity(value: int) -> str | None:
    return None if 0 <= value <= 11 else "expected a DS severity from 0 to 10 (11: never)"


def check_event_id_base(value: int) -> str | None:
    if 0 <= value <= MAX_EVENT_ID_BASE:
        return None
    return f"expected 0 to {MAX_EVENT_ID_BASE} (event IDs must fit in 16 bits)"


def check_max_message(value: int) -> str | None:
    return None if 256 <= value <= MAX_STRING else f"expected 256 to {MAX_STRING} characters"


def check_max_raw_data(value: int) -> str | None:
    return None if 0 <= value <= MAX_RAW_DATA else f"expected at most {MAX_RAW_DATA} bytes"


def check_name(value: str) -> str | None:
    """A source or log name: a registry key name under ...\\Services\\EventLog."""
    if not value.strip():
        return "must not be empty"
    if "\\" in value or "/" in value:
        return "must not contain \\ or /"
    if len(value) > 200:
        return "expected at most 200 characters"
    if any(ord(c) < 32 for c in value):
        return "must not contain control characters"
    return None


def check_log(value: str) -> str | None:
    if value.lower() == "security":
        return "events cannot be written to the Security log (Windows reserves it)"
    return check_name(value)


# ---- the mapping -------------------------------------------------------------------------


def event_type(event: Mapping[str, Any], layout: Layout) -> int:
    severity = event.get("severity")
    if not isinstance(severity, int) or isinstance(severity, bool):
        return WARNING if "parse_error" in event else INFORMATION
    if severity >= layout.error_severity:
        return ERROR
    if severity >= layout.warning_severity:
        return WARNING
    return INFORMATION


def category(event: Mapping[str, Any]) -> int:
    module = event.get("module")
    return CATEGORIES.get(module, 0) if isinstance(module, str) else 0


def event_id(event: Mapping[str, Any], layout: Layout) -> int:
    """``base + 1000 x category + (signature ID mod 1000)``; always within 0..65535."""
    sig = event.get("signature_id")
    if isinstance(sig, str) and sig.isascii() and sig.isdigit():
        sig = int(sig)
    low = sig % ID_SPAN if isinstance(sig, int) and not isinstance(sig, bool) else 0
    return layout.event_id_base + ID_SPAN * category(event) + low


def render(event: Mapping[str, Any], layout: Layout) -> Record:
    """The record for one event (never raises for odd values: each is shown as text)."""
    fields = [cut(clean(text(event.get(key))), MAX_FIELD) for key, _ in FIELDS]
    room = MAX_TOTAL - sum(units(f) for f in fields)
    message = cut(clean(message_text(event)), min(layout.max_message, room))
    data = None
    if layout.raw_data and layout.max_raw_data:
        raw = event.get("raw")
        data = text(raw).encode("utf-8", "replace")[: layout.max_raw_data] if raw else None
    return Record(
        type=event_type(event, layout),
        category=category(event),
        event_id=event_id(event, layout),
        strings=(message, *fields),
        data=data or None,
    )


def message_text(event: Mapping[str, Any]) -> str:
    """The readable description (%1): a title, the key fields, then every other field."""
    lines = [_title(event), ""]
    for key, label in FIELDS[1:]:
        value = event.get(key)
        if value is not None and value != "":
            lines.append(f"{label}: {text(value)}")
    others = [
        f"  {_labelled(event, key)}: {text(value)}"
        for key, value in event.items()
        if key not in _NOT_LISTED and not _LABEL_KEY.match(key) and value not in (None, "")
    ]
    if others:
        lines += ["", "Other fields:", *others]
    if "parse_error" in event and event.get("raw"):
        lines += ["", f"Message as received: {text(event['raw'])}"]
    return "\r\n".join(lines)


def _labelled(event: Mapping[str, Any], key: str) -> str:
    """``cn1 (Host ID)`` for a custom slot whose label came with the event."""
    label = event.get(key + "Label")
    return f"{key} ({text(label)})" if label else key


def _title(event: Mapping[str, Any]) -> str:
    name = event.get("name")
    if name:
        return text(name)
    if "parse_error" in event:
        return f"Unparsed message from {text(event.get('peer') or 'unknown peer')}"
    return "Deep Security event"


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def clean(value: str) -> str:
    """Make a sender's text safe to hand to ReportEventW and Event Viewer."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if "%%" in value:
        value = _PERCENT.sub("%\u200b%", value)
    return value


def units(value: str) -> int:
    """Length in UTF-16 code units (what the API counts)."""
    return len(value) + sum(1 for c in value if ord(c) > 0xFFFF)


def cut(value: str, limit: int) -> str:
    """``value`` within ``limit`` UTF-16 code units, ending in a marker when it was cut."""
    total = units(value)
    if total <= limit:
        return value
    marker = f" [... cut: {total:,} characters in all]"
    keep = max(0, limit - len(marker))
    return _prefix_units(value, keep) + marker if keep else marker[: max(limit, 0)]


def _prefix_units(value: str, limit: int) -> str:
    """The longest prefix of ``value`` within ``limit`` code units (no split surrogate pair)."""
    if len(value) == units(value):
        return value[:limit]
    used = 0
    for i, c in enumerate(value):
        used += 2 if ord(c) > 0xFFFF else 1
        if used > limit:
            return value[:i]
    return value
