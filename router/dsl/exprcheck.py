"""Type-checks expressions (``when``, ``set``, ``throttle ... by``) and resolves their constants.

Every field name is checked against the event schema (:data:`dsrouter.ds.catalog.FIELDS` plus
names created by ``set`` in earlier routes); ``ext["..."]`` is never checked and has type
``any``. ``env()``/``file()`` become :class:`~dsrouter.dsl.ast.Resolved` constants. A node
whose type could not be worked out gets the type ``"?"``, which silences follow-up errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import re2

from dsrouter.api import Function
from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import did_you_mean
from dsrouter.dsl.functions import (
    SPECIAL,
    STRINGY,
    accepts,
    comparable,
    describe,
    orderable,
    type_of_value,
)
from dsrouter.dsl.values import INVALID, ValueContext, resolve

BAD = "?"
_ORDERING = ("<", "<=", ">", ">=")
_CONDITIONS = (ast.BoolOp, ast.Not, ast.Compare, ast.Member, ast.Matches, ast.StringTest)
REGEX_FLAGS = "ims"


def compile_regex(pattern: str, flags: str) -> Any:
    """The linear-time regex for ``/pattern/flags``; raises ``re2.error`` or ``ValueError``."""
    bad = sorted(set(flags) - set(REGEX_FLAGS))
    if bad:
        raise ValueError(f"unknown regex flag '{bad[0]}'")
    options = re2.Options()
    options.log_errors = False
    prefix = f"(?{''.join(sorted(set(flags)))})" if flags else ""
    return re2.compile(prefix + pattern, options)


class ExprChecker:
    """Checks expressions against ``fields`` (name → type) and ``functions`` (name → Function)."""

    def __init__(
        self, ctx: ValueContext, fields: dict[str, str], functions: Mapping[str, Function]
    ) -> None:
        self.ctx = ctx
        self.rep = ctx.reporter
        self.fields = fields
        self.functions = functions

    # ---- conditions ----

    def condition(self, node: ast.Node) -> ast.Node:
        """Report every problem in a condition; return it with constants resolved."""
        if isinstance(node, ast.BoolOp):
            return self._chain(node)
        if isinstance(node, ast.Not):
            return ast.Not(self.condition(node.operand), node.span)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Member):
            return self._member(node)
        if isinstance(node, ast.Matches):
            return self._matches(node)
        if isinstance(node, ast.StringTest):
            return self._strtest(node)
        if isinstance(node, ast.Call):
            new, typ = self.value(node)
            if typ not in ("bool", "any", BAD):
                msg = f"expected a condition, found {node.name}() ({describe(typ)})"
                self.rep.error("E217", msg, node.span, "compare it: ==, !=, <, in, matches, ...")
            return new
        new, typ = self.value(node)
        if typ != BAD:
            help = "compare it: ==, !=, <, <=, >, >=, in, not in, matches, contains"
            self.rep.error("E217", f"expected a condition, found {_what(node)}", node.span, help)
        return new

    def _chain(self, node: ast.BoolOp) -> ast.Node:
        """``a or b or ...`` nests to the left: walk that spine in a loop, not by recursion."""
        spine: list[ast.BoolOp] = []
        left: ast.Node = node
        while isinstance(left, ast.BoolOp):
            spine.append(left)
            left = left.left
        result = self.condition(left)
        for op in reversed(spine):
            result = ast.BoolOp(op.op, result, self.condition(op.right), op.span)
        return result

    def _compare(self, node: ast.Compare) -> ast.Node:
        left, lt = self.scalar(node.left)
        right, rt = self.scalar(node.right)
        if BAD not in (lt, rt):
            if "cidr" in (lt, rt):
                help = "test membership instead: x in 10.0.0.0/8"
                self.rep.error(
                    "E231", f"'{node.op}' cannot compare with a CIDR range", node.span, help
                )
            elif node.op in _ORDERING and not orderable(lt, rt):
                msg = f"'{node.op}' compares numbers or strings, not {_pair(node, lt, rt)}"
                self.rep.error("E231", msg, node.span, _convert_help(lt, rt))
            elif not comparable(lt, rt):
                msg = f"comparing {_pair(node, lt, rt)} is always false"
                self.rep.error("E231", msg, node.span, _convert_help(lt, rt))
        return ast.Compare(node.op, left, right, node.span)

    def _member(self, node: ast.Member) -> ast.Node:
        left, lt = self.scalar(node.left)
        word = "not in" if node.negated else "in"
        right = node.right
        if isinstance(right, ast.ListValue):
            items = tuple(self._list_item(i, node.left, lt) for i in right.items)
            right = ast.ListValue(items, right.span)
        elif isinstance(right, ast.Literal) and type_of_value(right.value) == "cidr":
            self._cidr_ok(node.left, lt, right)
        else:
            self.value(right)
            msg = f"'{word}' needs a list [...] or a CIDR range, found {_what(right)}"
            self.rep.error("E217", msg, right.span)
        return ast.Member(left, right, node.negated, node.span)

    def _list_item(self, item: ast.Node, left: ast.Node, lt: str) -> ast.Node:
        new, typ = self.value(item)
        if not isinstance(new, ast.Literal | ast.Resolved):
            if typ != BAD:
                msg = f"list items must be constants, found {_what(item)}"
                self.rep.error("E217", msg, item.span)
            return new
        if typ == "cidr":
            self._cidr_ok(left, lt, item)
        elif typ == "list":
            self.rep.error("E217", "lists cannot be nested", item.span)
        elif BAD not in (lt, typ) and not comparable(lt, typ):
            msg = f"{_name(left)} ({describe(lt)}) never equals {describe(typ)}"
            self.rep.error("E231", msg, item.span, _convert_help(lt, typ))
        return new

    def _cidr_ok(self, left: ast.Node, lt: str, where: ast.Node) -> None:
        if lt not in ("ip", "any", BAD):
            msg = f"CIDR test on {_name(left)}, which is {describe(lt)}, not an IP address"
            help = "CIDR ranges apply to IP fields such as src, dst and dvc"
            self.rep.error("E231", msg, where.span, help)

    def _matches(self, node: ast.Matches) -> ast.Node:
        left, lt = self.scalar(node.left)
        if lt not in STRINGY and lt not in ("any", BAD):
            msg = f"'matches' tests strings, but {_name(node.left)} is {describe(lt)}"
            self.rep.error("E231", msg, node.left.span, _to_string_help(node.left, lt))
        try:
            compile_regex(node.pattern, node.flags)
        except (re2.error, ValueError) as exc:
            reason = exc.args[0]
            reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
            help = "RE2 syntax; flags: i (ignore case), m (multi-line), s (. matches newline)"
            self.rep.error("E234", f"invalid regex: {reason}", node.pattern_span or node.span, help)
        return ast.Matches(left, node.pattern, node.flags, node.span, node.pattern_span)

    def _strtest(self, node: ast.StringTest) -> ast.Node:
        left, lt = self.scalar(node.left)
        right, rt = self.scalar(node.right)
        for side, typ in ((node.left, lt), (node.right, rt)):
            if typ not in STRINGY and typ not in ("any", BAD):
                msg = f"'{node.op}' tests strings, but {_name(side)} is {describe(typ)}"
                self.rep.error("E231", msg, side.span, _to_string_help(side, typ))
        return ast.StringTest(node.op, left, right, node.span)

    # ---- values ----

    def scalar(self, node: ast.Node) -> tuple[ast.Node, str]:
        """A single value (not a list, not a condition)."""
        new, typ = self.value(node)
        if typ == "list":
            self.rep.error("E217", "expected a single value, found a list", node.span)
            return new, BAD
        return new, typ

    def value(self, node: ast.Node) -> tuple[ast.Node, str]:
        """Check a value expression: ``(node with constants resolved, static type)``."""
        if isinstance(node, ast.Literal):
            return node, type_of_value(node.value)
        if isinstance(node, ast.Resolved):
            return node, type_of_value(node.value)
        if isinstance(node, ast.ListValue):
            items = tuple(self.value(i)[0] for i in node.items)
            return ast.ListValue(items, node.span), "list"
        if isinstance(node, ast.Field):
            return node, self.field_type(node)
        if isinstance(node, ast.Subscript):
            help = f'only extension keys can be indexed: ext["{node.key}"]'
            self.rep.error("E218", f"'{node.name}' cannot be indexed", node.span, help)
            return node, BAD
        if isinstance(node, ast.Call):
            return self._call(node)
        help = "wrap it in a comparison, or remove the parentheses"
        self.rep.error("E217", f"expected a value, found {_what(node)}", node.span, help)
        return node, BAD

    def field_type(self, node: ast.Field) -> str:
        """The type of a field reference, reporting E230 for an unknown name."""
        if node.ext:
            return "any"
        name = node.dotted
        typ = self.fields.get(name)
        if typ is not None:
            return typ
        help = did_you_mean(name, self.fields) or (
            f'for an extension key the schema does not know, write ext["{name}"]'
        )
        self.rep.error("E230", f"unknown field '{name}'", node.span, help)
        return BAD

    def _call(self, node: ast.Call) -> tuple[ast.Node, str]:
        if node.name in ("env", "file"):
            value = resolve(node, self.ctx)
            if value is INVALID:
                return node, BAD
            return ast.Resolved(value, node, True, node.span), type_of_value(value)
        if node.name == "exists":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Field):
                help = 'write exists(field) or exists(ext["key"])'
                self.rep.error("E233", "exists() takes one field name", node.span, help)
            else:
                self.field_type(node.args[0])
            return node, "bool"
        func = self.functions.get(node.name)
        args = [self.scalar(a) for a in node.args]
        if func is None:
            known = sorted(set(self.functions) | SPECIAL)
            help = did_you_mean(node.name, known) or "functions: " + ", ".join(known)
            self.rep.error("E232", f"unknown function '{node.name}'", node.span, help)
            return node, BAD
        new = ast.Call(node.name, tuple(a for a, _ in args), node.span)
        if len(args) != len(func.params):
            n = len(func.params)
            msg = f"{node.name}() takes {n} argument{'s' * (n != 1)}, got {len(args)}"
            self.rep.error("E233", msg, node.span, func.help or None)
            return new, func.returns
        for i, ((_, typ), param, orig) in enumerate(zip(args, func.params, node.args, strict=True)):
            if typ != BAD and not accepts(param, typ):
                msg = (
                    f"{node.name}() expects {describe(param)} as argument {i + 1}, "
                    f"found {_name(orig)} ({describe(typ)})"
                )
                self.rep.error("E231", msg, orig.span, func.help or None)
        return new, func.returns


# ---- wording ----


def _what(node: ast.Node) -> str:
    if isinstance(node, ast.ListValue):
        return "a list"
    if isinstance(node, ast.Field | ast.Subscript):
        return "a field"
    if isinstance(node, _CONDITIONS):
        return "a condition"
    if isinstance(node, ast.Literal):
        return describe(type_of_value(node.value))
    return "a function call"


def _name(node: ast.Node) -> str:
    value = node.value if isinstance(node, ast.Literal) else None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return json.dumps(value) if isinstance(value, str) else repr(value)
    if isinstance(node, ast.Field):
        return f"'{node.dotted}'"
    if isinstance(node, ast.Call):
        return f"{node.name}()"
    return _what(node)


def _pair(node: ast.Compare, lt: str, rt: str) -> str:
    return f"{_name(node.left)} ({describe(lt)}) with {_name(node.right)} ({describe(rt)})"


def _convert_help(a: str, b: str) -> str | None:
    if {a, b} <= {"int", "float", "string", "size", "duration", "ip"} and "string" in (a, b):
        return "write numbers without quotes, or convert with int(x) / str(x)"
    return None


def _to_string_help(node: ast.Node, typ: str) -> str | None:
    if typ in ("int", "float"):
        return f"convert it first: str({node.dotted if isinstance(node, ast.Field) else 'x'})"
    return None
