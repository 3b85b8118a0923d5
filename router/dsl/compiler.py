"""Checked expressions → plain Python closures (no eval, no exec).

Field access, constants, regexes, networks and functions are bound once, at compile time.
Semantics: a missing field (or ``None``) is null; every comparison, membership or string test
with null is false except ``!=`` and ``not in``; numbers compare numerically (durations are
seconds, sizes bytes), strings exactly, and a string never equals a number. ``true``/``false``
only equal booleans. IP literals and CIDR ranges match event strings holding an address (parsed
through a bounded cache: 4,096 entries of at most 64 characters); a value that is not an
address is null-like for IP tests.
Functions return null for a null argument; a plugin function that raises also yields null.
"""

from __future__ import annotations

import ipaddress
import operator
import socket
from collections.abc import Callable, Mapping
from typing import Any

from dsrouter.api import Function
from dsrouter.dsl import ast
from dsrouter.dsl.chains import chain, cost, fuse
from dsrouter.dsl.exprcheck import compile_regex
from dsrouter.dsl.functions import BUILTINS

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
_NETS = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_IP_CACHE: dict[str, Any] = {}
_IP_CACHE_MAX = 4096  # entries; each key at most _IP_TEXT_MAX characters
_IP_TEXT_MAX = 64  # the longest IPv6 text with a zone is well under this
_MISS = object()
AF_INET = socket.AF_INET


# ---- values -----------------------------------------------------------------------------


def as_field(node: object) -> ast.Field:
    """``node`` as a field reference; the checker refuses anything else (e.g. ``name["k"]``)."""
    if not isinstance(node, ast.Field):
        raise TypeError(f"expected a field, not {type(node).__name__}: the checker refuses it")
    return node


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
    if isinstance(a, _IPS) or isinstance(b, _IPS):
        a, b = as_ip(a), as_ip(b)
    if a is None or b is None or kind(a) is not kind(b):
        return op == "!="
    if op not in ("==", "!=") and kind(a) not in (float, str):
        return False
    return _OPS[op](a, b)


def as_ip(value: Any) -> Any:
    """An ``ipaddress`` address for an address or a string holding one; else None."""
    if value.__class__ is str:
        if len(value) > _IP_TEXT_MAX:  # never an address; never a cache key
            return None
        ip = _IP_CACHE.get(value, _MISS)
        if ip is _MISS:
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                ip = None
            if len(_IP_CACHE) >= _IP_CACHE_MAX:
                _IP_CACHE.clear()
            _IP_CACHE[value] = ip
        return ip
    return value if isinstance(value, _IPS) else None


class ExprCompiler:
    """Compiles expressions; remembers each node's closure so ``explain`` reuses them."""

    def __init__(self, functions: Mapping[str, Function] | None = None) -> None:
        self.functions = {**(functions or {}), **BUILTINS}
        self.closures: dict[int, Callable] = {}
        self._keep: list[ast.Node] = []  # ids stay valid while the nodes live

    def constant(self, node: ast.Node) -> tuple[bool, Any]:
        """``(True, value)`` when ``node`` has the same value for every event."""
        if isinstance(node, ast.Literal | ast.Resolved):
            return True, node.value
        if isinstance(node, ast.ListValue):
            consts = [self.constant(i) for i in node.items]
            return all(c for c, _ in consts), [v for _, v in consts]
        if isinstance(node, ast.Call) and node.name in self.functions:
            func = self.functions[node.name]
            consts = [self.constant(a) for a in node.args]
            if func.pure and all(c for c, _ in consts):
                args = [v for _, v in consts]
                if any(a is None for a in args):
                    return True, None
                try:
                    return True, func.impl(*args)
                except Exception:
                    return False, None
        return False, None

    def value(self, node: ast.Node) -> Getter:
        """A closure ``event -> value`` for a value expression."""
        fn = self.closures.get(id(node))
        if fn is None:
            fn = self._value(node)
            self.closures[id(node)] = fn
            self._keep.append(node)
        return fn

    def _value(self, node: ast.Node) -> Getter:
        is_const, const = self.constant(node)
        if is_const:
            return lambda e: const
        if isinstance(node, ast.Field):
            return getter(node)
        if isinstance(node, ast.Call) and node.name == "exists":
            return self.predicate(node)
        if isinstance(node, ast.Call):
            return self._call(self.functions[node.name], [self.value(a) for a in node.args])
        raise TypeError(f"cannot compile {type(node).__name__} as a value")

    @staticmethod
    def _call(func: Function, args: list[Getter]) -> Getter:
        impl = func.impl
        if len(args) == 1:
            (arg,) = args

            def call1(event: dict) -> Any:
                v = arg(event)
                if v is None:
                    return None
                try:
                    return impl(v)
                except Exception:
                    return None

            return call1

        def call(event: dict) -> Any:
            vals = [a(event) for a in args]
            if None in vals:
                return None
            try:
                return impl(*vals)
            except Exception:
                return None

        return call

    # ---- conditions ----

    def predicate(self, node: ast.Node) -> Predicate:
        """A closure ``event -> bool`` for a checked condition."""
        fn = self.closures.get(id(node))
        if fn is None:
            fn = self._predicate(node)
            self.closures[id(node)] = fn
            self._keep.append(node)
        return fn

    def conjunction(self, nodes: list[ast.Node]) -> Predicate | None:
        """All of ``nodes``, cheapest first, in as few calls as possible; None for none.

        Every test is total and side-effect free, so the order of ``and`` operands cannot
        change the result: regexes and function calls run only when the cheap tests held.
        """
        if not nodes:
            return None
        return fuse([self.predicate(n) for n in sorted(nodes, key=cost)], True)

    def _predicate(self, node: ast.Node) -> Predicate:
        if isinstance(node, ast.BoolOp):
            if node.op == "and":
                both = self.conjunction(chain(node, "and"))
                assert both is not None, "an 'and' has two operands"
                return both
            return fuse([self.predicate(n) for n in chain(node, "or")], False)
        if isinstance(node, ast.Not):
            inner = self.predicate(node.operand)
            return lambda e: not inner(e)
        if isinstance(node, ast.Compare):
            return self._compare(node.op, node.left, node.right)
        if isinstance(node, ast.Member):
            return self._member(node.left, node.right, node.negated)
        if isinstance(node, ast.Matches):
            return self._matches(node)
        if isinstance(node, ast.StringTest):
            return self._strtest(node)
        if isinstance(node, ast.Call) and node.name == "exists":
            get = getter(as_field(node.args[0]))
            return lambda e: get(e) is not None
        if isinstance(node, ast.Call):
            call = self.value(node)
            return lambda e: call(e) is True
        raise TypeError(f"cannot compile {type(node).__name__}: the checker should refuse it")

    def _compare(self, op: str, left: ast.Node, right: ast.Node) -> Predicate:
        lc, lv = self.constant(left)
        rc, rv = self.constant(right)
        if lc and rc:
            result = generic_compare(op, lv, rv)
            return lambda e: result
        if lc:
            op, left, rv, rc = _FLIP[op], right, lv, True
        get = self.value(left)
        if rc:
            name = _top_name(left)
            fast = _top_compare(op, name, rv) if name is not None else None
            return fast or _compare_const(op, get, rv)
        other = self.value(right)
        return lambda e: generic_compare(op, get(e), other(e))

    def _member(self, left: ast.Node, right: ast.Node, negated: bool) -> Predicate:
        _, values = self.constant(right)
        values = values if isinstance(values, list) else [values]
        lc, lv = self.constant(left)
        if lc:
            result = member_test(lambda e: lv, values)({}) is not negated
            return lambda e: result
        name = _top_name(left)
        if name is not None and values and all(v.__class__ is str for v in values):
            strings = frozenset(values)
            if negated:
                return lambda e: not ((v := e.get(name)).__class__ is str and v in strings)
            return lambda e: (v := e.get(name)).__class__ is str and v in strings
        test = member_test(self.value(left), values, name)
        return (lambda e: not test(e)) if negated else test

    def _matches(self, node: ast.Matches) -> Predicate:
        search = compile_regex(node.pattern, node.flags).search
        name = _top_name(node.left)
        if name is not None:
            return lambda e: (v := e.get(name)).__class__ is str and search(v) is not None
        get = self.value(node.left)
        return lambda e: (v := get(e)).__class__ is str and search(v) is not None

    def _strtest(self, node: ast.StringTest) -> Predicate:
        get = self.value(node.left)
        rc, rv = self.constant(node.right)
        method = {"contains": str.__contains__, "startswith": str.startswith}.get(
            node.op, str.endswith
        )
        if rc:
            if rv.__class__ is not str:
                return lambda e: False
            return lambda e: (v := get(e)).__class__ is str and method(v, rv)
        other = self.value(node.right)
        return lambda e: (
            (v := get(e)).__class__ is str and (w := other(e)).__class__ is str and method(v, w)
        )


def _top_name(node: ast.Node) -> str | None:
    """The key of a top-level field (read inline with ``e.get(key)``: cheaper than a getter)."""
    return node.path[0] if isinstance(node, ast.Field) and len(node.path) == 1 else None


_NUM_TESTS: dict[str, Callable[[str, Any], Predicate]] = {
    "==": lambda n, c: lambda e: (v := e.get(n)).__class__ in _NUMS and v == c,
    "!=": lambda n, c: lambda e: not ((v := e.get(n)).__class__ in _NUMS and v == c),
    "<": lambda n, c: lambda e: (v := e.get(n)).__class__ in _NUMS and v < c,
    "<=": lambda n, c: lambda e: (v := e.get(n)).__class__ in _NUMS and v <= c,
    ">": lambda n, c: lambda e: (v := e.get(n)).__class__ in _NUMS and v > c,
    ">=": lambda n, c: lambda e: (v := e.get(n)).__class__ in _NUMS and v >= c,
}


def _top_compare(op: str, name: str, const: Any) -> Predicate | None:
    """``FIELD OP const`` for a top-level field with operators inline; None: no fast form."""
    k = kind(const)
    if k is str and op == "==":
        return lambda e: e.get(name) == const
    if k is str and op == "!=":
        return lambda e: e.get(name) != const
    if k is float and const.__class__ in _NUMS:
        return _NUM_TESTS[op](name, const)
    return None


def _compare_const(op: str, get: Getter, const: Any) -> Predicate:
    fn: Callable[[Any, Any], bool] = _OPS[op]
    k = kind(const)
    if const is None:
        return lambda e: op == "!="
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
        if op == "==":
            return lambda e: as_ip(get(e)) == const
        return lambda e: as_ip(get(e)) != const
    return lambda e: generic_compare(op, get(e), const)


def member_test(get: Getter, values: list, name: str | None = None) -> Predicate:
    """``get(e) in values`` where values may mix scalars, IP addresses and CIDR ranges.

    ``name``: the top-level key ``get`` reads, to read it inline. Dotted IPv4 strings are
    converted by ``inet_pton`` (as strict as ``ipaddress``: four decimal octets, no leading
    zeros), anything else through :func:`as_ip`.
    """
    table: dict[type, frozenset] = {}
    for cls, accept in ((str, str), (int, float), (float, float), (bool, bool)):
        table[cls] = frozenset(v for v in values if kind(v) is accept)
    table = {cls: s for cls, s in table.items() if s}
    ips = frozenset(v for v in values if isinstance(v, _IPS))
    nets: dict[int, list] = {4: [], 6: []}
    for v in values:
        if isinstance(v, _NETS):
            nets[v.version].append((int(v.network_address), int(v.netmask)))
    lookup = table.get
    if not ips and not nets[4] and not nets[6]:
        if name is not None:
            return lambda e: (s := lookup((v := e.get(name)).__class__)) is not None and v in s
        return lambda e: (s := lookup((v := get(e)).__class__)) is not None and v in s
    by_version = {4: tuple(nets[4]), 6: tuple(nets[6])}
    nets4, ips4 = by_version[4], frozenset(int(ip) for ip in ips if ip.version == 4)
    pton, from_bytes = socket.inet_pton, int.from_bytes

    def member_ip(event: dict) -> bool:
        v = event.get(name) if name is not None else get(event)
        s = lookup(v.__class__)
        if s is not None and v in s:
            return True
        if v.__class__ is str:
            try:
                n = from_bytes(pton(AF_INET, v), "big")
            except (OSError, ValueError):
                pass
            else:
                if n in ips4:
                    return True
                for net, mask in nets4:
                    if n & mask == net:
                        return True
                return False
        ip = as_ip(v)
        if ip is None:
            return False
        if ip in ips:
            return True
        n = int(ip)
        return any(n & mask == net for net, mask in by_version[ip.version])

    return member_ip


def compile_expr(node: ast.Node, functions: Mapping[str, Function] | None = None) -> Predicate:
    """A closure ``event -> bool`` for a checked condition."""
    return ExprCompiler(functions).predicate(node)
