"""Collects diagnostics while a configuration is loaded, attaching the offending source line.

Source lines are quoted with secrets masked: the string after ``KEY =`` for every secret
option name (``mask``), and every span the checker marks with :meth:`Reporter.redact`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable

from dsrouter.errors import ConfigError, Diagnostic, Span

_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)("?)')


def blank_strings(text: str) -> str:
    """Every string literal in ``text`` as ``"***"`` of the same width (carets stay put)."""
    return _STRING.sub(lambda s: '"' + "*" * len(s[1]) + s[2], text)


def redact_line(line: str, span: Span) -> str:
    """``line`` with the string literal at a one-line ``span`` masked."""
    if span.end_line not in (None, span.line) or not span.end_column:
        return line
    start, end = span.column - 1, span.end_column - 1
    return line[:start] + blank_strings(line[start:end]) + line[end:]


class Reporter:
    """Gathers every error and warning; the loader raises them together at the end."""

    def __init__(self, mask: Callable[[str], str] | None = None) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._lines: dict[str, list[str]] = {}
        self._mask = mask or (lambda line: line)

    def add_source(self, path: str, text: str) -> None:
        """Remember a file's text so diagnostics can quote the line they point at."""
        self._lines[path] = text.splitlines()

    def redact(self, span: Span) -> None:
        """Mask a one-line span (a secret literal) in the quoted source, also in diagnostics
        already reported on that line."""
        lines = self._lines.get(span.path)
        if lines is None or not 0 < span.line <= len(lines):
            return
        lines[span.line - 1] = redact_line(lines[span.line - 1], span)
        for i, d in enumerate(self.diagnostics):
            if d.span is not None and (d.span.path, d.span.line) == (span.path, span.line):
                line = self._mask(lines[span.line - 1])
                self.diagnostics[i] = dataclasses.replace(d, source_line=line)

    def error(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        self._add(code, message, span, help, "error")

    def warning(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        self._add(code, message, span, help, "warning")

    def _add(self, code: str, message: str, span: Span | None, help: str | None, sev: str) -> None:
        line = None
        if span is not None:
            lines = self._lines.get(span.path, ())
            if 0 < span.line <= len(lines):
                line = self._mask(lines[span.line - 1])
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
