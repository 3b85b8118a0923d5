"""Syntax errors (``E101``-``E103``) worded for the person who wrote the file.

lark reports the terminals it would have accepted; these are grouped into what a reader
thinks in: "a value", "a condition", "an operator", "'and'", "an action", "'}'". A missing
operand is reported at the word that took its place, naming the operator it belongs to::

    when severity >= and module == "x"   →   expected a value after '>=', found 'and'

``quote=False`` (a file that does not look like configuration, see :mod:`.parser`) keeps the
text of the file out of the message: a token is described by its kind (``a name``), never
quoted.
"""

from __future__ import annotations

from collections.abc import Iterable

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dsrouter.ds.catalog import FIELDS
from dsrouter.errors import Span

KEYWORDS = (
    "settings include input output route test when to continue drop throttle per by set expect "
    "routes outputs dropped and or not in matches contains startswith endswith true false"
).split()

#: Words that are never a name (the grammar's NAME terminal excludes exactly these).
RESERVED = frozenset(
    "and or not in matches contains startswith endswith true false "
    "when to continue drop throttle per by set".split()
)

TOKEN_NAMES: dict[str, str] = {
    **{word.upper(): f"'{word}'" for word in KEYWORDS},
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

_LITERALS = frozenset({"STRING", "INT", "FLOAT", "DURATION", "SIZE", "IPV4", "IPV6"})
_VALUES = _LITERALS | {"TRUE", "FALSE", "LBRACKET"}
_OPERATORS = frozenset({"COMPARE", "IN", "MATCHES", "CONTAINS", "STARTSWITH", "ENDSWITH"})
_ACTIONS = ("WHEN", "TO", "CONTINUE", "DROP", "THROTTLE", "SET")
_ITEMS = ("SETTINGS", "INCLUDE", "INPUT", "OUTPUT", "ROUTE", "TEST")
_CONTINUATIONS = frozenset({"DOT", "LBRACKET", "LPAR"})
_PUNCT_ORDER = ("ASSIGN", "LBRACE", "COMMA", "SEMICOLON", "RPAR", "RBRACKET", "RBRACE", "$END")
#: Tokens after which a missing operand is named: "expected a value after '>='".
_OPERAND_AFTER = _OPERATORS | {"AND", "OR", "NOT", "WHEN", "ASSIGN", "PER", "BY", "TO"}
_NUMBER_HELP = "durations end in ms, s, m, h or d; sizes in B, KiB, MiB or GiB"

SyntaxProblem = tuple[str, str, Span, str | None]


def syntax_error(exc: UnexpectedInput, path: str, text: str, quote: bool) -> SyntaxProblem:
    """``(code, message, span, help)`` for a lark parse error."""
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        return _unexpected_token(exc, path, quote)
    if isinstance(exc, UnexpectedCharacters):
        span = Span(path, exc.line, exc.column, exc.line, exc.column + 1)
        msg = f"unexpected character {exc.char!r}" if quote else "unexpected character"
        if exc.char.isdigit():
            return "E102", msg, span, _NUMBER_HELP
        allowed = exc.allowed or set()
        return "E102", msg, span, f"expected {describe(allowed)}" if allowed else None
    at_end: set[str] = getattr(exc, "expected", None) or set()
    line, column = _end_position(text)
    span = Span(path, line, column, line, column + 1)
    help = f"expected {describe(at_end)}" if at_end else None
    return "E103", "unexpected end of file", span, help


def parsed_an_item(exc: UnexpectedInput) -> bool:
    """True when at least one complete block of the file parsed before the error."""
    parser = getattr(exc, "interactive_parser", None)
    stack = parser.parser_state.value_stack if parser is not None else ()
    items = {"settings", "include", "block", "route", "test"}
    for value in stack:
        if isinstance(value, Tree):
            kids = [value, *value.children]
            if any(isinstance(k, Tree) and k.data in items for k in kids):
                return True
    return False


def _unexpected_token(exc: UnexpectedToken, path: str, quote: bool) -> SyntaxProblem:
    tok = exc.token
    span = Span(path, tok.line, tok.column, tok.end_line, tok.end_column)
    found = describe_token(tok, quote)
    parts = _parts(exc.accepts or exc.expected)
    wanted = _join(parts)
    prev = _previous_token(exc)
    help = None
    word = tok.type.lower()
    if word in RESERVED and word in FIELDS and ("a value" in wanted or "a condition" in wanted):
        help = f"'{word}' is a reserved word: write the field as ext[\"{word}\"]"
    if prev is not None and prev.type in _OPERAND_AFTER and len(parts) == 1:
        return "E101", f"expected {wanted} after '{prev}', found {found}", span, help
    return "E101", f"expected {wanted}, found {found}", span, help


def _previous_token(exc: UnexpectedToken) -> Token | None:
    """The last token the parser took before the error, if it is still on its stack."""
    parser = getattr(exc, "interactive_parser", None)
    stack = parser.parser_state.value_stack if parser is not None else ()
    last = stack[-1] if stack else None
    return last if isinstance(last, Token) else None


def describe_token(tok: Token, quote: bool = True) -> str:
    """A found token: keywords and punctuation as written, other text quoted (or its kind)."""
    name = TOKEN_NAMES.get(tok.type)
    if name is not None and (name.startswith("'") or not quote):
        return name
    if not quote:
        return "text"
    text = str(tok)
    return f"'{text}'" if len(text) <= 40 else f"'{text[:37]}...'"


def describe(names: Iterable[str]) -> str:
    """What the parser would have accepted, in words: ``a value, 'and', 'or' or '}'``."""
    return _join(_parts(names))


def _join(parts: list[str]) -> str:
    if not parts:
        return "nothing more"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _parts(names: Iterable[str]) -> list[str]:
    """The accepted terminals grouped into what a reader thinks in, in a fixed order."""
    rest = set(names)
    parts: list[str] = []
    if "REGEX" in rest:
        parts.append("a /regex/ or a string")
        rest -= {"REGEX", "STRING"}
    if len(rest & _VALUES) > 1 or (rest & _VALUES and "NAME" in rest):
        parts.append("a condition" if "NOT" in rest and not rest & _OPERATORS else "a value")
        rest -= _VALUES | {"NAME", "LPAR", "NOT"}
    if len(rest & _OPERATORS) > 1:
        parts.append("an operator (==, !=, <, in, not in, matches, contains, ...)")
        rest -= _OPERATORS | {"NOT"}
    parts += [f"'{w.lower()}'" for w in ("AND", "OR") if w in rest]
    rest -= {"AND", "OR"}
    actions = [w.lower() for w in _ACTIONS if w in rest]
    if len(actions) > 1:
        parts.append(f"an action ({', '.join(actions)})")
        rest -= set(_ACTIONS)
    items = [w.lower() for w in _ITEMS if w in rest]
    if len(items) > 2:
        parts.append(f"a block ({', '.join(items)})")
        rest -= set(_ITEMS)
    if parts or rest - _CONTINUATIONS:
        rest -= _CONTINUATIONS  # '.', '[' and '(' after a name: noise beside the rest
    parts += sorted(TOKEN_NAMES.get(n, n) for n in rest - set(_PUNCT_ORDER))
    parts += [TOKEN_NAMES[n] for n in _PUNCT_ORDER if n in rest]
    return parts


def _end_position(text: str) -> tuple[int, int]:
    """Line and column just after the last character of ``text``."""
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1
