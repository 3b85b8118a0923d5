"""The checked configuration: what the loader hands to the daemon, the CLI and the compiler."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsrouter.dsl import ast
from dsrouter.errors import Diagnostic, Span


@dataclass(frozen=True)
class Block:
    """An ``input`` or ``output`` block: options resolved, checked and with defaults filled."""

    name: str
    type: str
    options: dict[str, Any]
    span: Span


@dataclass(frozen=True)
class Route:
    """A checked route. ``when`` is None for a route that matches every event.

    ``when`` and the ``sets`` expressions have ``env()``/``file()`` already resolved
    (:class:`~dsrouter.dsl.ast.Resolved`); ``throttle`` is the checked action, if any.
    """

    name: str
    when: ast.Node | None
    outputs: tuple[str, ...]
    cont: bool
    drop: bool
    span: Span
    name_span: Span | None = None
    throttle: ast.Throttle | None = None
    sets: tuple[ast.SetField, ...] = ()


@dataclass(frozen=True)
class Config:
    """A whole configuration: the main file plus everything it includes, checked."""

    settings: dict[str, Any]
    inputs: list[Block]
    outputs: list[Block]
    routes: list[Route]
    tests: list[ast.TestDecl]  # checked; run by dsrouter.ruletest
    warnings: list[Diagnostic]
    files: list[Path]
    base_dir: Path
    unmatched: Route | None = field(default=None)
    functions: dict[str, Any] = field(default_factory=dict)  # name -> dsrouter.api.Function

    def output(self, name: str) -> Block | None:
        """The output block called ``name``, if any."""
        return next((b for b in self.outputs if b.name == name), None)
