"""Text → :class:`~dsrouter.dsl.ast.File`: the lark parser, syntax errors, tree → AST.

The grammar lives in ``grammar.lark`` (package data). Syntax errors become ``E1xx``
diagnostics worded with human token names; the first syntax error of a file ends its parse.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from importlib import resources

from lark import Lark, Token, Transformer, Tree, v_args
from lark import lexer as lark_lexer
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import Reporter
from dsrouter.errors import Span
from dsrouter.options import Duration, Size

_KEYWORDS = (
    "settings include input output route test when to continue drop throttle per by set expect "
    "routes outputs dropped and or not in matches contains startswith endswith true false"
).split()

TOKEN_NAMES: dict[str, str] = {
    **{word.upper(): f"'{word}'" for word in _KEYWORDS},
    "NAME": "a name",
    "STRING": "a string",
    "INT": "an integer",
    "FLOAT": "a number",
    "DURATION": "a duration",
    "SIZE": "a size",
    "IPV4": "an IPv4 address",
    "IPV6": "an IPv6 address",
    "REGEX": "a /regex/",
    "COMPARE": "a comparison ('==', '!=', '<', ...)",
    "ASSIGN": "'='",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LBRACKET": "'['",
    "RBRACKET": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "SEMICOLON": "';'",
    "DOT": "'.'",
    "$END": "end of file",
}

_PUNCTUATION = {"LBRACE", "RBRACE", "LBRACKET", "RBRACKET", "LPAR", "RPAR", "COMMA", "SEMICOLON"}
_PUNCTUATION |= {"ASSIGN", "DOT"}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_ESCAPE_RE = re.compile(r"\\(.)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_UNIT_RE = re.compile(r"(\d+)(\D+)")
_NUMBER_HELP = "durations end in ms, s, m, h or d; sizes in B, KiB, MiB or GiB"


@functools.cache
def grammar_text() -> str:
    """The grammar source shipped as package data."""
    return resources.files("dsrouter.dsl").joinpath("grammar.lark").read_text("utf-8")


@functools.cache
def _parser() -> Lark:
    return build_parser()


def build_parser(strict: bool = False) -> Lark:
    """A fresh LALR parser; ``strict=True`` rejects grammar conflicts and terminal collisions.

    Without ``strict``, lark still runs its terminal-collision analysis whenever ``interegular``
    is importable (~1 s per process start). That check belongs to the test suite, which builds
    the grammar with ``strict=True``; every other build skips it.
    """
    saved = getattr(lark_lexer, "has_interegular", False)
    if not strict:
        lark_lexer.has_interegular = False
    try:
        return Lark(
            grammar_text(),
            parser="lalr",
            lexer="contextual",
            propagate_positions=True,
            maybe_placeholders=True,
            strict=strict,
        )
    finally:
        lark_lexer.has_interegular = saved


def parse(text: str, path: str, reporter: Reporter) -> ast.File | None:
    """Parse one file; on a syntax error report it and return None."""
    reporter.add_source(path, text)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        reporter.error(*_syntax_error(exc, path, text))
        return None
    try:
        items = _ToAst(path, reporter).transform(tree).children
    except VisitError as exc:  # a bug in the transformer: show the original error
        raise exc.orig_exc from None
    return ast.File(path, tuple(items))


# ---- syntax errors ----------------------------------------------------------------------


def _syntax_error(exc: UnexpectedInput, path: str, text: str) -> tuple[str, str, Span, str | None]:
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        tok = exc.token
        span = Span(path, tok.line, tok.column, tok.end_line, tok.end_column)
        found = _describe_token(tok)
        expected = exc.accepts or exc.expected
        return "E101", f"expected {_expected(expected)}, found {found}", span, None
    if isinstance(exc, UnexpectedCharacters):
        span = Span(path, exc.line, exc.column, exc.line, exc.column + 1)
        msg = f"unexpected character {exc.char!r}"
        if exc.char.isdigit():
            return "E102", msg, span, _NUMBER_HELP
        allowed = exc.allowed or set()
        return "E102", msg, span, f"expected {_expected(allowed)}" if allowed else None
    at_end: set[str] = getattr(exc, "expected", None) or set()
    line, column = _end_position(text)
    span = Span(path, line, column, line, column + 1)
    help = f"expected {_expected(at_end)}" if at_end else None
    return "E103", "unexpected end of file", span, help


def _end_position(text: str) -> tuple[int, int]:
    """Line and column just after the last character of ``text``."""
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


def _describe_token(tok: Token) -> str:
    if tok.type in TOKEN_NAMES and TOKEN_NAMES[tok.type].startswith("'"):
        return TOKEN_NAMES[tok.type]
    text = str(tok)
    return f"'{text}'" if len(text) <= 40 else f"'{text[:37]}...'"


def _expected(names) -> str:
    words = sorted({TOKEN_NAMES.get(n, n) for n in names})
    if len(words) == 1:
        return words[0]
    return "one of: " + ", ".join(words)


# ---- parse tree → AST -------------------------------------------------------------------


def _span(path: str, meta_or_token) -> Span:
    m = meta_or_token
    return Span(path, m.line, m.column, m.end_line, m.end_column)


def _strip(children: list) -> list:
    """Drop punctuation and keyword tokens, keep everything that carries meaning."""
    keep = []
    for c in children:
        if isinstance(c, Token) and (c.type in _PUNCTUATION or c.type.lower() in _KEYWORDS):
            continue
        keep.append(c)
    return keep


@v_args(meta=True)
class _ToAst(Transformer):
    """Builds AST nodes; bad escapes and literals are reported, not raised."""

    def __init__(self, path: str, reporter: Reporter) -> None:
        super().__init__()
        self.path = path
        self.reporter = reporter

    def _sp(self, meta) -> Span:
        return _span(self.path, meta)

    def _name(self, tok: Token) -> ast.Name:
        return ast.Name(str(tok), _span(self.path, tok))

    def _string(self, tok: Token) -> str:
        def sub(m: re.Match) -> str:
            ch = m.group(1)
            if ch not in _ESCAPES:
                line, col = tok.line or 1, (tok.column or 1) + 1 + m.start()
                span = Span(self.path, line, col, line, col + 2)
                help = 'use \\" \\\\ \\n or \\t'
                self.reporter.error("E104", f"unknown escape '\\{ch}' in string", span, help)
                return ch
            return _ESCAPES[ch]

        return _ESCAPE_RE.sub(sub, tok[1:-1])

    # -- file structure --

    def start(self, meta, children):
        return Tree("start", children)

    def settings(self, meta, children):
        return ast.Settings(tuple(_strip(children)), self._sp(meta))

    def include(self, meta, children):
        return ast.Include(self._string(children[1]), self._sp(meta))

    def block(self, meta, children):
        kind, name, *rest = children
        return ast.BlockDecl(str(kind), self._name(name), tuple(_strip(rest)), self._sp(meta))

    def option(self, meta, children):
        key, _, value = children
        return ast.Option(self._name(key), value, self._sp(meta))

    # -- values --

    def literal(self, meta, children):
        tok = children[0]
        return ast.Literal(self._literal_value(tok), self._sp(meta))

    def _literal_value(self, tok: Token):
        kind = tok.type
        if kind == "STRING":
            return self._string(tok)
        if kind in ("TRUE", "FALSE"):
            return kind == "TRUE"
        if kind == "INT":
            return int(tok)
        if kind == "FLOAT":
            return float(tok)
        if kind in ("IPV4", "IPV6"):
            return self._ip(tok)
        match = _UNIT_RE.fullmatch(tok)
        assert match is not None, "the grammar only lets number-unit tokens through"
        number, unit = match.groups()
        if kind == "DURATION":
            return Duration(int(number) * _DURATION_UNITS[unit])
        return Size(int(number) * _SIZE_UNITS[unit])

    def _ip(self, tok: Token):
        try:
            if "/" in tok:
                return ipaddress.ip_network(str(tok), strict=True)
            return ipaddress.ip_address(str(tok))
        except ValueError as exc:
            self.reporter.error("E105", f"invalid IP literal: {exc}", _span(self.path, tok))
            return str(tok)

    def list(self, meta, children):
        items = tuple(c for c in _strip(children) if c is not None)
        return ast.ListValue(items, self._sp(meta))

    def call(self, meta, children):
        name, *args = _strip(children)
        args = tuple(a for a in args if a is not None)
        return ast.Call(str(name), args, self._sp(meta))

    func = call

    # -- routes --

    def route(self, meta, children):
        name, *actions = _strip(children)
        return ast.RouteDecl(self._name(name), tuple(actions), self._sp(meta))

    def when(self, meta, children):
        return ast.When(children[1], self._sp(meta))

    def to(self, meta, children):
        return ast.To(tuple(self._name(t) for t in _strip(children)), self._sp(meta))

    def continue_(self, meta, children):
        return ast.Continue(self._sp(meta))

    def drop(self, meta, children):
        return ast.Drop(self._sp(meta))

    def throttle(self, meta, children):
        count, window, *by = _strip(children)
        by = tuple(b for b in by if b is not None)
        win = self._literal_value(window)
        return ast.Throttle(int(count), win, by, self._sp(meta))

    def set(self, meta, children):
        field, expr = _strip(children)
        return ast.SetField(field, expr, self._sp(meta))

    # -- expressions --

    def or_expr(self, meta, children):
        return ast.BoolOp("or", children[0], children[2], self._sp(meta))

    def and_expr(self, meta, children):
        return ast.BoolOp("and", children[0], children[2], self._sp(meta))

    def not_expr(self, meta, children):
        return ast.Not(children[1], self._sp(meta))

    def compare(self, meta, children):
        left, op, right = children
        return ast.Compare(str(op), left, right, self._sp(meta))

    def member(self, meta, children):
        return ast.Member(children[0], children[2], False, self._sp(meta))

    def not_member(self, meta, children):
        return ast.Member(children[0], children[3], True, self._sp(meta))

    def matches(self, meta, children):
        left, _, pat = children
        where = _span(self.path, pat)
        if pat.type == "STRING":
            return ast.Matches(left, self._string(pat), "", self._sp(meta), where)
        body, _, flags = pat[1:].rpartition("/")
        return ast.Matches(left, body, flags, self._sp(meta), where)

    def strtest(self, meta, children):
        left, op, right = children
        return ast.StringTest(str(op), left, right, self._sp(meta))

    def paren(self, meta, children):
        return children[1]

    def field(self, meta, children):
        path = tuple(str(t) for t in _strip(children))
        return ast.Field(path, self._sp(meta))

    def subscript(self, meta, children):
        name, key = _strip(children)
        if name == "ext":
            return ast.Field((self._string(key),), self._sp(meta), ext=True)
        return ast.Subscript(str(name), self._string(key), self._sp(meta))

    # -- tests --

    def test(self, meta, children):
        desc, *items = _strip(children)
        return ast.TestDecl(self._string(desc), tuple(items), self._sp(meta))

    def test_input(self, meta, children):
        return ast.TestInput(self._string(children[1]), self._sp(meta))

    def expect_routes(self, meta, children):
        self._only_equals(children[2])
        return ast.ExpectRoutes(children[3], self._sp(meta))

    def expect_outputs(self, meta, children):
        self._only_equals(children[2])
        return ast.ExpectOutputs(children[3], self._sp(meta))

    def expect_dropped(self, meta, children):
        return ast.ExpectDropped(self._sp(meta))

    def expect_field(self, meta, children):
        field, op, value = children[1:]
        self._only_equals(op)
        return ast.ExpectField(field, value, self._sp(meta))

    def _only_equals(self, op: Token) -> None:
        if op != "==":
            span = _span(self.path, op)
            self.reporter.error("E106", f"expect supports only '==', found '{op}'", span)
