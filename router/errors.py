"""The dsrouter exception tree and the one diagnostic renderer.

    DsrouterError
    ├── ConfigError      configuration could not be loaded or checked (carries diagnostics)
    └── StartupError     the daemon could not start (bind failure, unwritable directory)

Only the CLI catches these; it prints the rendered message without a traceback and exits with
the documented code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A position in a source file: 1-based line and column, and the end of the span."""

    path: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None


@dataclass(frozen=True)
class Diagnostic:
    """One error or warning about a configuration, with a stable code such as ``E201``."""

    code: str
    message: str
    span: Span | None = None
    help: str | None = None
    source_line: str | None = None
    severity: str = "error"  # "error" or "warning"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def render(self) -> str:
        """``path:line:column: error[CODE]: message``, then the source line, a caret, help."""
        where = ""
        if self.span is not None:
            where = f"{self.span.path}:{self.span.line}:{self.span.column}: "
        out = [f"{where}{self.severity}[{self.code}]: {self.message}"]
        if self.span is not None and self.source_line is not None:
            width = 1
            if self.span.end_line == self.span.line and self.span.end_column:
                width = max(1, self.span.end_column - self.span.column)
            out.append(f"  {self.source_line.rstrip()}")
            out.append("  " + " " * (self.span.column - 1) + "^" * width)
        if self.help:
            out.append(f"  help: {self.help}")
        return "\n".join(out)

    def to_json(self) -> dict:
        d: dict = {"severity": self.severity, "code": self.code, "message": self.message}
        if self.span is not None:
            d.update(path=self.span.path, line=self.span.line, column=self.span.column)
        if self.help:
            d["help"] = self.help
        return d


class DsrouterError(Exception):
    """Base of every error dsrouter raises on purpose."""


@dataclass
class ConfigError(DsrouterError):
    """A configuration failed to load or check; ``diagnostics`` holds every problem found."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


class StartupError(DsrouterError):
    """The daemon could not start: a listener failed to bind, a directory is not writable."""
