"""Checks ``when`` conditions: shapes the compiler supports, and what is not supported yet.

Parsed already but rejected with ``E290`` until a later release: CIDR ranges, ``matches``,
``contains``/``startswith``/``endswith`` and function calls.
"""

from __future__ import annotations

import ipaddress

from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import Reporter

_CONDITIONS = (ast.BoolOp, ast.Not, ast.Compare, ast.Member, ast.Matches, ast.StringTest)
_ORDERING = ("<", "<=", ">", ">=")
_NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_IPS = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def check_condition(node: ast.Node, rep: Reporter) -> None:
    """Report every problem in a ``when`` expression."""
    if isinstance(node, ast.BoolOp):
        check_condition(node.left, rep)
        check_condition(node.right, rep)
    elif isinstance(node, ast.Not):
        check_condition(node.operand, rep)
    elif isinstance(node, ast.Compare):
        _compare(node, rep)
    elif isinstance(node, ast.Member):
        _member(node, rep)
    elif isinstance(node, ast.Matches):
        rep.error("E290", "'matches' is not supported yet", node.span)
    elif isinstance(node, ast.StringTest):
        rep.error("E290", f"'{node.op}' is not supported yet", node.span)
    elif isinstance(node, ast.Call):
        rep.error("E290", f"function '{node.name}()' is not supported yet", node.span)
    else:
        help = "compare it: ==, !=, <, <=, >, >=, in, not in"
        rep.error("E217", f"expected a condition, found {_describe(node)}", node.span, help)


def _compare(node: ast.Compare, rep: Reporter) -> None:
    for side in (node.left, node.right):
        if not _scalar(side, rep):
            continue
        if node.op in _ORDERING and isinstance(side, ast.Literal):
            value = side.value
            if isinstance(value, bool) or isinstance(value, _IPS):
                msg = f"'{node.op}' compares numbers or strings, not {_describe(side)}"
                rep.error("E217", msg, side.span)


def _member(node: ast.Member, rep: Reporter) -> None:
    _scalar(node.left, rep)
    right = node.right
    word = "not in" if node.negated else "in"
    if isinstance(right, ast.Literal) and isinstance(right.value, _NETWORKS):
        rep.error("E290", "CIDR ranges in expressions are not supported yet", right.span)
    elif not isinstance(right, ast.ListValue):
        msg = f"'{word}' needs a list [...], found {_describe(right)}"
        rep.error("E217", msg, right.span)
    else:
        for item in right.items:
            if isinstance(item, ast.Literal):
                _scalar(item, rep)
            else:
                rep.error(
                    "E217", f"list items must be constants, found {_describe(item)}", item.span
                )


def _scalar(node: ast.Node, rep: Reporter) -> bool:
    """True when ``node`` is a field or a single constant the compiler can compare."""
    if isinstance(node, ast.Field):
        return True
    if isinstance(node, ast.Subscript):
        help = f'only extension keys can be indexed: ext["{node.key}"]'
        rep.error("E218", f"'{node.name}' cannot be indexed", node.span, help)
        return False
    if isinstance(node, ast.Literal):
        if isinstance(node.value, _NETWORKS):
            rep.error("E290", "CIDR ranges in expressions are not supported yet", node.span)
            return False
        return True
    if isinstance(node, ast.Call):
        rep.error("E290", f"function '{node.name}()' is not supported yet", node.span)
        return False
    rep.error("E217", f"expected a field or a constant, found {_describe(node)}", node.span)
    return False


def _describe(node: ast.Node) -> str:
    if isinstance(node, ast.ListValue):
        return "a list"
    if isinstance(node, ast.Field | ast.Subscript):
        return "a field"
    if isinstance(node, _CONDITIONS):
        return "a condition"
    if isinstance(node, ast.Literal):
        return _describe_value(node.value)
    return "a function call"


def _describe_value(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, _IPS):
        return "an IP address"
    if isinstance(value, _NETWORKS):
        return "a CIDR range"
    return "a number"
