"""Which routes can match an event, from a few field lookups (see :class:`RouteIndex`).

Real rules nearly always say ``module == "x"`` or ``module in [...]`` (or ``tenant == ...``,
``signature_id in [...]``) as a top-level conjunct of ``when``. For the (up to three) most often
constrained top-level fields, every route gets, per field, its set of allowed constants: the
intersection of its conjuncts on that field, or no set when it has none. An event's value of a
field is bucketed: the value itself when it is one of those constants (exactly a ``str``,
``int`` or ``float``: their Python equality is the DSL's), :data:`OTHER` for null or any other
such value (only routes with no set on that field can match), :data:`ANY` for a value of any
other class (bool, list, a str subclass...: nothing is assumed). A route is a candidate when
every field's bucket allows it; the conjuncts the buckets prove are not evaluated again.
Candidates keep file order, so first-match and ``continue`` work as before. A field some route
``set``s is never indexed (the value could change between routes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from dsrouter.dsl import ast
from dsrouter.dsl.chains import chain
from dsrouter.dsl.compiler import ExprCompiler, as_field
from dsrouter.dsl.config import Route

PREFERRED = ("module", "signature_id", "format", "input")
MAX_FIELDS = 3
# Exact classes whose Python equality and hashing agree with the DSL's ``==`` and ``in``: a str
# never equals a number, ints and floats compare numerically. No bool, Duration, str subclass.
KEY_CLASSES = frozenset({str, int, float})


class Constraint(NamedTuple):
    """A route's allowed values of the index field and the conjuncts that proved them."""

    values: frozenset
    proven: tuple[ast.Node, ...]


class RouteIndex(NamedTuple):
    """The chosen fields, every constant each is tested against, and per route its constraints."""

    fields: tuple[str, ...]
    keys: tuple[frozenset, ...]  # per field
    constraints: tuple[tuple[Constraint | None, ...], ...]  # per route, per field

    def proven(self, route: int, buckets: tuple) -> tuple[ast.Node, ...] | None:
        """The conjuncts of ``route`` an event in ``buckets`` satisfies; None: it cannot match.

        A bucket is the event's value (one of ``keys``), :data:`OTHER` (null, or a value no
        route tests for) or :data:`ANY` (a value of another class: nothing is known).
        """
        proven: tuple[ast.Node, ...] = ()
        for bucket, c in zip(buckets, self.constraints[route], strict=True):
            if c is None or bucket is ANY:
                continue
            if bucket is OTHER or bucket not in c.values:
                return None
            proven += c.proven
        return proven


OTHER = type("Other", (), {"__repr__": lambda self: "OTHER"})()
ANY = type("Any", (), {"__repr__": lambda self: "ANY"})()


def conjuncts(node: ast.Node | None) -> list[ast.Node]:
    """The top-level ``and`` operands of ``node``, left to right."""
    return [] if node is None else chain(node, "and")


def field_test(node: ast.Node, compiler: ExprCompiler) -> tuple[str, frozenset] | None:
    """``(field, allowed constants)`` for ``F == c``, ``c == F`` or ``F in [c, ...]``."""
    if isinstance(node, ast.Compare) and node.op == "==":
        pairs = ((node.left, node.right), (node.right, node.left))
        for fld, other in pairs:
            name = _top_field(fld, compiler)
            is_const, value = compiler.constant(other)
            if name is not None and is_const and value.__class__ in KEY_CLASSES:
                return name, frozenset((value,))
        return None
    if isinstance(node, ast.Member) and not node.negated:
        name = _top_field(node.left, compiler)
        is_const, values = compiler.constant(node.right)
        if name is None or not is_const:
            return None
        values = values if isinstance(values, list) else [values]
        if values and all(v.__class__ in KEY_CLASSES for v in values):
            return name, frozenset(values)
    return None


def _top_field(node: ast.Node, compiler: ExprCompiler) -> str | None:
    if isinstance(node, ast.Field) and len(node.path) == 1 and not compiler.constant(node)[0]:
        return node.path[0]
    return None


def build_index(
    routes: Sequence[Route], compiler: ExprCompiler, max_fields: int = MAX_FIELDS
) -> RouteIndex:
    """Pick the fields constraining most routes (at least two; not one any route sets)."""
    tests = [
        [(n, t) for n in conjuncts(r.when) if (t := field_test(n, compiler)) is not None]
        for r in routes
    ]
    counts = Counter(name for found in tests for name in {f for _, (f, _) in found})
    for name in _set_fields(routes):
        counts.pop(name, None)
    rank = {name: i for i, name in enumerate(PREFERRED)}
    best = sorted(counts, key=lambda n: (-counts[n], rank.get(n, len(PREFERRED)), n))
    fields = tuple(n for n in best if counts[n] >= 2)[:max_fields]
    constraints = tuple(tuple(_constraint(found, f) for f in fields) for found in tests)
    keys = tuple(
        frozenset().union(*(cs[j].values for cs in constraints if cs[j] is not None))
        for j in range(len(fields))
    )
    return RouteIndex(fields, keys, constraints)


def _constraint(found: list[tuple[ast.Node, tuple[str, frozenset]]], field: str):
    mine = [(node, values) for node, (name, values) in found if name == field]
    if not mine:
        return None
    allowed = frozenset.intersection(*(values for _, values in mine))
    return Constraint(allowed, tuple(node for node, _ in mine))


def _set_fields(routes: Iterable[Route]) -> set[str]:
    return {as_field(action.field).path[0] for r in routes for action in r.sets}
