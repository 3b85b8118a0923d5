"""Text → :class:`~dsrouter.dsl.ast.File`: the lark parser, syntax errors, tree → AST.

The grammar lives in ``grammar.lark`` (package data). Syntax errors become ``E1xx``
diagnostics (worded by :mod:`.syntax`); the first syntax error of a file ends its parse.

Nothing here recurses on the input: lark's LALR parser keeps its own stack and the tree is
turned into the AST bottom-up without recursion, so a 10,000-term condition parses. Nesting
is bounded instead: more than :data:`MAX_DEPTH` levels of parentheses, ``not``, calls or
lists is error ``E107``, so the recursive checker and compiler never meet Python's limit.

A file that failed to parse is quoted in its diagnostic (source line, found token) only when
it looks like configuration: its name ends in ``.conf`` or ``.rules``, or a block of it
parsed before the error. ``include "/etc/shadow"`` shows no line of that file.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from importlib import resources

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark import lexer as lark_lexer
from lark.exceptions import UnexpectedInput, VisitError

from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import Reporter
from dsrouter.dsl.syntax import KEYWORDS, parsed_an_item, syntax_error
from dsrouter.errors import Span
from dsrouter.options import Duration, Size

_PUNCTUATION = {"LBRACE", "RBRACE", "LBRACKET", "RBRACKET", "LPAR", "RPAR", "COMMA", "SEMICOLON"}
_PUNCTUATION |= {"ASSIGN", "DOT"}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_ESCAPE_RE = re.compile(r"\\(.)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_UNIT_RE = re.compile(r"(\d+)(\D+)")
MAX_DEPTH = 64
"""How deeply expressions and values may nest (parentheses, ``not``, calls, lists)."""
_CONFIG_SUFFIXES = (".conf", ".rules")


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
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        shown = looks_like_config(path) or parsed_an_item(exc)
        if shown:
            reporter.add_source(path, text)
        reporter.error(*syntax_error(exc, path, text, quote=shown))
        return None
    reporter.add_source(path, text)
    try:
        items = _ToAst(path, reporter).transform(tree).children
    except VisitError as exc:  # a bug in the transformer: show the original error
        raise exc.orig_exc from None
    return ast.File(path, tuple(items))


def looks_like_config(path: str) -> bool:
    """Text given directly (``<config>``) or a file named ``*.conf`` / ``*.rules``."""
    return path.startswith("<") or path.endswith(_CONFIG_SUFFIXES)


# ---- parse tree → AST -------------------------------------------------------------------


def _span(path: str, meta_or_token) -> Span:
    m = meta_or_token
    return Span(path, m.line, m.column, m.end_line, m.end_column)


def _strip(children: list) -> list:
    """Drop punctuation and keyword tokens, keep everything that carries meaning."""
    keep = []
    for c in children:
        if isinstance(c, Token) and (c.type in _PUNCTUATION or c.type.lower() in KEYWORDS):
            continue
        keep.append(c)
    return keep


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Builds AST nodes bottom-up; bad escapes, literals and nesting are reported, not raised."""

    def __init__(self, path: str, reporter: Reporter) -> None:
        super().__init__()
        self.path = path
        self.reporter = reporter
        self._depth: dict[int, tuple[object, int]] = {}  # id(node) -> (node, nesting depth)

    # -- nesting depth (E107) --

    def _d(self, node: object) -> int:
        entry = self._depth.get(id(node))
        return entry[1] if entry is not None and entry[0] is node else 0

    def _deep(self, node, depth: int, inner: int):
        """Record ``node``'s depth; report E107 where a nesting first passes the limit."""
        self._depth[id(node)] = (node, depth)
        if depth > MAX_DEPTH >= inner:
            help = (
                "each pair of parentheses, 'not', function call and list adds a level "
                "(a run of 'and' or 'or' counts once): write it flatter"
            )
            msg = f"expression nested too deeply (limit {MAX_DEPTH} levels)"
            self.reporter.error("E107", msg, node.span, help)
        return node

    def _nested(self, node, kids, step: int = 1):
        inner = max((self._d(k) for k in kids), default=0)
        return self._deep(node, inner + step, inner)

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
        return self._nested(ast.ListValue(items, self._sp(meta)), items)

    def call(self, meta, children):
        name, *args = _strip(children)
        args = tuple(a for a in args if a is not None)
        return self._nested(ast.Call(str(name), args, self._sp(meta)), args)

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
        return self._bool("or", children[0], children[2], meta)

    def and_expr(self, meta, children):
        return self._bool("and", children[0], children[2], meta)

    def _bool(self, op: str, left, right, meta) -> ast.BoolOp:
        """A run of one operator is one level: ``a or b or c`` nests no deeper than ``a``."""
        node = ast.BoolOp(op, left, right, self._sp(meta))
        dl, dr = self._d(left), self._d(right)
        same = isinstance(left, ast.BoolOp) and left.op == op
        return self._deep(node, max(dl if same else dl + 1, dr + 1), max(dl, dr))

    def not_expr(self, meta, children):
        return self._nested(ast.Not(children[1], self._sp(meta)), children[1:])

    def compare(self, meta, children):
        left, op, right = children
        return self._nested(ast.Compare(str(op), left, right, self._sp(meta)), (left, right), 0)

    def member(self, meta, children):
        node = ast.Member(children[0], children[2], False, self._sp(meta))
        return self._nested(node, (children[0], children[2]), 0)

    def not_member(self, meta, children):
        node = ast.Member(children[0], children[3], True, self._sp(meta))
        return self._nested(node, (children[0], children[3]), 0)

    def matches(self, meta, children):
        left, _, pat = children
        where = _span(self.path, pat)
        if pat.type == "STRING":
            node = ast.Matches(left, self._string(pat), "", self._sp(meta), where)
        else:
            body, _, flags = pat[1:].rpartition("/")
            node = ast.Matches(left, body, flags, self._sp(meta), where)
        return self._nested(node, (left,), 0)

    def strtest(self, meta, children):
        left, op, right = children
        node = ast.StringTest(str(op), left, right, self._sp(meta))
        return self._nested(node, (left, right), 0)

    def paren(self, meta, children):
        inner = children[1]
        depth = self._d(inner)
        return self._deep(inner, depth + 1, depth)

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
