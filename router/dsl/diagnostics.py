"""Collects diagnostics while a configuration is loaded, attaching the offending source line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from dsrouter.errors import ConfigError, Diagnostic, Span


class Reporter:
    """Gathers every error and warning; the loader raises them together at the end."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._lines: dict[str, list[str]] = {}

    def add_source(self, path: str, text: str) -> None:
        """Remember a file's text so diagnostics can quote the line they point at."""
        self._lines[path] = text.splitlines()

    def error(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        self._add(code, message, span, help, "error")

    def warning(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        self._add(code, message, span, help, "warning")

    def _add(self, code: str, message: str, span: Span | None, help: str | None, sev: str) -> None:
        line = None
        if span is not None:
            lines = self._lines.get(span.path, ())
            if 0 < span.line <= len(lines):
                line = lines[span.line - 1]
        self.diagnostics.append(Diagnostic(code, message, span, help, line, sev))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]

    def raise_if_errors(self) -> None:
        """Raise :class:`ConfigError` with every error (and warning) found so far."""
        if self.errors:
            raise ConfigError(diagnostics=sorted(self.diagnostics, key=_order))


def _order(d: Diagnostic) -> tuple:
    span = d.span
    return (0, "", 0, 0) if span is None else (1, span.path, span.line, span.column)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """``"did you mean 'x'?"`` for the closest candidate, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def at(span: Span) -> str:
    """``path:line:column`` for mentioning a second location in a message or help line."""
    return f"{span.path}:{span.line}:{span.column}"
