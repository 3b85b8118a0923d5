"""Tracing a condition for ``dry-run --explain``: which sub-expressions decided it, with values.

The tracer walks ``and``/``or``/``not`` itself (short-circuit honoured) and asks the compiled
closures of :class:`~dsrouter.dsl.compiler.ExprCompiler` for every test, so a trace can never
disagree with :meth:`RouteTable.decide`. Each test adds one step::

    severity >= 8  →  6 >= 8  →  false

Values from ``env()``/``file()`` are shown as the call that produced them, never as the value.
"""

from __future__ import annotations

import json
from typing import Any

from dsrouter.dsl import ast
from dsrouter.dsl.compiler import ExprCompiler
from dsrouter.dsl.throttle import format_duration
from dsrouter.options import Duration, Size

ARROW = "  →  "


class Tracer:
    """Evaluates conditions step by step with the compiled closures."""

    def __init__(self, compiler: ExprCompiler) -> None:
        self.compiler = compiler

    def evaluate(self, node: ast.Node, event: dict, steps: list[str]) -> bool:
        if isinstance(node, ast.BoolOp):
            left = self.evaluate(node.left, event, steps)
            if left is (node.op == "or"):
                return left
            return self.evaluate(node.right, event, steps)
        if isinstance(node, ast.Not):
            return not self.evaluate(node.operand, event, steps)
        result = bool(self.compiler.predicate(node)(event))
        shown = self._shown(node, event)
        text = render(node)
        middle = "" if shown == text else f"{ARROW}{shown}"
        steps.append(f"{text}{middle}{ARROW}{'true' if result else 'false'}")
        return result

    def _shown(self, node: ast.Node, event: dict) -> str:
        val = self._val
        if isinstance(node, ast.Compare):
            return f"{val(node.left, event)} {node.op} {val(node.right, event)}"
        if isinstance(node, ast.Member):
            word = "not in" if node.negated else "in"
            return f"{val(node.left, event)} {word} {render(node.right)}"
        if isinstance(node, ast.Matches):
            return f"{val(node.left, event)} matches {_regex(node)}"
        if isinstance(node, ast.StringTest):
            return f"{val(node.left, event)} {node.op} {val(node.right, event)}"
        if isinstance(node, ast.Call):
            args = ", ".join(val(a, event) for a in node.args)
            return f"{node.name}({args})"
        return render(node)

    def _val(self, node: ast.Node, event: dict) -> str:
        if self.compiler.constant(node)[0]:
            return render(node)
        return fmt(self.compiler.value(node)(event))


def fmt(value: Any) -> str:
    """A run-time value as the language would write it."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Duration):
        return format_duration(value)
    if isinstance(value, Size):
        return f"{int(value)}B"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    return str(value)


def render(node: ast.Node) -> str:
    """Source-like text of an expression."""
    if isinstance(node, ast.Field):
        return node.dotted
    if isinstance(node, ast.Literal):
        return fmt(node.value)
    if isinstance(node, ast.Resolved):
        return render(node.source) if node.secret else fmt(node.value)
    if isinstance(node, ast.ListValue):
        return "[" + ", ".join(render(i) for i in node.items) + "]"
    if isinstance(node, ast.Call):
        return f"{node.name}({', '.join(render(a) for a in node.args)})"
    if isinstance(node, ast.Compare):
        return f"{render(node.left)} {node.op} {render(node.right)}"
    if isinstance(node, ast.Member):
        word = "not in" if node.negated else "in"
        return f"{render(node.left)} {word} {render(node.right)}"
    if isinstance(node, ast.Matches):
        return f"{render(node.left)} matches {_regex(node)}"
    if isinstance(node, ast.StringTest):
        return f"{render(node.left)} {node.op} {render(node.right)}"
    if isinstance(node, ast.Not):
        return f"not {_paren(node.operand)}"
    if isinstance(node, ast.BoolOp):
        return f"{_paren(node.left, node.op)} {node.op} {_paren(node.right, node.op)}"
    return "?"


def _paren(node: ast.Node, op: str | None = None) -> str:
    text = render(node)
    if isinstance(node, ast.BoolOp) and node.op != op:
        return f"({text})"
    return text


def _regex(node: ast.Matches) -> str:
    return f"/{node.pattern}/{node.flags}"
