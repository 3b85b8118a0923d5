"""The title and the markdown body of the issue opened for one Deep Security event.

Every value taken from the event is shown in a code span (or, for the raw message, a fenced
block): an event cannot add links, images, ``@mentions`` or ``#references`` to the issue.
"""

from __future__ import annotations

import re
from typing import Any

from dsrouter.api import Event

TITLE_MAX = 256  # GitHub refuses longer titles (422)
CELL_MAX = 300
RAW_MAX = 4000

#: ``(label, field)`` rows of the summary table, shown when the event has the field. ``owner``
#: and ``criticality`` are there when a rule set them (``set owner = asset_owner(host)``).
ROWS = (
    ("host", "host"),
    ("owner", "owner"),
    ("criticality", "criticality"),
    ("severity", "severity"),
    ("signature", "signature_id"),
    ("event", "name"),
    ("source", "src"),
    ("source port", "spt"),
    ("destination", "dst"),
    ("destination port", "dpt"),
    ("action", "act"),
    ("user", "suser"),
    ("file", "filePath"),
    ("tenant", "tenant"),
    ("received", "received_at"),
    ("event_id", "event_id"),
)


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def title_of(event: Event) -> str:
    """``[DS intrusion_prevention] Generic SQLi on web-01 (severity 8)``."""
    module = _one_line(event.get("module") or "unknown")
    name = _one_line(event.get("name") or "event")
    host = _one_line(event.get("host") or "an unknown host")
    title = f"[DS {module}] {name} on {host}"
    if event.get("severity") is not None:
        title += f" (severity {_one_line(event['severity'])})"
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"


def _cell(value: Any) -> str:
    text = _one_line(value)[:CELL_MAX].replace("`", "'").replace("|", "\\|")
    return f"`{text}`"


def _fenced(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def body_of(event: Event) -> str:
    """A short markdown summary: what happened where, who owns it, and the event_id."""
    module = _one_line(event.get("module") or "unknown")
    lines = [f"Deep Security event, module {_cell(module)}.", "", "| | |", "| --- | --- |"]
    for label, field in ROWS:
        value = event.get(field)
        if value is not None and value != "":
            lines.append(f"| {label} | {_cell(value)} |")
    raw = event.get("raw")
    if raw:
        text = str(raw) if len(str(raw)) <= RAW_MAX else str(raw)[:RAW_MAX] + " …"
        lines += [
            "",
            "<details><summary>raw message</summary>",
            "",
            _fenced(text),
            "",
            "</details>",
        ]
    lines += ["", "_Opened by dsrouter (dsrouter-assets)._"]
    return "\n".join(lines) + "\n"
