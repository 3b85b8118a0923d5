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
from dsrouter.dsl.chains import chain
from dsrouter.dsl.compiler import ExprCompiler
from dsrouter.dsl.pretty import pretty_expr, regex
from dsrouter.dsl.throttle import format_duration
from dsrouter.options import Duration, Size

ARROW = "  →  "


class Tracer:
    """Evaluates conditions step by step with the compiled closures."""

    def __init__(self, compiler: ExprCompiler) -> None:
        self.compiler = compiler

    def evaluate(self, node: ast.Node, event: dict, steps: list[str]) -> bool:
        if isinstance(node, ast.BoolOp):  # a run of one operator in a loop: no deep recursion
            decisive = node.op == "or"
            for operand in chain(node, node.op):
                if self.evaluate(operand, event, steps) is decisive:
                    return decisive
            return not decisive
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
            return f"{val(node.left, event)} matches {regex(node.pattern, node.flags)}"
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
    """Source text of an expression: the canonical form, secrets shown as their call."""
    return pretty_expr(node)
