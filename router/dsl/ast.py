"""The syntax tree of a configuration file: frozen dataclasses, each with the span it came from.

The parser builds these from lark's parse tree; the checker reads them and never changes them.
Values are already decoded (strings unescaped, ``30s`` → :class:`~dsrouter.options.Duration`,
``10.0.0.0/8`` → an ``ipaddress`` network) but not resolved: ``env()`` and ``file()`` stay
:class:`Call` nodes until the checker resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsrouter.errors import Span

# ---- values and expressions -------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A constant: str, int, float, bool, Duration, Size or an ipaddress address/network."""

    value: Any
    span: Span


@dataclass(frozen=True)
class ListValue:
    """``[a, b, c]``."""

    items: tuple[Node, ...]
    span: Span


@dataclass(frozen=True)
class Call:
    """``name(arg, ...)``: ``env``/``file`` in values, functions in expressions."""

    name: str
    args: tuple[Node, ...]
    span: Span


@dataclass(frozen=True)
class Resolved:
    """A constant computed while checking, never produced by the parser.

    ``value``: the Python value; ``source``: the :class:`Call` it replaces (``env("X")``,
    ``file("p")``, a folded pure function call); ``secret``: True for ``env()``/``file()``
    results, which ``explain`` and diagnostics show as ``source``, never as ``value``;
    ``span``: the span of ``source``.
    """

    value: Any
    source: Call
    secret: bool
    span: Span


@dataclass(frozen=True)
class Field:
    """A field reference: ``severity``, ``syslog.hostname`` (path of two) or ``ext["k"]``."""

    path: tuple[str, ...]
    span: Span
    ext: bool = False

    @property
    def dotted(self) -> str:
        return f'ext["{self.path[0]}"]' if self.ext else ".".join(self.path)


@dataclass(frozen=True)
class Subscript:
    """``name["key"]`` where ``name`` is not ``ext``: parsed so the checker can say why not."""

    name: str
    key: str
    span: Span


@dataclass(frozen=True)
class Compare:
    """``left OP right`` with OP one of ``== != < <= > >=``."""

    op: str
    left: Node
    right: Node
    span: Span


@dataclass(frozen=True)
class Member:
    """``left in right`` or, when ``negated``, ``left not in right``."""

    left: Node
    right: Node
    negated: bool
    span: Span


@dataclass(frozen=True)
class Matches:
    """``left matches /pattern/flags`` or ``left matches "pattern"``.

    ``pattern`` is the regex text (escapes of a "string" already decoded), ``flags`` the
    letters after the closing ``/`` ("" for a string), ``pattern_span`` where the regex
    literal itself is written (None when built by hand).
    """

    left: Node
    pattern: str
    flags: str
    span: Span
    pattern_span: Span | None = None


@dataclass(frozen=True)
class StringTest:
    """``left contains|startswith|endswith right``."""

    op: str
    left: Node
    right: Node
    span: Span


@dataclass(frozen=True)
class BoolOp:
    """``left and right`` / ``left or right``."""

    op: str
    left: Node
    right: Node
    span: Span


@dataclass(frozen=True)
class Not:
    """``not operand``."""

    operand: Node
    span: Span


Node = (
    Literal
    | ListValue
    | Call
    | Resolved
    | Field
    | Subscript
    | Compare
    | Member
    | Matches
    | StringTest
    | BoolOp
    | Not
)

# ---- file structure ---------------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    """An identifier with its position (block names, output names in ``to``)."""

    text: str
    span: Span


@dataclass(frozen=True)
class Option:
    """``key = value`` inside a block."""

    key: Name
    value: Node
    span: Span


@dataclass(frozen=True)
class Settings:
    options: tuple[Option, ...]
    span: Span


@dataclass(frozen=True)
class Include:
    pattern: str
    span: Span


@dataclass(frozen=True)
class BlockDecl:
    """``input NAME { ... }`` or ``output NAME { ... }``; ``kind`` is "input" or "output"."""

    kind: str
    name: Name
    options: tuple[Option, ...]
    span: Span


# ---- route actions ----


@dataclass(frozen=True)
class When:
    expr: Node
    span: Span


@dataclass(frozen=True)
class To:
    targets: tuple[Name, ...]
    span: Span


@dataclass(frozen=True)
class Continue:
    span: Span


@dataclass(frozen=True)
class Drop:
    span: Span


@dataclass(frozen=True)
class Throttle:
    """``throttle COUNT per WINDOW [by FIELD, ...]``: ``window`` in seconds (a Duration)."""

    count: int
    window: float
    by: tuple[Field | Subscript, ...]
    span: Span


@dataclass(frozen=True)
class SetField:
    """``set FIELD = EXPR``: ``expr`` is a value expression (field, constant or call)."""

    field: Field | Subscript
    expr: Node
    span: Span


Action = When | To | Continue | Drop | Throttle | SetField

ACTION_WORDS = {
    When: "when",
    To: "to",
    Continue: "continue",
    Drop: "drop",
    Throttle: "throttle",
    SetField: "set",
}


@dataclass(frozen=True)
class RouteDecl:
    name: Name
    actions: tuple[Action, ...]
    span: Span


# ---- test blocks ----


@dataclass(frozen=True)
class TestInput:
    __test__ = False  # not a pytest test class

    text: str
    span: Span


@dataclass(frozen=True)
class ExpectRoutes:
    names: ListValue
    span: Span


@dataclass(frozen=True)
class ExpectOutputs:
    names: ListValue
    span: Span


@dataclass(frozen=True)
class ExpectDropped:
    span: Span


@dataclass(frozen=True)
class ExpectField:
    field: Field | Subscript
    value: Node
    span: Span


TestItem = TestInput | ExpectRoutes | ExpectOutputs | ExpectDropped | ExpectField


@dataclass(frozen=True)
class TestDecl:
    __test__ = False  # not a pytest test class

    description: str
    items: tuple[TestItem, ...]
    span: Span


Item = Settings | Include | BlockDecl | RouteDecl | TestDecl


@dataclass(frozen=True)
class File:
    """One parsed file: its items in order (includes not yet expanded)."""

    path: str
    items: tuple[Item, ...]
