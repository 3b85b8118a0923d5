"""Checked routes → plain Python closures and a :class:`RouteTable` (no eval, no exec).

Field access, constants and the comparison kind are bound once, at compile time. Semantics:
a missing field (or ``None``) is null; every comparison or membership test with null is false
except ``!=`` and ``not in``; numbers compare numerically, strings exactly, and a string never
equals a number. ``true``/``false`` only equal booleans. IP literals match both ``ipaddress``
objects and strings holding the same address.
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

from dsrouter.dsl import ast
from dsrouter.dsl.config import Config, Route

Predicate = Callable[[dict], bool]
Getter = Callable[[dict], Any]

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NUMS = frozenset({int, float})
_IPS = (ipaddress.IPv4Address, ipaddress.IPv6Address)


class Decision(NamedTuple):
    """What happens to one event: routes whose actions ran, outputs in order, dropped."""

    routes: tuple[str, ...]
    outputs: tuple[str, ...]
    dropped: bool


NO_ROUTE = Decision((), (), False)


# ---- values -----------------------------------------------------------------------------


def getter(field: ast.Field) -> Getter:
    """``event.get(name)`` for a top-level field; a nested walk for ``syslog.hostname``."""
    if len(field.path) == 1:
        return operator.methodcaller("get", field.path[0])
    first, rest = field.path[0], field.path[1:]

    def get_nested(event: dict) -> Any:
        value = event.get(first)
        for key in rest:
            if value.__class__ is not dict:
                return None
            value = value.get(key)
        return value

    return get_nested


def kind(value: Any) -> Any:
    """The comparison kind: values of different kinds are never equal nor ordered."""
    cls = value.__class__
    if cls is bool:
        return bool
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float
    if isinstance(value, str):
        return str
    return cls


def generic_compare(op: str, a: Any, b: Any) -> bool:
    """The reference semantics of ``a OP b`` for any two values (null = None)."""
    if a is None or b is None or kind(a) is not kind(b):
        return op == "!="
    if op not in ("==", "!=") and kind(a) not in (float, str):
        return False
    return _OPS[op](a, b)


def _as_ip(value: Any) -> Any:
    if isinstance(value, _IPS):
        return value
    if value.__class__ is str:
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            return None
    return None


# ---- expressions ------------------------------------------------------------------------


def compile_expr(node: ast.Node) -> Predicate:
    """A closure ``event -> bool`` for a checked condition."""
    if isinstance(node, ast.BoolOp):
        left, right = compile_expr(node.left), compile_expr(node.right)
        if node.op == "and":
            return lambda e: left(e) and right(e)
        return lambda e: left(e) or right(e)
    if isinstance(node, ast.Not):
        inner = compile_expr(node.operand)
        return lambda e: not inner(e)
    if isinstance(node, ast.Compare):
        return _compare(node.op, node.left, node.right)
    if isinstance(node, ast.Member):
        test = _member(node.left, node.right)
        return (lambda e: not test(e)) if node.negated else test
    raise TypeError(f"cannot compile {type(node).__name__}: the checker should have refused it")


def _compare(op: str, left: ast.Node, right: ast.Node) -> Predicate:
    if isinstance(left, ast.Literal) and isinstance(right, ast.Literal):
        result = generic_compare(op, left.value, right.value)
        return lambda e: result
    if isinstance(left, ast.Literal):
        op, left, right = _FLIP[op], right, left
    get = getter(left)
    if isinstance(right, ast.Field):
        other, fn = getter(right), generic_compare
        return lambda e: fn(op, get(e), other(e))
    return _compare_const(op, get, right.value)


def _compare_const(op: str, get: Getter, const: Any) -> Predicate:
    fn = _OPS[op]
    k = kind(const)
    if k is str and op in ("==", "!="):
        return (lambda e: get(e) == const) if op == "==" else (lambda e: get(e) != const)
    if k is str:
        return lambda e: (v := get(e)).__class__ is str and fn(v, const)
    if k is float:
        nums = _NUMS
        if op == "!=":
            return lambda e: not ((v := get(e)).__class__ in nums and v == const)
        return lambda e: (v := get(e)).__class__ in nums and fn(v, const)
    if k is bool:
        return (lambda e: get(e) is const) if op == "==" else (lambda e: get(e) is not const)
    if isinstance(const, _IPS):
        return (
            (lambda e: _as_ip(get(e)) == const)
            if op == "=="
            else (lambda e: _as_ip(get(e)) != const)
        )
    return lambda e: generic_compare(op, get(e), const)


def _member(left: ast.Node, right: ast.ListValue) -> Predicate:
    values = [item.value for item in right.items]
    if isinstance(left, ast.Literal):
        result = any(generic_compare("==", left.value, v) for v in values)
        return lambda e: result
    get = getter(left)
    table: dict[type, frozenset] = {}
    for cls, accept in ((str, str), (int, float), (float, float), (bool, bool)):
        table[cls] = frozenset(v for v in values if kind(v) is accept)
    ips = frozenset(v for v in values if isinstance(v, _IPS))
    table = {cls: s for cls, s in table.items() if s}
    if not ips:
        lookup = table.get
        return lambda e: (s := lookup((v := get(e)).__class__)) is not None and v in s

    def member_ip(event: dict) -> bool:
        v = get(event)
        s = table.get(v.__class__)
        if s is not None and v in s:
            return True
        return _as_ip(v) in ips

    return member_ip


# ---- the route table --------------------------------------------------------------------


class RouteTable:
    """Routes compiled for the hot path; :meth:`decide` returns interned :class:`Decision`."""

    def __init__(self, routes: list[Route], unmatched: Route | None) -> None:
        ordered = [r for r in routes if r is not unmatched]
        self.route_names: tuple[str, ...] = tuple(r.name for r in routes)
        self._routes = ordered
        self._steps = tuple(
            (None if r.when is None else compile_expr(r.when), r.cont or False, i)
            for i, r in enumerate(ordered)
        )
        self._single = tuple(self._combine((i,)) for i in range(len(ordered)))
        self._cache: dict[tuple[int, ...], Decision] = {}
        self._unmatched = NO_ROUTE
        if unmatched is not None:
            self._unmatched = Decision((unmatched.name,), unmatched.outputs, unmatched.drop)

    def _combine(self, matched: tuple[int, ...]) -> Decision:
        routes = [self._routes[i] for i in matched]
        outputs = tuple(dict.fromkeys(o for r in routes for o in r.outputs))
        return Decision(tuple(r.name for r in routes), outputs, routes[-1].drop)

    def decide(self, event: dict) -> Decision:
        """Where ``event`` goes: first match wins unless the route says ``continue``."""
        matched: tuple[int, ...] = ()
        for pred, cont, i in self._steps:
            if pred is None or pred(event):
                if not cont:
                    if not matched:
                        return self._single[i]
                    return self._lookup((*matched, i))
                matched += (i,)
        if matched:
            return self._lookup(matched)
        return self._unmatched

    def _lookup(self, matched: tuple[int, ...]) -> Decision:
        decision = self._cache.get(matched)
        if decision is None:
            decision = self._cache[matched] = self._combine(matched)
        return decision


def compile_routes(config: Config) -> RouteTable:
    """Compile a checked configuration's routes."""
    return RouteTable(list(config.routes), config.unmatched)
