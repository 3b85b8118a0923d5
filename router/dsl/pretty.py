"""AST → canonical source text: the inverse of the parser, up to spans and layout.

    pretty(file)      the whole file, one item per paragraph, one option or action per line
    pretty_expr(node) one ``when`` expression with the fewest parentheses the precedence needs
    pretty_value(node) one option value (literal, list or ``env()``/``file()`` call)
    literal(value), quote(text), regex(pattern, flags)   the source form of one constant

Parsing the output gives the same AST again (spans aside). Precedence, loosest first: ``or``,
``and``, ``not``, then the tests (``==``, ``in``, ``matches``, ...), whose operands are
constants, lists, fields, calls or parenthesised expressions. ``and``/``or`` group to the left,
so a right operand of the same operator keeps its parentheses. Literals are written back in
the form the lexer reads: durations and sizes in their largest exact unit, floats always with
a ``.``, strings with ``\\" \\\\ \\n \\t`` escapes, regexes as ``/.../flags`` when they fit.
A tree the grammar cannot express (a field inside a list, ``inf``) raises ``ValueError``.
"""

from __future__ import annotations

import ipaddress
import math
import re

from dsrouter.dsl import ast
from dsrouter.options import Duration, Size

__all__ = ["literal", "pretty", "pretty_expr", "pretty_value", "quote", "regex"]

_OR, _AND, _NOT, _TEST, _OPERAND = range(5)
_TESTS = (ast.Compare, ast.Member, ast.Matches, ast.StringTest)
_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)
_DURATIONS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_SIZES = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024), ("B", 1))
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}
_ESCAPE_RE = re.compile(r'[\\"\n\t]')
_REGEX_BODY = re.compile(r"(?:[^/\\\n]|\\.)+")
_REGEX_PIECES = re.compile(r"\\.|.", re.DOTALL)
_FLAGS = re.compile(r"[a-z]*")
_INDENT = "  "


# ---- files ------------------------------------------------------------------------------


def pretty(file: ast.File) -> str:
    """The canonical text of a parsed file: items separated by blank lines."""
    return "\n\n".join(_item(item) for item in file.items) + "\n" if file.items else ""


def _item(item: ast.Item) -> str:
    if isinstance(item, ast.Settings):
        return _block("settings", [_option(o) for o in item.options])
    if isinstance(item, ast.Include):
        return f"include {quote(item.pattern)}"
    if isinstance(item, ast.BlockDecl):
        head = f"{item.kind} {item.name.text}"
        return _block(head, [_option(o) for o in item.options])
    if isinstance(item, ast.RouteDecl):
        return _block(f"route {item.name.text}", [_action(a) for a in item.actions])
    if isinstance(item, ast.TestDecl):
        return _block(f"test {quote(item.description)}", [_test_item(t) for t in item.items])
    raise ValueError(f"cannot write {type(item).__name__} as a file item")


def _block(head: str, lines: list[str]) -> str:
    if not lines:
        return head + " {}"
    body = "".join(f"{_INDENT}{line}\n" for line in lines)
    return f"{head} {{\n{body}}}"


def _option(opt: ast.Option) -> str:
    return f"{opt.key.text} = {pretty_value(opt.value)}"


def _action(action: ast.Action) -> str:
    if isinstance(action, ast.When):
        return f"when {pretty_expr(action.expr)}"
    if isinstance(action, ast.To):
        return "to " + ", ".join(t.text for t in action.targets)
    if isinstance(action, ast.Continue):
        return "continue"
    if isinstance(action, ast.Drop):
        return "drop"
    if isinstance(action, ast.Throttle):
        text = f"throttle {action.count} per {_duration(action.window)}"
        if action.by:
            text += " by " + ", ".join(_field(f) for f in action.by)
        return text
    if isinstance(action, ast.SetField):
        return f"set {_field(action.field)} = {pretty_expr(action.expr)}"
    raise ValueError(f"cannot write {type(action).__name__} as a route action")


def _test_item(item: ast.TestItem) -> str:
    if isinstance(item, ast.TestInput):
        return f"input {quote(item.text)}"
    if isinstance(item, ast.ExpectRoutes):
        return f"expect routes == {pretty_value(item.names)}"
    if isinstance(item, ast.ExpectOutputs):
        return f"expect outputs == {pretty_value(item.names)}"
    if isinstance(item, ast.ExpectDropped):
        return "expect dropped"
    if isinstance(item, ast.ExpectField):
        return f"expect {_field(item.field)} == {pretty_value(item.value)}"
    raise ValueError(f"cannot write {type(item).__name__} in a test block")


# ---- expressions ------------------------------------------------------------------------


def pretty_expr(node: ast.Node) -> str:
    """One expression, parenthesised only where precedence or grouping requires it."""
    return _expr(node, _OR)


def _expr(node: ast.Node, context: int) -> str:
    """``node`` written where an expression of at least ``context`` tightness is expected."""
    level = _level(node)
    text = _bare(node)
    return f"({text})" if level < context else text


def _level(node: ast.Node) -> int:
    if isinstance(node, ast.BoolOp):
        return _OR if node.op == "or" else _AND
    if isinstance(node, ast.Not):
        return _NOT
    if isinstance(node, _TESTS):
        return _TEST
    return _OPERAND


def _bare(node: ast.Node) -> str:
    if isinstance(node, ast.BoolOp):  # walk the left spine of a run in a loop, not recursively
        own, rights = _level(node), []
        while isinstance(node, ast.BoolOp) and node.op == ("or" if own == _OR else "and"):
            rights.append(node.right)
            node = node.left
        ops = " or " if own == _OR else " and "
        return _expr(node, own) + "".join(ops + _expr(r, own + 1) for r in reversed(rights))
    if isinstance(node, ast.Not):
        return f"not {_expr(node.operand, _NOT)}"
    if isinstance(node, ast.Compare):
        return f"{_operand(node.left)} {node.op} {_operand(node.right)}"
    if isinstance(node, ast.Member):
        word = "not in" if node.negated else "in"
        return f"{_operand(node.left)} {word} {_operand(node.right)}"
    if isinstance(node, ast.StringTest):
        return f"{_operand(node.left)} {node.op} {_operand(node.right)}"
    if isinstance(node, ast.Matches):
        return f"{_operand(node.left)} matches {regex(node.pattern, node.flags)}"
    if isinstance(node, ast.Call):
        return f"{node.name}({', '.join(pretty_expr(a) for a in node.args)})"
    if isinstance(node, ast.Resolved):
        return _bare(node.source)
    if isinstance(node, ast.Field | ast.Subscript):
        return _field(node)
    return pretty_value(node)


def _operand(node: ast.Node) -> str:
    return _expr(node, _OPERAND)


def _field(node: ast.Field | ast.Subscript) -> str:
    if isinstance(node, ast.Subscript):
        return f"{node.name}[{quote(node.key)}]"
    if not isinstance(node, ast.Field):
        raise ValueError(f"expected a field, found {type(node).__name__}")
    if node.ext:
        return f"ext[{quote(node.path[0])}]"
    return ".".join(node.path)


def regex(pattern: str, flags: str = "") -> str:
    """``/pattern/flags`` when the pattern fits the literal as it is, else a string or escaped."""
    if not _FLAGS.fullmatch(flags):
        raise ValueError(f"invalid regex flags {flags!r}")
    if _REGEX_BODY.fullmatch(pattern):
        return f"/{pattern}/{flags}"
    if not flags:
        return quote(pattern)
    return f"/{_regex_escaped(pattern)}/{flags}"


def _regex_escaped(pattern: str) -> str:
    """A pattern with ``/`` and newlines escaped for a literal: the same regex, other text."""
    pieces = _REGEX_PIECES.findall(pattern)
    if not pieces or pieces[-1] == "\\":
        raise ValueError(f"cannot write the regex {pattern!r} with flags")
    return "".join({"/": "\\/", "\n": "\\n"}.get(p, p) for p in pieces)


# ---- values -----------------------------------------------------------------------------


def pretty_value(node: ast.Node) -> str:
    """An option value, list item or test expectation: a literal, a list or a call."""
    if isinstance(node, ast.Literal):
        return literal(node.value)
    if isinstance(node, ast.ListValue):
        return "[" + ", ".join(pretty_value(i) for i in node.items) + "]"
    if isinstance(node, ast.Call):
        return f"{node.name}({', '.join(pretty_value(a) for a in node.args)})"
    if isinstance(node, ast.Resolved):  # a checked constant: write what the user wrote
        return pretty_value(node.source)
    raise ValueError(f"{type(node).__name__} cannot be written where a value is expected")


def literal(value: object) -> str:
    """The source form of a literal's decoded value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Duration):
        return _duration(value)
    if isinstance(value, Size):
        return _size(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, _IP_TYPES):
        return str(value)
    raise ValueError(f"cannot write a literal of type {type(value).__name__}")


def quote(text: str) -> str:
    """A string literal: ``"..."`` with the four escapes the lexer knows."""
    return '"' + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text) + '"'


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} has no literal form")
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def _duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    for unit, size in _DURATIONS:
        count = seconds / size
        if count == int(count) and int(count) * size == seconds:
            return f"{int(count)}{unit}"
    millis = round(seconds * 1000)
    if millis * 0.001 == seconds:
        return f"{millis}ms"
    raise ValueError(f"{seconds} s is not a whole number of milliseconds")


def _size(size: int) -> str:
    if size == 0:
        return "0B"
    for unit, factor in _SIZES:
        if size % factor == 0:
            return f"{size // factor}{unit}"
    raise AssertionError("unreachable: every size is a whole number of bytes")
