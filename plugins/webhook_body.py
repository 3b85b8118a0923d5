"""Request bodies of the ``webhook`` output: formats, the Slack and Teams presets, templates.

A :class:`Body` turns events into request bodies. ``format = "json"`` and the ``slack`` /
``teams`` presets send one request per event; ``"array"`` (a JSON array) and ``"ndjson"`` (one
JSON document per line) send one request per batch.

A ``template`` is plain text with ``{field}`` or ``{syslog.hostname}`` placeholders and ``{{`` /
``}}`` for literal braces. Substitution is plain string replacement (nothing is evaluated) and
the result is never scanned again. Every value is inserted as its text escaped for a JSON string
(quotes not added): a string as itself, a number or boolean as its JSON literal, a list or
object as its compact JSON, a missing field or null as the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

Event = dict[str, Any]

JSON = "application/json"
NDJSON = "application/x-ndjson"

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}|[{}]")
_MAX_VALUE = 500  # characters of one value in a Slack or Teams message


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


def lookup(event: Event, path: str) -> Any:
    """The value at a dotted field path (``syslog.hostname``), or None when missing."""
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | list | dict):
        return _dumps(value).decode()
    return str(value)


def json_escape(text: str) -> str:
    """``text`` escaped for the inside of a JSON string literal (no surrounding quotes)."""
    return orjson.dumps(text).decode()[1:-1]


class Template:
    """A compiled ``template`` option; raises ValueError on a lone brace."""

    def __init__(self, source: str) -> None:
        self.parts: list[str | tuple[str]] = []  # literal text, or (field path,)
        literal: list[str] = []
        pos = 0
        for m in _TOKEN.finditer(source):
            literal.append(source[pos : m.start()])
            pos = m.end()
            token = m.group(0)
            if m.group(1) is not None:
                self.parts.append("".join(literal))
                self.parts.append((m.group(1),))
                literal = []
            elif token in ("{{", "}}"):
                literal.append(token[0])
            else:
                raise ValueError(
                    f"template: lone '{token}' at offset {m.start()}: write '{token * 2}' for a "
                    "literal brace, or {field} for a value"
                )
        literal.append(source[pos:])
        self.parts.append("".join(literal))

    def render(self, event: Event) -> str:
        return "".join(
            p if isinstance(p, str) else json_escape(_text(lookup(event, p[0]))) for p in self.parts
        )


# ---- presets ------------------------------------------------------------------------------

_FACTS = (
    ("Severity", "severity"),
    ("Module", "module"),
    ("Host", "host"),
    ("Source", "src"),
    ("Destination", "dst"),
    ("Action", "act"),
    ("Signature", "signature_id"),
    ("Received", "received_at"),
)


def _short(value: Any) -> str:
    text = _text(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def summary(event: Event) -> tuple[str, list[tuple[str, str]]]:
    """A title and ``(label, value)`` facts for a chat message; values capped in length."""
    title = event.get("name") or event.get("raw") or "Deep Security event"
    facts = [(label, _short(event[key])) for label, key in _FACTS if event.get(key) is not None]
    return _short(title), facts


def _slack_escape(text: str) -> str:
    # Slack gives &, < and > meaning (links, @channel mentions); event text may not use them.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(event: Event) -> bytes:
    """``{"text": ...}`` for a Slack incoming webhook."""
    title, facts = summary(event)
    lines = [f"*{_slack_escape(title)}*"]
    lines += [f"{label}: {_slack_escape(value)}" for label, value in facts]
    return _dumps({"text": "\n".join(lines)})


def teams(event: Event) -> bytes:
    """A ``{"type": "message"}`` with one Adaptive Card, for a Teams workflow webhook."""
    title, facts = summary(event)
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts]},
        ],
    }
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
    return _dumps({"type": "message", "summary": title, "attachments": [attachment]})


PRESETS: dict[str, Callable[[Event], bytes]] = {"generic": _dumps, "slack": slack, "teams": teams}


class Body:
    """Renders the request body for one event or a batch, by format, preset and template."""

    def __init__(self, fmt: str, preset: str, template: str | None) -> None:
        if fmt not in ("json", "array", "ndjson"):
            raise ValueError('format: expected "json", "array" or "ndjson"')
        if preset not in PRESETS:
            raise ValueError('preset: expected "generic", "slack" or "teams"')
        self.per_event = fmt == "json" or preset != "generic"
        self.format = "json" if self.per_event else fmt
        self.content_type = NDJSON if self.format == "ndjson" else JSON
        self.item = PRESETS[preset]
        if template is not None:
            compiled = Template(template)
            self.item = lambda ev: compiled.render(ev).encode()

    def one(self, event: Event) -> bytes:
        return self.item(event)

    def batch(self, events: Sequence[Event]) -> bytes:
        items = [self.item(ev) for ev in events]
        if self.format == "ndjson":
            return b"".join(item + b"\n" for item in items)
        return b"[" + b",".join(items) + b"]"
