"""Checks ``test "..." { ... }`` blocks; the checked AST nodes are what the test runner gets.

An ``expect FIELD == VALUE`` whose value calls ``env()`` or ``file()`` comes out with the call
replaced by :class:`~dsrouter.dsl.ast.Resolved`, like constants in ``when``: the runner reads
``.value`` of every expectation, whatever ``check`` accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import at, did_you_mean
from dsrouter.dsl.values import INVALID, ValueContext, resolve


def check_tests(
    decls: Sequence[ast.TestDecl],
    route_names: Sequence[str],
    output_names: set[str],
    ctx: ValueContext,
    field_type: Callable[[ast.Field], str] | None = None,
) -> list[ast.TestDecl]:
    """Check every test block (problems go to the reporter) and return them in order.

    ``field_type`` checks ``expect FIELD == ...`` names against the event schema (and the
    fields routes ``set``), reporting unknown names like in ``when`` conditions.
    """
    return [_test(decl, route_names, output_names, ctx, field_type) for decl in decls]


def _test(decl: ast.TestDecl, routes, outputs, ctx: ValueContext, field_type) -> ast.TestDecl:
    rep = ctx.reporter
    inputs = [i for i in decl.items if isinstance(i, ast.TestInput)]
    for extra in inputs[1:]:
        help = f"the first input is at {at(inputs[0].span)}; write one test per message"
        rep.error("E222", "a test takes exactly one input", extra.span, help)
    if not inputs:
        rep.error(
            "E222",
            f'test "{decl.description}" has no input',
            decl.span,
            'add: input "<syslog message>"',
        )
    items: list[ast.TestItem] = []
    for item in decl.items:
        if isinstance(item, ast.ExpectRoutes):
            _names(item.names, routes, "route", "E224", ctx)
        elif isinstance(item, ast.ExpectOutputs):
            _names(item.names, outputs, "output", "E201", ctx)
        elif isinstance(item, ast.ExpectField):
            item = _field(item, ctx)
            if field_type is not None and isinstance(item.field, ast.Field):
                field_type(item.field)
        items.append(item)
    return ast.TestDecl(decl.description, tuple(items), decl.span)


def _names(node: ast.ListValue, known, kind: str, code: str, ctx) -> None:
    for item in node.items:
        if not (isinstance(item, ast.Literal) and isinstance(item.value, str)):
            ctx.reporter.error("E217", f"expected a {kind} name as a string", item.span)
            continue
        if item.value not in known:
            help = did_you_mean(item.value, known)
            ctx.reporter.error(code, f"unknown {kind} '{item.value}'", item.span, help)


def _field(item: ast.ExpectField, ctx: ValueContext) -> ast.ExpectField:
    field = item.field
    if isinstance(field, ast.Subscript):
        help = f'only extension keys can be indexed: ext["{field.key}"]'
        ctx.reporter.error("E218", f"'{field.name}' cannot be indexed", field.span, help)
    return ast.ExpectField(field, _resolved(item.value, ctx), item.span)


def _resolved(node: ast.Node, ctx: ValueContext) -> ast.Node:
    """``node`` with every ``env()``/``file()`` call replaced by its value (errors reported)."""
    if isinstance(node, ast.ListValue):
        return ast.ListValue(tuple(_resolved(i, ctx) for i in node.items), node.span)
    if not isinstance(node, ast.Call):
        return node
    value = resolve(node, ctx)
    return node if value is INVALID else ast.Resolved(value, node, True, node.span)
