"""The SNS road's mapping table: Deep Security's JSON event properties → normalized fields.

Deep Security and Workload Security publish each event to Amazon SNS as a JSON object of
``PascalCase`` properties (FORMATS §8, SNS.md §6). :data:`MAPPING` says which normalized
field (the names the syslog road gives the same event, see :mod:`dsrouter.ds.catalog`) each
property fills, for which ``EventType``, and how its value is turned into the CEF form
(``Action: 1`` of a ``PacketLog`` is ``act = "Deny"``, as in CEF). :data:`EVENT_TYPES` gives
the module and the CEF Device Product of each ``EventType``. Every original property is kept
as well, under its own name.

Pure data and small pure converters: :mod:`dsrouter.ds.catalog` imports this module for the
field reference page, so it imports nothing from the rest of the package. Tags in comments
say how sure a row is, as in FORMATS.md: [V] documented, [S] seen in samples, [P] plausible.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

AGENT = "Deep Security Agent"
MANAGER = "Deep Security Manager"

#: EventType → (module, CEF Device Product). Unknown types get module "unknown".
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "SystemEvent": ("system", MANAGER),  # [S]
    "PacketLog": ("firewall", AGENT),  # [S]
    "PayloadLog": ("intrusion_prevention", AGENT),  # [S]
    "AntiMalwareEvent": ("anti_malware", AGENT),  # [S]
    "WebReputationEvent": ("web_reputation", AGENT),  # [S]
    "IntegrityEvent": ("integrity_monitoring", AGENT),  # [S]
    "LogInspectionEvent": ("log_inspection", AGENT),  # [S]
    "AppControlEvent": ("application_control", AGENT),  # [S] Trend staff code
    "TestSNS": ("system", MANAGER),  # [P] the test message, like CEF's "Test Message"
}

SYSTEM = frozenset({"SystemEvent", "TestSNS"})
NETWORK = frozenset({"PacketLog", "PayloadLog"})
ALL: frozenset[str] = frozenset()  # a row for every event type

# ---- value tables: SNS value → the string CEF writes ----------------------------------------

#: PacketLog ``Action`` (0 Unknown, 1 Deny, 6 Log Only, 0x81 Detect Only: Deny) → CEF ``act``.
FIREWALL_ACT = {1: "Deny", 6: "Log", 0x81: "IDS:Deny"}  # [V] numbers, [S] CEF strings
#: PayloadLog ``Action`` → CEF ``act`` ("Block, Reset or Log", "IDS:" in detect-only mode).
IPS_ACT = {1: "Block", 2: "Reset", 3: "Insert", 4: "Delete", 5: "Replace", 6: "Log"}  # [V]/[P]
IPS_ACT.update({0x80 + k: f"IDS:{v}" for k, v in IPS_ACT.items() if k <= 5})
#: AntiMalwareEvent ``ScanResultString`` → CEF ``act`` (the action taken).  [S]/[P]
MALWARE_ACT = {
    "Quarantined": "Quarantine",
    "Deleted": "Delete",
    "Passed": "Pass",
    "Cleaned": "Clean",
    "Access Denied": "Deny Access",
    "Terminated": "Terminate",
}
#: AppControlEvent ``Action`` (a sentence) → CEF ``act``.  [V] sentences, [P] pairing
APP_CONTROL_ACT = {
    "Execution of Software Blocked by Rule": "blocked",
    "Execution of Unrecognized Software Blocked": "blocked",
    "Execution of Unrecognized Software Allowed": "detectOnly",
}
#: IntegrityEvent ``ChangeString`` → CEF ``act`` (lower-case in CEF).  [P]
INTEGRITY_ACT = frozenset({"created", "updated", "deleted", "renamed"})
#: AntiMalwareEvent ``ScanTypeString`` → CEF ``msg`` (the scan type).  [S]/[P]
SCAN_TYPE_MSG = {"Real Time": "Realtime", "Manual": "Manual", "Scheduled": "Scheduled"}
#: ``SeverityString`` / ``Severity`` → CEF severity 0-10: system Info/Warning/Error are 3/6/8,
#: rule severities Low/Medium/High/Critical are 3/6/8/10 (FORMATS §3.2).  [S]/[P]
SEVERITY_WORDS = {
    "info": 3,
    "low": 3,
    "warning": 6,
    "medium": 6,
    "error": 8,
    "high": 8,
    "critical": 10,
}
SEVERITY_LEVELS = {1: 3, 2: 6, 3: 8, 4: 10}
#: CEF severity of event types whose SNS form has none: firewall log-only 0 / deny 5,
#: anti-malware and application control 6 (FORMATS §3.2).  [S]
FIREWALL_SEVERITY = {1: 5, 6: 0, 0x81: 5}

# ---- converters ------------------------------------------------------------------------------


def same(value: Any) -> Any:
    """as sent"""
    return value


def integer(value: Any) -> int | None:
    """integer (a digit string too); anything else left out"""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
        return int(value)
    return None


def text(value: Any) -> str | None:
    """text; an empty string is left out (DS sends `"Tags": ""`; CEF has no such key)"""
    return value if isinstance(value, str) and value else None


def computer(value: Any) -> str | None:
    """the computer name from `name (display name) [instance]`"""
    if not isinstance(value, str):
        return None
    cut = min((i for i in (value.find(" ("), value.find(" [")) if i > 0), default=len(value))
    return value[:cut].strip() or None


def _ipv4(name: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(name), ipaddress.IPv4Address)
    except ValueError:
        return False


def computer_ipv4(value: Any) -> str | None:
    """the computer name, when it is an IPv4 address (as CEF `dvc`)"""
    name = computer(value)
    return name if name is not None and _ipv4(name) else None


def computer_host(value: Any) -> str | None:
    """the computer name, when it is not an IPv4 address (as CEF `dvchost`)"""
    name = computer(value)
    return name if name is not None and not _ipv4(name) else None


def iso_time(value: Any) -> str | None:
    """ISO 8601 time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC); unparseable ones left out"""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def severity(value: Any) -> int | None:
    """Info/Low 3, Warning/Medium 6, Error/High 8, Critical 10 (numbers 1-4 likewise)"""
    if isinstance(value, str):
        return SEVERITY_WORDS.get(value.strip().lower())
    number = integer(value)
    return SEVERITY_LEVELS.get(number) if number is not None else None


def lookup(table: dict) -> Callable[[Any], Any]:
    """A converter through a value table (values missing from it are left out)."""

    def convert(value: Any) -> Any:
        try:
            return table.get(value)
        except TypeError:  # an unhashable value (a list, an object)
            return None

    convert.__doc__ = "through a table: " + ", ".join(f"{k!r} → {v!r}" for k, v in table.items())
    return convert


def integrity_act(value: Any) -> str | None:
    """lower-case, when created, updated, deleted or renamed"""
    if isinstance(value, str) and value.lower() in INTEGRITY_ACT:
        return value.lower()
    return None


def constant(value: Any) -> Callable[[Any], Any]:
    """A converter that gives ``value`` whenever the event type has the row."""

    def convert(_: Any) -> Any:
        return value

    convert.__doc__ = f"always {value!r}"
    return convert


class Row(NamedTuple):
    """One row: ``field`` ← the first of ``sources`` present, through ``convert``.

    ``types`` limits the row to those ``EventType`` values (empty: every type). A converter
    that returns None leaves the field out. ``sources = ("",)`` marks a derived value that
    needs no property (see :func:`constant`).
    """

    field: str
    sources: tuple[str, ...]
    convert: Callable[[Any], Any] = same
    types: frozenset[str] = ALL


_AM = frozenset({"AntiMalwareEvent"})
_WR = frozenset({"WebReputationEvent"})
_IM = frozenset({"IntegrityEvent"})
_LI = frozenset({"LogInspectionEvent"})
_AC = frozenset({"AppControlEvent"})
_FW = frozenset({"PacketLog"})
_IPS = frozenset({"PayloadLog"})

#: The mapping, in the order fields are filled (a field set by an earlier row is kept).
MAPPING: tuple[Row, ...] = (
    # -- the computer and the tenant (every event type) [S]
    Row("host", ("Hostname", "ManagerNodeName"), computer),
    Row("dvc", ("Hostname",), computer_ipv4),
    Row("dvchost", ("Hostname",), computer_host),
    Row("host_id", ("HostID",), integer),
    Row("cn1", ("HostID",), integer),
    Row("tenant", ("TenantName",), text),
    Row("TrendMicroDsTenant", ("TenantName",), text),
    Row("tenant_id", ("TenantID",), integer),
    Row("TrendMicroDsTenantId", ("TenantID",), integer),
    Row("TrendMicroDsTags", ("Tags",), text),
    Row("time", ("LogDate",), iso_time),
    # -- the CEF header: signature ID, name, severity
    Row("signature_id", ("Number",), integer, SYSTEM),  # [S] Number = CEF signature ID
    Row("name", ("Title",), text, SYSTEM),  # [S]
    Row("name", ("Reason",), text, NETWORK | _IM),  # rule name or reason [S]/[P]
    Row("name", ("MalwareName",), text, _AM),  # [S]
    Row("name", ("",), constant("WebReputation"), _WR),  # CEF writes this name [S]
    Row("name", ("Reason", "OSSEC_Description"), text, _LI),  # [P]
    Row("severity", ("SeverityString", "Severity"), severity, SYSTEM | _IPS | _IM),  # [S]/[P]
    Row("severity", ("Action",), lookup(FIREWALL_SEVERITY), _FW),  # [S]
    Row("severity", ("",), constant(6), _AM | _AC),  # [S]
    # -- the action, with the strings CEF uses
    Row("act", ("Action",), lookup(FIREWALL_ACT), _FW),
    Row("act", ("Action",), lookup(IPS_ACT), _IPS),
    Row("act", ("ScanResultString",), lookup(MALWARE_ACT), _AM),
    Row("act", ("Action",), lookup(APP_CONTROL_ACT), _AC),
    Row("act", ("ChangeString",), integrity_act, _IM),
    # -- network events (firewall, intrusion prevention) [S]
    Row("src", ("SourceIP",), text, NETWORK),
    Row("dst", ("DestinationIP",), text, NETWORK),
    Row("spt", ("SourcePort",), integer, NETWORK),
    Row("dpt", ("DestinationPort",), integer, NETWORK),
    Row("smac", ("SourceMAC",), text, NETWORK),
    Row("dmac", ("DestinationMAC",), text, NETWORK),
    Row("proto", ("ProtocolString",), text, NETWORK),
    Row("cnt", ("RepeatCount",), integer, NETWORK),
    Row("TrendMicroDsFrameType", ("FrameString",), text, NETWORK),
    Row("TrendMicroDsPacketData", ("PacketData",), text, NETWORK),  # [P] Logstash map
    # -- system events [S]
    Row("suser", ("ActionBy",), text, SYSTEM),
    Row("target", ("TargetName",), text, SYSTEM),
    Row("targetID", ("TargetID",), integer, SYSTEM),
    Row("targetType", ("TargetType",), text, SYSTEM),
    Row("msg", ("Description",), text, SYSTEM),
    # -- anti-malware [S]
    Row("filePath", ("InfectedFilePath",), text, _AM),
    Row("msg", ("ScanTypeString",), lookup(SCAN_TYPE_MSG), _AM),
    Row("TrendMicroDsMalwareTargetType", ("AMTargetTypeString",), text, _AM),
    Row("TrendMicroDsMalwareTarget", ("Target",), text, _AM),  # [P] Logstash map
    Row("TrendMicroDsFileMD5", ("FileMD5",), text, _AM),  # [P] Logstash map
    Row("TrendMicroDsFileSHA1", ("FileSHA1",), text, _AM),
    Row("TrendMicroDsFileSHA256", ("FileSHA256",), text, _AM),  # [P] Logstash map
    Row("TrendMicroDsDetectionConfidence", ("ThreatProbability",), integer, _AM),  # [P]
    Row("TrendMicroDsRelevantDetectionNames", ("ProbableThreatType",), text, _AM),  # [P]
    # -- web reputation, integrity monitoring, log inspection [P]
    Row("request", ("URL",), text, _WR),
    Row("filePath", ("Key",), text, _IM),
    Row("suser", ("User",), text, _IM),
    Row("sproc", ("Process",), text, _IM),
    Row("li_description", ("OSSEC_Description",), text, _LI),
    Row("msg", ("OSSEC_FullLog",), text, _LI),
    Row("fname", ("OSSEC_Location",), text, _LI),
    Row("src", ("OSSEC_SourceIP",), text, _LI),
    Row("dst", ("OSSEC_DestinationIP",), text, _LI),
    Row("spt", ("OSSEC_SourcePort",), integer, _LI),
    Row("dpt", ("OSSEC_DestinationPort",), integer, _LI),
    Row("suser", ("OSSEC_SourceUser",), text, _LI),
    Row("duser", ("OSSEC_DestinationUser",), text, _LI),
)


def rows_for(event_type: str) -> tuple[Row, ...]:
    """The rows that apply to one ``EventType`` (cached)."""
    rows = _ROWS.get(event_type)
    if rows is None:
        rows = tuple(r for r in MAPPING if not r.types or event_type in r.types)
        if len(_ROWS) < 256:  # bounded: event types are attacker-controlled text
            _ROWS[event_type] = rows
    return rows


_ROWS: dict[str, tuple[Row, ...]] = {}

# ---- the catalogue's part: fields only the SNS road has ---------------------------------------

#: The SNS envelope under ``sns.`` (like the syslog envelope under ``syslog.``), and ``time``.
SNS_FIELDS: dict[str, tuple[Literal["int", "string", "ip", "float", "bool", "object"], str]] = {
    "time": ("string", "SNS road: the event's LogDate as YYYY-MM-DDTHH:MM:SS.mmmZ (UTC)"),
    "sns": ("object", "SNS road: the verified envelope of the notification (empty for a file)"),
    "sns.type": ("string", "the SNS message Type (Notification)"),
    "sns.message_id": ("string", "SNS MessageId (one per notification; a retry keeps it)"),
    "sns.topic_arn": ("string", "the topic the notification came from"),
    "sns.timestamp": ("string", "when SNS published the notification (ISO 8601, as sent)"),
    "sns.subject": ("string", "SNS Subject, when the publisher set one (DS does not)"),
    "sns.signature_version": ("string", "1 (SHA-1) or 2 (SHA-256)"),
    "sns.index": ("int", "position of the event in the notification's event array (from 0)"),
}


def render_markdown() -> list[str]:
    """The SNS section of ``docs/fields.md``: which fields each road fills, from what."""
    lines = [
        "",
        "## The SNS road",
        "",
        "Events from an `sns` input (or an SNS JSON file given to `dry-run`) have",
        '`format == "sns"` and the same field names as the syslog road, filled from Deep',
        "Security's JSON properties as below (generated from `dsrouter.ds.sns_table`). Every",
        "original property is kept too, under its own name (`HostID`, `Hostname`, `Action`...:",
        'use `ext["Hostname"]` in rules); one that collides with a normalized name goes under',
        "`ext_shadowed`. Java-style escapes such as `\\u003d` are decoded in string values.",
        "",
        "| EventType | module | product |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{t}` | {m} | {p} |" for t, (m, p) in EVENT_TYPES.items()]
    lines += ["", "| field | event types | from | how |", "| --- | --- | --- | --- |"]
    for row in MAPPING:
        types = ", ".join(sorted(row.types)) if row.types else "all"
        sources = " or ".join(f"`{s}`" for s in row.sources if s) or "—"
        how = (row.convert.__doc__ or "").strip().splitlines()[0].replace("|", "\\|")
        lines.append(f"| `{row.field}` | {types} | {sources} | {how} |")
    lines += [
        "",
        "Filled by both roads: `module`, `vendor`, `product`, `host`, `host_id`, `tenant`,",
        "`tenant_id`, `format`, `raw` (SNS: the event's JSON object), `received_at`, `peer`,",
        "`input`, `event_id`, `parse_error`, and the CEF names in the table above. Only the",
        "syslog road: `syslog.*`, `product_version`, `cef_version`, `leef_version`, the `csN` /",
        "`cnN` slots and their labels (SNS: `cn1` only), and `signature_id` for module events",
        "(their SNS form carries no rule ID: route them by `module`). Only the SNS road: `time`",
        "and `sns.*`.",
    ]
    return lines
