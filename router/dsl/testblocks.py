"""Checks ``test "..." { ... }`` blocks; the checked AST nodes are what the test runner gets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import at, did_you_mean
from dsrouter.dsl.values import ValueContext, resolve


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
    for decl in decls:
        _test(decl, route_names, output_names, ctx, field_type)
    return list(decls)


def _test(decl: ast.TestDecl, routes, outputs, ctx: ValueContext, field_type) -> None:
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
    for item in decl.items:
        if isinstance(item, ast.ExpectRoutes):
            _names(item.names, routes, "route", "E224", ctx)
        elif isinstance(item, ast.ExpectOutputs):
            _names(item.names, outputs, "output", "E201", ctx)
        elif isinstance(item, ast.ExpectField):
            _field(item, ctx)
            if field_type is not None and isinstance(item.field, ast.Field):
                field_type(item.field)


def _names(node: ast.ListValue, known, kind: str, code: str, ctx) -> None:
    for item in node.items:
        if not (isinstance(item, ast.Literal) and isinstance(item.value, str)):
            ctx.reporter.error("E217", f"expected a {kind} name as a string", item.span)
            continue
        if item.value not in known:
            help = did_you_mean(item.value, known)
            ctx.reporter.error(code, f"unknown {kind} '{item.value}'", item.span, help)


def _field(item: ast.ExpectField, ctx: ValueContext) -> None:
    field = item.field
    if isinstance(field, ast.Subscript):
        help = f'only extension keys can be indexed: ext["{field.key}"]'
        ctx.reporter.error("E218", f"'{field.name}' cannot be indexed", field.span, help)
    resolve(item.value, ctx)  # reports env()/file() problems
