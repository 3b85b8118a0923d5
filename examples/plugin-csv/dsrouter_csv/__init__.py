"""A third-party dsrouter output: chosen event fields as CSV rows, one file."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

from dsrouter.api import Event, Option, Output, OutputContext, OutputType, RetryLater, hookimpl


class CsvOutput(Output):
    """Append one CSV row per event with the configured ``fields``."""

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        super().__init__(name, options, context)
        self.path = os.path.join(context.data_dir, os.path.basename(options["path"]))
        self.fields = [str(f) for f in options["fields"]]
        self.fh = None

    def open(self) -> None:
        new = not os.path.exists(self.path)
        self.fh = open(self.path, "a", newline="", encoding="utf-8")
        if new:
            csv.writer(self.fh).writerow(self.fields)

    def send(self, events: Sequence[Event]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        for ev in events:
            writer.writerow(["" if ev.get(f) is None else ev.get(f) for f in self.fields])
        try:
            self.fh.write(buf.getvalue())
        except OSError as exc:  # disk full and the like: worth another try later
            raise RetryLater(str(exc)) from exc

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()

    def describe(self) -> str:
        return self.path


@hookimpl
def dsrouter_register_outputs(register) -> None:
    """Register the ``csv`` output type."""
    register(
        OutputType(
            "csv",
            CsvOutput,
            (
                Option("path", "string", help="file name under data_dir"),
                Option("fields", "list", ["received_at", "module", "host", "name"], help="columns"),
            ),
            help="chosen fields as CSV rows",
        )
    )
