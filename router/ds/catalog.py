"""The field catalogue: every name a normalized event can carry, the module table, the aliases.

This module is the single source for the names the DSL checks against (:data:`FIELDS`), the
signature-ID → module table (:func:`classify`, FORMATS §3.1), the per-module meaning of the
custom ``csN``/``cnN`` slots (:data:`ALIASES`), which keys become integers
(:data:`INT_KEYS`) and the LEEF → CEF key map. ``python -m dsrouter.ds.catalog`` prints the
field reference page kept in ``docs/fields.md``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from dsrouter.ds import sns_table

__all__ = [
    "ALIASES",
    "FIELDS",
    "INT_KEYS",
    "LEEF_TO_CEF",
    "MODULES",
    "RESERVED",
    "FieldInfo",
    "classify",
    "render_markdown",
]

FieldType = Literal["int", "string", "ip", "float", "bool", "object"]


class FieldInfo(NamedTuple):
    """What the catalogue knows about one field name."""

    type: FieldType
    description: str
    source: str


MODULES: tuple[str, ...] = (
    "system",
    "anti_malware",
    "web_reputation",
    "firewall",
    "intrusion_prevention",
    "integrity_monitoring",
    "log_inspection",
    "application_control",
    "device_control",
    "unknown",
)

MANAGER_PRODUCTS = frozenset({"Deep Security Manager", "Workload Security Manager"})
AGENT_PRODUCTS = frozenset({"Deep Security Agent"})

#: FORMATS §3.1 for agent events: (first ID, last ID, module), checked in order.
AGENT_ID_RANGES: tuple[tuple[int, int, str], ...] = (
    (10, 10, "intrusion_prevention"),
    (20, 21, "firewall"),
    (30, 30, "integrity_monitoring"),
    (40, 40, "log_inspection"),
    (100, 199, "firewall"),
    (200, 899, "intrusion_prevention"),
    (1_000_000, 1_999_999, "intrusion_prevention"),
    (2_000_000, 2_999_999, "integrity_monitoring"),
    (3_000_000, 3_999_999, "log_inspection"),
    (4_000_000, 4_999_999, "anti_malware"),
    (5_000_000, 5_999_999, "web_reputation"),
    (6_000_000, 6_999_999, "application_control"),
    (7_000_000, 7_999_999, "device_control"),
)

_classified: dict[tuple[str | None, int | str | None], str] = {}


def classify(product: str | None, signature_id: int | str | None) -> str:
    """The module of an event: by Device Product first, then by signature ID (FORMATS §3.1)."""
    key = (product, signature_id)
    module = _classified.get(key)
    if module is None:
        module = _classify(product, signature_id)
        if len(product or "") <= 64 and len(str(signature_id)) <= 16:  # bounded memory
            if len(_classified) >= 4096:
                _classified.clear()
            _classified[key] = module
    return module


def _classify(product: str | None, signature_id: int | str | None) -> str:
    if product in MANAGER_PRODUCTS:
        return "system"
    if product not in AGENT_PRODUCTS:
        return "unknown"
    if isinstance(signature_id, str):
        if not (signature_id.isascii() and signature_id.isdigit() and len(signature_id) < 12):
            return "unknown"
        signature_id = int(signature_id)
    if not isinstance(signature_id, int) or isinstance(signature_id, bool):
        return "unknown"
    for low, high, module in AGENT_ID_RANGES:
        if low <= signature_id <= high:
            return module
    return "unknown"


#: LEEF attribute names that DS writes differently from CEF (FORMATS §5).
LEEF_TO_CEF: dict[str, str] = {
    "usrName": "suser",
    "srcPort": "spt",
    "dstPort": "dpt",
    "srcMAC": "smac",
    "dstMAC": "dmac",
    "sev": "severity",
}

#: (slot, alias) per module: the meaning of DS custom slots, keyed on the slot, never the label.
ALIASES: dict[str, tuple[tuple[str, str], ...]] = {
    "intrusion_prevention": (
        ("cs1", "ips_note"),
        ("cn2", "dpi_reason"),
        ("cn3", "packet_position"),
        ("cs5", "stream_position"),
        ("cs6", "ips_flags"),
        ("cs2", "tcp_flags"),
        ("cs3", "fragmentation"),
        ("cs4", "icmp"),
    ),
    "firewall": (("cs2", "tcp_flags"), ("cs3", "fragmentation"), ("cs4", "icmp")),
    "anti_malware": (
        ("cn2", "quarantine_file_size"),
        ("cs3", "infected_resource"),
        ("cs4", "resource_type"),
        ("cs5", "risk_level"),
        ("cs6", "container"),
    ),
    "application_control": (("cs1", "action_reason"), ("cs2", "sha1"), ("cs3", "md5")),
    "log_inspection": (("cs1", "li_description"),),
    "device_control": (("vendor", "device_vendor"),),
}

_ALIAS_DOCS = {
    "ips_note": "rule note: printable text (spaces as _) or base64; often a CVE ID",
    "dpi_reason": "IPS reason code (old agents)",
    "packet_position": "position in the packet of the data that triggered the event",
    "stream_position": "position in the stream",
    "ips_flags": "bit sum: 1 truncated, 2 log overflow, 4 suppressed, 8 packet data, 16 earlier",
    "tcp_flags": "TCP flags: raw byte (hex) then names, e.g. 0x00 ACK PSH",
    "fragmentation": "IP fragmentation bits (DF, MF, a number); may be empty",
    "icmp": "ICMP type and code separated by a space",
    "quarantine_file_size": "size of the quarantined file",
    "infected_resource": "infected resource (spyware/grayware)",
    "resource_type": "resource type code (spyware): 10 files, 11 registry, 12 cookies...",
    "risk_level": "risk level (spyware): 0, 25, 50, 75, 100",
    "container": "container the file was found in: image | name | id",
    "action_reason": "reason for the action, e.g. notWhitelisted",
    "sha1": "SHA-1 of the software",
    "md5": "MD5 of the software",
    "li_description": "the Log Inspection sub-rule that fired",
    "device_vendor": "Device Control: the device's vendor (the `vendor` extension key)",
}

#: Aliases of string slots that hold numbers: converted to int when the text is one.
INT_ALIASES = frozenset({"stream_position", "ips_flags", "resource_type", "risk_level"})

_CS_LABEL = "the label DS sent with {0}; the text differs between DS versions"

# name: (type, description, source)  -- extension keys as DS writes them in CEF.
_EXTENSION: dict[str, tuple[FieldType, str]] = {
    "act": ("string", "action taken (Deny, Log, Reset, IDS:Reset, Quarantine, detectOnly...)"),
    "aggregationType": ("int", "how Application Control folded events together (0 = none)"),
    "cat": ("string", "LEEF category (System, Anti-Malware, Firewall...)"),
    "cn1": ("int", "host identifier: the computer's ID in the manager"),
    "cn1Label": ("string", _CS_LABEL.format("cn1") + " (always 'Host ID')"),
    "cn2": ("int", "custom number 2 (IPS reason code, anti-malware quarantine file size)"),
    "cn2Label": ("string", _CS_LABEL.format("cn2")),
    "cn3": ("int", "custom number 3 (IPS packet position)"),
    "cn3Label": ("string", _CS_LABEL.format("cn3")),
    "cnt": ("int", "number of times the event repeated in a row"),
    "computerName": ("string", "Device Control: computer name"),
    "desc": ("string", "LEEF description (system events: the alert text)"),
    "device": ("string", "Device Control: device name"),
    "deviceType": ("int", "Device Control: device type code"),
    "dmac": ("string", "destination MAC address (LEEF dstMAC)"),
    "domainName": ("string", "Device Control: the computer's domain"),
    "dpt": ("int", "destination port (LEEF dstPort)"),
    "dst": ("ip", "destination IP address"),
    "duser": ("string", "target user parsed from a log entry"),
    "dvc": ("ip", "the protected computer's name when it is an IPv4 address"),
    "dvchost": ("string", "the protected computer's host name or IPv6 address"),
    "fileHash": ("string", "Application Control: SHA-256 of the software"),
    "fileInCompressedFile": ("string", "Anti-Malware: the file inside an archive"),
    "fileName": ("string", "Device Control: file accessed"),
    "filePath": ("string", "path of the file (malware, monitored entity, software)"),
    "fname": ("string", "Log Inspection: the log source the entry came from"),
    "fsize": ("int", "file size in bytes"),
    "in": ("int", "inbound bytes read"),
    "model": ("string", "Device Control: device product name"),
    "msg": (
        "string",
        "details (verdict, scan type, changed attributes, log text); for"
        " format syslog: the syslog message text",
    ),
    "oldfilePath": ("string", "Integrity Monitoring: previous name of a renamed entity"),
    "out": ("int", "outbound bytes read"),
    "permission": ("int", "Device Control: reason code the access was blocked"),
    "processName": ("string", "Device Control: process that accessed the device"),
    "proto": ("string", "transport protocol name (TCP, UDP, ICMP...)"),
    "repeatCount": ("int", "number of occurrences folded into the event"),
    "request": ("string", "Web Reputation: the URL requested"),
    "result": ("string", "Anti-Malware: result of the action"),
    "serial": ("string", "Device Control: device serial number"),
    "shost": ("string", "Log Inspection: source host in the log entry"),
    "smac": ("string", "source MAC address (LEEF srcMAC)"),
    "spt": ("int", "source port (LEEF srcPort)"),
    "sproc": ("string", "Integrity Monitoring: process that made the change"),
    "src": ("ip", "source IP address (system events: the manager's address)"),
    "suid": ("int", "Application Control: numeric ID of the account"),
    "suser": ("string", "source user / DS user who caused the event (LEEF usrName)"),
    "target": ("string", "system events: what the event is about (user, computer, rule...)"),
    "targetID": ("int", "system events: the target's ID in the manager"),
    "targetType": ("string", "system events: kind of target (Host...)"),
    "xff": ("string", "last X-Forwarded-For address"),
    "TrendMicroDsBehaviorRuleID": ("string", "Anti-Malware: behaviour-monitoring rule ID"),
    "TrendMicroDsBehaviorType": ("string", "Anti-Malware: behaviour-monitoring event type"),
    "TrendMicroDsCommandLine": ("string", "Anti-Malware: command line the process ran"),
    "TrendMicroDsCve": ("string", "Anti-Malware: CVE matched by the behaviour"),
    "TrendMicroDsDetectionConfidence": ("int", "Anti-Malware: % match with the ML model"),
    "TrendMicroDsFileMD5": ("string", "MD5 of the file (upper-case hex)"),
    "TrendMicroDsFileSHA1": ("string", "SHA-1 of the file (upper-case hex)"),
    "TrendMicroDsFileSHA256": ("string", "SHA-256 of the file (upper-case hex)"),
    "TrendMicroDsFrameType": ("string", "Ethernet frame type (IP, IPv6...)"),
    "TrendMicroDsMalwareTarget": ("string", "what the malware tried to affect, or Multiple"),
    "TrendMicroDsMalwareTargetCount": ("int", "Anti-Malware: number of target files"),
    "TrendMicroDsMalwareTargetType": ("string", "kind of resource (File System, Process...)"),
    "TrendMicroDsMitre": ("string", "Anti-Malware: MITRE technique matched"),
    "TrendMicroDsPacketData": ("string", "packet data, base64 (packet capture on)"),
    "TrendMicroDsProcess": ("string", "Anti-Malware: process name (behaviour monitoring)"),
    "TrendMicroDsProcessPid": ("int", "Anti-Malware: process ID"),
    "TrendMicroDsRelevantDetectionNames": ("string", "probable threat types, ;-separated"),
    "TrendMicroDsTags": ("string", "event tags (auto-tagging)"),
    "TrendMicroDsTenant": ("string", "tenant name (Primary on a single-tenant manager)"),
    "TrendMicroDsTenantId": ("int", "tenant ID (0 for Primary); empty text stays a string"),
}
for _n in range(1, 7):
    _EXTENSION[f"cs{_n}"] = ("string", f"custom string {_n}; see the aliases for its meaning")
    _EXTENSION[f"cs{_n}Label"] = ("string", _CS_LABEL.format(f"cs{_n}"))

#: Extension keys converted to int when their text is an integer (``-?[0-9]{1,18}``).
INT_KEYS = frozenset(k for k, (t, _) in _EXTENSION.items() if t == "int")

_HEADER: dict[str, tuple[FieldType, str]] = {
    "vendor": ("string", "Device Vendor (Trend Micro)"),
    "product": ("string", "Device Product (Deep Security Agent / Manager)"),
    "product_version": ("string", "Device Version: the manager's version when relayed"),
    "signature_id": ("int", "Signature ID / LEEF EventID: the event class (integer when numeric)"),
    "name": ("string", "event name (LEEF: the name attribute)"),
    "severity": ("int", "event severity 0-10 (LEEF: sev)"),
    "cef_version": ("int", "CEF version (0)"),
    "leef_version": ("string", "LEEF version (1.0 or 2.0)"),
}
_DERIVED: dict[str, tuple[FieldType, str]] = {
    "module": ("string", "one of: " + ", ".join(MODULES) + " (product first, then ID)"),
    "host": ("string", "the protected computer: dvchost, else dvc, else syslog.hostname"),
    "host_id": ("int", "cn1 as an integer: the computer's ID in the manager"),
    "tenant": ("string", "TrendMicroDsTenant"),
    "tenant_id": ("int", "TrendMicroDsTenantId (integer when numeric)"),
    "ext_shadowed": ("object", "extension keys that collide with a reserved name: {key: value}"),
}
_SYSLOG: dict[str, tuple[FieldType, str]] = {
    "syslog": ("object", "the syslog envelope (empty object for bare CEF/LEEF)"),
    "syslog.facility": ("int", "facility from PRI"),
    "syslog.severity": ("int", "severity from PRI (DS always sends 6)"),
    "syslog.timestamp": ("string", "ISO-8601; RFC 3164 stamps get a year and the local zone"),
    "syslog.hostname": ("string", "sender host; may hold spaces; absent when missing"),
    "syslog.appname": ("string", "RFC 5424 APP-NAME or an RFC 3164 TAG (e.g. a relay's syslog:)"),
    "syslog.procid": ("string", "RFC 5424 PROCID or the TAG's [pid]"),
    "syslog.msgid": ("string", "RFC 5424 MSGID"),
    "syslog.structured_data": ("object", "RFC 5424 SD as {sd_id: {param: value}}"),
    "syslog.version": ("int", "RFC 5424 version (1)"),
}
_RECEIPT: dict[str, tuple[FieldType, str]] = {
    "received_at": ("string", "when the router received the message"),
    "peer": ("string", "sender address"),
    "input": ("string", "name of the input (listener)"),
    "raw": ("string", "the message as received (UTF-8, invalid bytes replaced)"),
    "format": (
        "string",
        "cef, leef, syslog (valid syslog, not CEF/LEEF), sns (an SNS JSON event) or unknown",
    ),
    "parse_error": ("string", "short reason, only when something could not be parsed"),
    "event_id": (
        "string",
        "unique id the daemon gives each event at receipt (kept by retries, "
        "restarts and dead-letter replay)",
    ),
    "truncated": (
        "bool",
        "true when the message was cut (connection closed mid-message at "
        "shutdown); absent otherwise",
    ),
}


def _alias_fields() -> dict[str, tuple[FieldType, str]]:
    out: dict[str, tuple[FieldType, str]] = {}
    for module, pairs in ALIASES.items():
        for slot, alias in pairs:
            typ, _ = _EXTENSION.get(slot, ("string", ""))
            typ = "int" if alias in INT_ALIASES else typ
            prev = out.get(alias)
            where = f"{slot} in {module}"
            text = f"{prev[1]}, {where}" if prev else f"{_ALIAS_DOCS[alias]}; from {where}"
            out[alias] = (typ, text)
    return out


def _build() -> dict[str, FieldInfo]:
    fields: dict[str, FieldInfo] = {}
    for source, table in (
        ("header", _HEADER),
        ("derived", _DERIVED),
        ("alias", _alias_fields()),
        ("extension", _EXTENSION),
        ("syslog", _SYSLOG),
        ("receipt", _RECEIPT),
        ("sns", sns_table.SNS_FIELDS),
    ):
        for name, (typ, desc) in table.items():
            if name in ("dvc", "src", "dst"):
                typ = "ip"
            if source == "extension" and name in LEEF_TO_CEF.values():
                leef = next(k for k, v in LEEF_TO_CEF.items() if v == name)
                source_text = f"extension (LEEF {leef})"
            else:
                source_text = source
            fields.setdefault(name, FieldInfo(typ, desc, source_text))
    return fields


FIELDS: dict[str, FieldInfo] = _build()

#: Names an extension key may not take (header, derived, alias, receipt, ``syslog[.*]``, and
#: the SNS road's ``time`` and ``sns[.*]``).
RESERVED = frozenset(
    n
    for n, f in FIELDS.items()
    if f.source in ("header", "derived", "alias", "receipt", "syslog", "sns")
)


def render_markdown() -> str:
    """The field reference page (``docs/fields.md``)."""
    lines = [
        "# Normalized event fields",
        "",
        "Generated by `python -m dsrouter.ds.catalog`; do not edit by hand.",
        "",
        "Every event is a flat JSON object except `syslog`. Extension keys keep their CEF",
        "names (LEEF names are mapped), values unescaped; integer-typed keys become integers",
        "only when the text is an integer, otherwise the text is kept. Header and derived",
        "fields win over same-named extension keys, which are kept under `ext_shadowed`.",
        'Keys not listed here still appear under their own name (use `ext["key"]`).',
        "",
        "| field | type | source | description |",
        "| --- | --- | --- | --- |",
    ]
    for name, info in FIELDS.items():
        desc = info.description.replace("|", "\\|")
        lines.append(f"| `{name}` | {info.type} | {info.source} | {desc} |")
    lines += ["", "## Module classification", "", "| product | signature ID | module |"]
    lines.append("| --- | --- | --- |")
    for product in sorted(MANAGER_PRODUCTS):
        lines.append(f"| {product} | any | system |")
    for low, high, module in AGENT_ID_RANGES:
        ids = f"{low:,}" if low == high else f"{low:,}–{high:,}"
        lines.append(f"| Deep Security Agent | {ids} | {module} |")
    lines.append("| anything else | | unknown |")
    lines += ["", "## Custom slot aliases", "", "| module | slot | alias |", "| --- | --- | --- |"]
    for module, pairs in ALIASES.items():
        lines += [f"| {module} | `{slot}` | `{alias}` |" for slot, alias in pairs]
    lines += ["", "## LEEF attribute names", "", "| LEEF | CEF |", "| --- | --- |"]
    lines += [f"| `{k}` | `{v}` |" for k, v in LEEF_TO_CEF.items()]
    lines += sns_table.render_markdown()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
