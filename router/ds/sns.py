"""Deep Security events from Amazon SNS → normalized events (pure, never raises).

A notification's ``Message`` is a string holding a JSON array of events (some DS versions
send one object); each element becomes one event with the syslog road's field names, filled
through :data:`dsrouter.ds.sns_table.MAPPING`, plus every original property under its own
name (a property whose name is a normalized field goes under ``ext_shadowed``), ``format =
"sns"`` and the verified envelope under ``sns``. Two entry points:

* :func:`events_from_notification` — the ``sns`` input, after the signature was verified;
* :func:`parse_sns_document` — ``dsrouter dry-run``: a file holding a notification body, a bare
  event array (or object), or a Lambda event record; None when the text is none of these.

A ``Message`` that is not JSON still flows as one ``module == "unknown"`` event with a
``parse_error`` and its text in ``msg``, so nothing is dropped without a count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from itertools import islice
from typing import Any

import orjson

from dsrouter.ds.catalog import FIELDS, RESERVED
from dsrouter.ds.sns_table import EVENT_TYPES, rows_for

__all__ = ["events_from_message", "events_from_notification", "parse_sns_document"]

Event = dict[str, Any]

#: Properties kept per event (memory and field count may not follow what a sender chooses).
MAX_KEYS = 512
#: Events taken from one Message (a 256 KiB SNS message holds a few hundred at most).
MAX_EVENTS = 10_000
#: Envelope key → field under ``sns``.
_ENVELOPE = (
    ("Type", "type"),
    ("MessageId", "message_id"),
    ("TopicArn", "topic_arn"),
    ("Timestamp", "timestamp"),
    ("Subject", "subject"),
    ("SignatureVersion", "signature_version"),
)
#: Gson's HTML-safe escapes, when a relay escaped them twice and they survive the JSON parse.
_JAVA_ESCAPE = re.compile(r"\\u(003[cCdDeE]|002[67])")
#: Names an original property may not take: every normalized field the mapping can fill.
_TAKEN = RESERVED | frozenset(n for n in FIELDS if not n[:1].isupper())


def _loads(text: str | bytes) -> Any:
    """JSON text → value (orjson first; the stdlib also takes lone surrogate escapes)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _unescape(value: str) -> str:
    if "\\u" not in value:
        return value
    return _JAVA_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def envelope_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sns`` object of an event from a notification body (strings only)."""
    return {
        name: body[key] for key, name in _ENVELOPE if isinstance(body.get(key), str) and body[key]
    }


def _normalize(obj: Mapping[str, Any], sns: dict[str, Any], receipt: tuple[str, str, str]) -> Event:
    """One DS event object → one normalized event."""
    props = {
        k: (_unescape(v) if v.__class__ is str else v) for k, v in islice(obj.items(), MAX_KEYS)
    }
    event_type = props.get("EventType")
    event_type = event_type if isinstance(event_type, str) else ""
    module, product = EVENT_TYPES.get(event_type, ("unknown", ""))
    ev: Event = {"format": "sns", "vendor": "Trend Micro"}
    if product:
        ev["product"] = product
    ev["module"] = module
    for row in rows_for(event_type):
        if row.field in ev:
            continue
        for source in row.sources:
            if source == "" or source in props:
                value = row.convert(props.get(source))
                if value is not None:
                    ev[row.field] = value
                break
    _keep_originals(ev, props)
    if len(obj) > MAX_KEYS:
        ev["parse_error"] = f"more than {MAX_KEYS} properties: the rest is only in raw"
    ev["sns"] = sns
    ev["received_at"], ev["peer"], ev["input"] = receipt
    ev["raw"] = orjson.dumps(obj, default=str).decode()
    return ev


def _keep_originals(ev: Event, props: dict[str, Any]) -> None:
    shadowed = {k: props[k] for k in props if k in _TAKEN or k in ev}
    for k, v in props.items():
        if k not in shadowed:
            ev[k] = v
    if shadowed:
        ev["ext_shadowed"] = shadowed


def _unparsed(text: str, why: str, sns: dict[str, Any], receipt: tuple[str, str, str]) -> Event:
    """A Message (or array element) that holds no DS event: still an event, never lost."""
    ev: Event = {"format": "sns", "module": "unknown", "parse_error": why, "msg": text}
    ev["sns"] = sns
    ev["received_at"], ev["peer"], ev["input"] = receipt
    ev["raw"] = text
    return ev


def _from_value(value: Any, sns: dict[str, Any], receipt: tuple[str, str, str]) -> list[Event]:
    items = value if isinstance(value, list) else [value]
    out: list[Event] = []
    for index, item in enumerate(islice(items, MAX_EVENTS)):
        here = {**sns, "index": index}
        if isinstance(item, dict):
            out.append(_normalize(item, here, receipt))
        else:
            raw = orjson.dumps(item, default=str).decode()
            out.append(_unparsed(raw, "SNS event is not a JSON object", here, receipt))
    if len(items) > MAX_EVENTS and out:
        out[-1].setdefault("parse_error", f"more than {MAX_EVENTS} events: the rest was dropped")
    return out


def events_from_message(
    message: str, sns: dict[str, Any], input: str, peer: str, received_at: str
) -> list[Event]:
    """The events of one ``Message`` string (an empty array gives none). Never raises."""
    receipt = (received_at, peer, input)
    try:
        value = _loads(message)
    except (ValueError, RecursionError):
        return [_unparsed(message, "SNS Message is not JSON", {**sns, "index": 0}, receipt)]
    try:
        return _from_value(value, sns, receipt)
    except Exception as exc:  # a bug must not lose the message
        why = f"SNS parser failure: {type(exc).__name__}"
        return [_unparsed(message, why, {**sns, "index": 0}, receipt)]


def events_from_notification(
    body: Mapping[str, Any], input: str, peer: str, received_at: str
) -> list[Event]:
    """The events of a verified Notification body (its ``Message`` and envelope)."""
    message = body.get("Message")
    return events_from_message(
        message if isinstance(message, str) else "", envelope_fields(body), input, peer, received_at
    )


def _is_event(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("EventType"), str)


def parse_sns_document(
    text: str, source: str = "dry-run", received_at: str = ""
) -> list[Event] | None:
    """The events of an SNS JSON document, or None when ``text`` is not one.

    Accepted: a notification body (``Type`` = ``Notification`` with a ``Message`` string), a
    bare event array (``[{"EventType": ...}, ...]``) or object, and a Lambda event record
    (``{"Records": [{"Sns": {...}}]}``). ``source`` becomes the events' ``input``. Nothing is
    verified: this is for files, not for the network.
    """
    stripped = text.strip()
    if stripped[:1] not in ("{", "["):
        return None
    try:
        value = _loads(stripped)
    except (ValueError, RecursionError):
        return None
    receipt = (received_at, "", source)
    if isinstance(value, list) and value and all(_is_event(v) for v in value[:MAX_EVENTS]):
        return _from_value(value, {}, receipt)
    if _is_event(value):
        return _from_value(value, {}, receipt)
    if not isinstance(value, dict):
        return None
    if value.get("Type") == "Notification" and isinstance(value.get("Message"), str):
        return events_from_notification(value, source, "", received_at)
    return _lambda_records(value, source, received_at)


def _lambda_records(value: dict, source: str, received_at: str) -> list[Event] | None:
    """``{"Records": [{"EventSource": "aws:sns", "Sns": {...}}]}`` (names as Lambda spells
    them: ``SigningCertUrl``, ``Subject: null``)."""
    records = value.get("Records")
    if not isinstance(records, list) or not records:
        return None
    out: list[Event] = []
    for record in records:
        sns = record.get("Sns") if isinstance(record, dict) else None
        if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
            return None
        out.extend(events_from_notification(sns, source, "", received_at))
    return out
