"""Helpers shared by the property-test files: spans, bounded settings, AST comparison."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import Reporter
from dsrouter.dsl.parser import parse
from dsrouter.errors import Span

SPAN = Span("gen", 1, 1, 1, 1)


def _build(make, *parts):
    """``st.builds`` without its call repr (huge for ASTs; Hypothesis warns about it)."""
    return st.tuples(*parts).map(lambda t: make(*t))


NOWHERE = Path(__file__).parent / "no-such-dir"  # includes and file() find nothing here
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def strip(node: object) -> object:
    """A comparable form of an AST: spans dropped, literal values tagged with their type.

    Tagging matters because ``1 == 1.0 == True`` and ``Duration(5) == 5.0`` in Python.
    """
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        fields = (
            (f.name, strip(getattr(node, f.name)))
            for f in dataclasses.fields(node)
            if not f.name.endswith("span")
        )
        return (type(node).__name__, *fields)
    if isinstance(node, tuple | list):
        return tuple(strip(n) for n in node)
    if isinstance(node, float):
        return (type(node).__name__, repr(node))
    return (type(node).__name__, node)


def reparse(text: str) -> ast.File:
    reporter = Reporter()
    parsed = parse(text, "gen", reporter)
    assert reporter.diagnostics == [], text
    assert parsed is not None, text
    return parsed


STRING_OPS = st.sampled_from(["contains", "startswith", "endswith"])
