"""A slow, naive reference evaluator for routing expressions, written from DSL.md alone.

It walks the AST directly on every call, uses Python's ``ipaddress`` and ``re`` (so only
regexes that mean the same in RE2 and in ``re`` may be given to it) and follows DSL.md's
null rule literally: a missing field is null, and every comparison, membership or string test
with null is false except ``!=`` and ``not in``, which are true. It shares no code with the
compiler; the property tests compare the two on generated rules and events.

Choices where DSL.md is silent (each is also what a user would guess):

- values of different kinds (number, string, bool, IP address) are never equal nor ordered;
  ``true``/``false`` are not numbers; durations count as seconds and sizes as bytes;
- an IP literal or CIDR range compares with the address written in a string field; a value
  that holds no address behaves like a value of another kind;
- ``matches`` and the string tests are false for values that are not strings;
- functions return null for null; ``lower``/``upper`` need a string, ``len`` a string, list
  or object (the compiler's choice: events hold objects such as ``syslog``), ``int`` takes a
  number (truncated), true/false (1/0) or decimal text with an optional sign, ``str`` gives the text of a
  string, number, bool or address; anything else gives null.
"""

from __future__ import annotations

import ipaddress
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dsrouter.dsl import ast

ADDRESSES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)
ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
RE_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}
DECIMAL = re.compile(r"\s*[-+]?[0-9]+\s*")


@dataclass(frozen=True)
class RefRoute:
    """A route as the reference sees it: condition (None: every event), outputs, flags.

    ``throttle`` is ``(N, by fields)``; the reference's clock never moves, so a route admits
    the first N matching events of each key and no more.
    """

    name: str
    when: ast.Node | None
    outputs: tuple[str, ...] = ()
    cont: bool = False
    drop: bool = False
    throttle: tuple[int, tuple[ast.Field, ...]] | None = None


def decide(
    routes: Sequence[RefRoute],
    unmatched: RefRoute | None,
    event: dict,
    seen: dict | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """``(routes whose actions ran, outputs without duplicates, dropped)`` for one event.

    ``seen`` carries the throttle counts from one event to the next: ``{(route, key): n}``.
    """
    seen = {} if seen is None else seen
    ran: list[RefRoute] = []
    for route in routes:
        if route.when is not None and not truth(route.when, event):
            continue
        if route.throttle is not None and not _admit(route, event, seen):
            continue
        ran.append(route)
        if not route.cont:
            break
    if not ran:
        if unmatched is None:
            return (), (), False
        ran = [unmatched]
    outputs: list[str] = []
    for route in ran:
        outputs.extend(o for o in route.outputs if o not in outputs)
    return tuple(r.name for r in ran), tuple(outputs), ran[-1].drop and not ran[-1].cont


def _admit(route: RefRoute, event: dict, seen: dict) -> bool:
    """Within the budget? Keys are the ``by`` values; values equal per DSL share a key."""
    assert route.throttle is not None
    limit, by = route.throttle
    key = (route.name, tuple(_key_part(value(f, event)) for f in by))
    seen[key] = seen.get(key, 0) + 1
    return seen[key] <= limit


def _key_part(v: Any) -> Any:
    try:
        hash(v)
    except TypeError:
        return ("text", repr(v))
    return (category(v), v)  # true and 1 are different keys; 8 and 8.0 the same


# ---- conditions -------------------------------------------------------------------------


def truth(node: ast.Node, event: dict) -> bool:
    """Whether a condition holds for ``event``."""
    if isinstance(node, ast.BoolOp):
        if node.op == "and":
            return truth(node.left, event) and truth(node.right, event)
        return truth(node.left, event) or truth(node.right, event)
    if isinstance(node, ast.Not):
        return not truth(node.operand, event)
    if isinstance(node, ast.Compare):
        return compare(node.op, value(node.left, event), value(node.right, event))
    if isinstance(node, ast.Member):
        found = member(value(node.left, event), node.right, event)
        return not found if node.negated else found
    if isinstance(node, ast.Matches):
        subject = value(node.left, event)
        if not isinstance(subject, str):
            return False
        flags = 0
        for letter in node.flags:
            flags |= RE_FLAGS[letter]
        return re.search(node.pattern, subject, flags) is not None
    if isinstance(node, ast.StringTest):
        return string_test(node.op, value(node.left, event), value(node.right, event))
    if isinstance(node, ast.Call) and node.name == "exists":
        return value(node.args[0], event) is not None
    return value(node, event) is True


def compare(op: str, a: Any, b: Any) -> bool:
    """``a OP b`` per DSL.md: null only satisfies ``!=``; kinds must agree."""
    if isinstance(a, ADDRESSES) or isinstance(b, ADDRESSES):
        a, b = address(a), address(b)
    if a is None or b is None:
        return op == "!="
    if op == "==":
        return same(a, b)
    if op == "!=":
        return not same(a, b)
    if category(a) != category(b) or category(a) not in ("number", "string"):
        return False
    return ORDER[op](a, b)


def member(subject: Any, right: ast.Node, event: dict) -> bool:
    """``subject in right``: a list of constants or one CIDR range."""
    if subject is None:
        return False
    items = right.items if isinstance(right, ast.ListValue) else (right,)
    for item in items:
        candidate = value(item, event)
        if isinstance(candidate, NETWORKS):
            ip = address(subject)
            if ip is not None and ip.version == candidate.version and ip in candidate:
                return True
        elif compare("==", subject, candidate):
            return True
    return False


def string_test(op: str, a: Any, b: Any) -> bool:
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    if op == "contains":
        return b in a
    return a.startswith(b) if op == "startswith" else a.endswith(b)


def category(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, ADDRESSES):
        return "address"
    return type(v).__name__


def same(a: Any, b: Any) -> bool:
    return category(a) == category(b) and a == b


def address(v: Any) -> Any:
    """An address from an address or a string holding one; None otherwise."""
    if isinstance(v, ADDRESSES):
        return v
    if isinstance(v, str):
        try:
            return ipaddress.ip_address(v)
        except ValueError:
            return None
    return None


# ---- values -----------------------------------------------------------------------------


def value(node: ast.Node, event: dict) -> Any:
    """The value of a field, constant or function call (None is null)."""
    if isinstance(node, ast.Literal | ast.Resolved):
        return node.value
    if isinstance(node, ast.ListValue):
        return [value(i, event) for i in node.items]
    if isinstance(node, ast.Field):
        return lookup(event, node.path)
    if isinstance(node, ast.Call):
        if node.name == "exists":
            return value(node.args[0], event) is not None
        args = [value(a, event) for a in node.args]
        if any(a is None for a in args):
            return None
        return FUNCTIONS[node.name](*args)
    raise TypeError(f"the reference cannot evaluate {type(node).__name__}")


def lookup(event: dict, path: tuple[str, ...]) -> Any:
    current: Any = event
    for part in path:
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def _lower(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else None


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else None


def _len(v: Any) -> Any:
    return len(v) if isinstance(v, str | list | dict) else None


def _int(v: Any) -> Any:
    if isinstance(v, int):  # true/false included: int(true) is 1, as in the compiler
        return int(v)
    if isinstance(v, float):
        return math.trunc(v) if math.isfinite(v) else None
    if isinstance(v, str) and DECIMAL.fullmatch(v):
        return int(v)
    return None


def _str(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | int | float) or isinstance(v, ADDRESSES):
        return str(v)
    return None


FUNCTIONS = {"lower": _lower, "upper": _upper, "len": _len, "int": _int, "str": _str}
