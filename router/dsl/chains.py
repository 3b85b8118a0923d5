"""Runs of ``and``/``or``: their operands without recursion, and closures that fuse them.

The parser nests ``a or b or c`` to the left, one :class:`~dsrouter.dsl.ast.BoolOp` per
operator, so a 10,000-term condition is a tree 10,000 deep. Everything that walks such a run
does it in a loop (:func:`chain`), and the compiled closure is a tree of at most four operands
per call (:func:`fuse`), 7 calls deep for 10,000 operands.
"""

from __future__ import annotations

from collections.abc import Callable

from dsrouter.dsl import ast

Predicate = Callable[[dict], bool]
_KIDS = ("left", "right", "operand")


def cost(node: ast.Node) -> int:
    """A rough evaluation cost: 0 field tests, 1 string tests, 2 regexes, 3 function calls."""
    worst, todo = 0, [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Call):
            worst = max(worst, 0 if n.name == "exists" else 3)
            continue
        own = 2 if isinstance(n, ast.Matches) else 1 if isinstance(n, ast.StringTest) else 0
        worst = max(worst, own)
        todo += [k for a in _KIDS if (k := getattr(n, a, None)) is not None]
    return worst


def chain(node: ast.Node, op: str) -> list[ast.Node]:
    """The operands of a run of the same ``and``/``or``, left to right (no recursion)."""
    out: list[ast.Node] = []
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.BoolOp) and n.op == op:
            todo += (n.right, n.left)
        else:
            out.append(n)
    return out


def fuse(preds: list[Predicate], conj: bool) -> Predicate:
    """One closure for ``p1 and p2 and ...`` (or ``or``): a tree of up to four operands per
    call, so 10,000 operands are 7 calls deep, evaluated in order with short-circuit."""
    while len(preds) > 4:
        preds = [_fuse_few(preds[i : i + 4], conj) for i in range(0, len(preds), 4)]
    return _fuse_few(preds, conj)


def _fuse_few(preds: list[Predicate], conj: bool) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return (lambda e: a(e) and b(e)) if conj else (lambda e: a(e) or b(e))
    if len(preds) == 3:
        a, b, c = preds
        return (lambda e: a(e) and b(e) and c(e)) if conj else (lambda e: a(e) or b(e) or c(e))
    a, b, c, d = preds
    if conj:
        return lambda e: a(e) and b(e) and c(e) and d(e)
    return lambda e: a(e) or b(e) or c(e) or d(e)
