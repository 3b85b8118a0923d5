"""The ``stdout`` output: events as JSON lines on standard output."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import orjson

from dsrouter.api import Event, Option, Output, OutputType, hookimpl


class StdoutOutput(Output):
    """Write each batch as JSON lines to stdout and flush."""

    def send(self, events: Sequence[Event]) -> None:
        opt = orjson.OPT_APPEND_NEWLINE | (orjson.OPT_INDENT_2 if self.options["pretty"] else 0)
        out = sys.stdout.buffer
        out.write(b"".join(orjson.dumps(ev, option=opt) for ev in events))
        out.flush()

    def describe(self) -> str:
        return "standard output"


@hookimpl
def dsrouter_register_outputs(register) -> None:
    """Register the ``stdout`` output type."""
    register(
        OutputType(
            "stdout",
            StdoutOutput,
            (Option("pretty", "bool", False, help="indent the JSON"),),
            help="JSON lines on standard output",
        )
    )
