"""Properties of the language front end, checked on generated input (Hypothesis, bounded).

1. The loader never crashes: any text ends as a Config or a ConfigError whose diagnostics
   all carry a code and a span.
2. ``pretty`` is the parser's inverse: pretty-printing a generated AST and parsing the text
   gives the same AST (spans stripped).

The compiled routes are compared with the reference evaluator in test_properties_reference.py.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dsrouter.dsl import ast, load_config_text
from dsrouter.dsl.pretty import literal, pretty, pretty_expr
from dsrouter.errors import ConfigError
from dsrouter.options import Duration, Size

from .conftest import SPECS
from .properties_common import FAST, NOWHERE, SPAN, STRING_OPS, _build, reparse, strip

# ---- 1. the loader never crashes --------------------------------------------------------

KEYWORDS = (
    "settings include input output route test when to continue drop throttle per by set expect "
    "routes outputs dropped and or not in matches contains startswith endswith true false ext env "
    "file lower upper len int str exists type path severity module src dpt"
).split()
PUNCT = list("{}[](),;.=") + ["==", "!=", "<", "<=", ">", ">=", "\n", "#c\n"]
ATOMS = (
    r'"file" "stdout" "x" "\q" "a\"b" " /a+/i /[/ /(/ 1 -2 1.5 30s 5m 0ms 64KiB 12XB 10.0.0.0/8 '
    r"10.0.0.1/8 300.1.1.1 2001:db8::/32 ::1 1:2 99999999999999999999 é \ ' @"
).split() + ["\x00"]
TOKENS = st.sampled_from(KEYWORDS + PUNCT + ATOMS) | st.from_regex(r"[a-z_]{1,6}", fullmatch=True)
GRAMMAR_SOUP = st.lists(TOKENS, max_size=40).map(" ".join)

VALID = """
output archive { type = "file", path = "a.jsonl", retain = 30d }
output pager { type = "stdout" }
route critical {
  when severity >= 8 and module in ["firewall", "anti_malware"] and not (dpt == 137)
  to pager, archive
  continue
}
route everything { to archive }
test "t" { input "<134>x"; expect routes == ["everything"] }
"""


@st.composite
def mutated(draw) -> str:
    """The valid config with a few slices deleted, duplicated or replaced by tokens."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        how = draw(st.sampled_from(["delete", "duplicate", "replace"]))
        middle = {"delete": "", "duplicate": text[i:j] * 2, "replace": draw(TOKENS)}[how]
        text = text[:i] + middle + text[j:]
    return text


def load_any(text: str) -> None:
    """Load ``text``; only a ConfigError with located, coded diagnostics may escape."""
    try:
        load_config_text(text, "fuzz.conf", SPECS, base_dir=NOWHERE, environ={})
    except ConfigError as exc:
        assert exc.diagnostics, "a ConfigError without diagnostics"
        for diag in exc.diagnostics:
            assert diag.code[:1] in "EW" and diag.code[1:].isdigit(), diag
            assert diag.span is not None or _unlocated_ok(text, diag), diag
            assert diag.span is None or diag.span.line >= 1, diag


def _unlocated_ok(text: str, diag) -> bool:
    """E301 on a file without any item has nowhere to point (reported to the lead)."""
    return diag.code == "E301" and not any(
        word in text for word in ("settings", "input", "output", "route", "test")
    )


@FAST
@given(text=st.text(max_size=200))
@example(text="")
@example(text="route")
@example(text="route r { when a matches /(/ ; to x }")
def test_loader_survives_arbitrary_text(text):
    load_any(text)


@FAST
@given(text=GRAMMAR_SOUP)
def test_loader_survives_token_soup(text):
    load_any(text)


@FAST
@given(text=mutated())
def test_loader_survives_mutated_config(text):
    load_any(text)


# ---- 2. pretty-print then parse gives the same AST --------------------------------------

KEYWORD_SET = frozenset(KEYWORDS[:28])
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True).filter(
    lambda n: n not in KEYWORD_SET
)
texts = st.text(  # biased towards the characters that need escaping
    alphabet=st.sampled_from('ab"\\\n\t\r /é')
    | st.characters(codec="utf-8", exclude_categories=("Cs",)),
    max_size=12,
)
finite = st.floats(allow_nan=False, allow_infinity=False)
ms = st.integers(0, 10**9)
durations = st.one_of(
    ms.map(lambda n: Duration(n * 0.001)),
    st.tuples(st.integers(0, 10**6), st.sampled_from([1, 60, 3600, 86400])).map(
        lambda t: Duration(t[0] * t[1])
    ),
)
sizes = st.tuples(st.integers(0, 10**6), st.sampled_from([1, 1024, 1024**2, 1024**3])).map(
    lambda t: Size(t[0] * t[1])
)
ip_literals = st.one_of(
    st.ip_addresses(),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(
        lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)
    ),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)).map(
        lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)
    ),
)
literal_values = st.one_of(
    texts, st.integers(-(10**20), 10**20), finite, st.booleans(), durations, sizes, ip_literals
)
literals = literal_values.map(lambda v: ast.Literal(v, SPAN))
values = st.recursive(
    literals,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: ast.ListValue(tuple(xs), SPAN)),
        st.tuples(names, st.lists(inner, max_size=2)).map(
            lambda t: ast.Call(t[0], tuple(t[1]), SPAN)
        ),
    ),
    max_leaves=5,
)
plain_fields = st.lists(names, min_size=1, max_size=3).map(lambda p: ast.Field(tuple(p), SPAN))
fields = st.one_of(
    plain_fields,
    texts.map(lambda k: ast.Field((k,), SPAN, ext=True)),
    st.tuples(names.filter(lambda n: n != "ext"), texts).map(
        lambda t: ast.Subscript(t[0], t[1], SPAN)
    ),
)
regex_bodies = st.one_of(
    st.from_regex(r"(?:[^/\\\n]|\\[a-z/\\.])+", fullmatch=True),
    texts,
)
regexes = st.tuples(regex_bodies, st.sampled_from(["", "i", "im"])).filter(lambda t: _regex_ok(*t))
COMPARE_OPS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def _regex_ok(pattern: str, flags: str) -> bool:
    """With flags a pattern must fit ``/.../`` as it is; others are escaped (tested below)."""
    return not flags or re.fullmatch(r"(?:[^/\\\n]|\\.)+", pattern) is not None


def expressions(operand_pool):
    def extend(inner):
        operand = st.one_of(operand_pool, inner)  # inner ones are parenthesised as needed
        return st.one_of(
            _build(lambda a, op, b: ast.Compare(op, a, b, SPAN), operand, COMPARE_OPS, operand),
            _build(lambda a, b, n: ast.Member(a, b, n, SPAN), operand, operand, st.booleans()),
            _build(lambda a, op, b: ast.StringTest(op, a, b, SPAN), operand, STRING_OPS, operand),
            _build(lambda a, r: ast.Matches(a, *r, SPAN), operand, regexes),
            _build(
                lambda a, op, b: ast.BoolOp(op, a, b, SPAN),
                inner,
                st.sampled_from(["and", "or"]),
                inner,
            ),
            inner.map(lambda x: ast.Not(x, SPAN)),
            st.tuples(names, st.lists(inner, max_size=2)).map(
                lambda t: ast.Call(t[0], tuple(t[1]), SPAN)
            ),
        )

    return st.recursive(operand_pool, extend, max_leaves=8)


operands = st.one_of(literals, values, fields)
exprs = expressions(operands)
name_nodes = names.map(lambda n: ast.Name(n, SPAN))
options = _build(lambda k, v: ast.Option(k, v, SPAN), name_nodes, values)
option_lists = st.lists(options, max_size=3).map(tuple)
actions = st.one_of(
    exprs.map(lambda e: ast.When(e, SPAN)),
    st.lists(name_nodes, min_size=1, max_size=3).map(lambda ns: ast.To(tuple(ns), SPAN)),
    st.just(ast.Continue(SPAN)),
    st.just(ast.Drop(SPAN)),
    _build(
        lambda n, w, by: ast.Throttle(n, w, tuple(by), SPAN),
        st.integers(0, 10**6),
        durations,
        st.lists(fields, max_size=2),
    ),
    _build(lambda f, e: ast.SetField(f, e, SPAN), fields, exprs),
)
list_values = st.lists(values, max_size=3).map(lambda xs: ast.ListValue(tuple(xs), SPAN))
test_items = st.one_of(
    texts.map(lambda t: ast.TestInput(t, SPAN)),
    list_values.map(lambda v: ast.ExpectRoutes(v, SPAN)),
    list_values.map(lambda v: ast.ExpectOutputs(v, SPAN)),
    st.just(ast.ExpectDropped(SPAN)),
    _build(lambda f, v: ast.ExpectField(f, v, SPAN), fields, values),
)
items = st.one_of(
    option_lists.map(lambda o: ast.Settings(o, SPAN)),
    texts.map(lambda p: ast.Include(p, SPAN)),
    _build(
        lambda k, n, o: ast.BlockDecl(k, n, o, SPAN),
        st.sampled_from(["input", "output"]),
        name_nodes,
        option_lists,
    ),
    _build(
        lambda n, a: ast.RouteDecl(n, tuple(a), SPAN), name_nodes, st.lists(actions, max_size=5)
    ),
    _build(lambda d, t: ast.TestDecl(d, tuple(t), SPAN), texts, st.lists(test_items, max_size=4)),
)
files = st.lists(items, max_size=5).map(lambda xs: ast.File("gen", tuple(xs)))


@FAST
@given(expr=exprs)
def test_pretty_expression_round_trip(expr):
    text = f"route r {{ when {pretty_expr(expr)} }}"
    (route,) = reparse(text).items
    assert strip(route.actions[0].expr) == strip(expr), text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=files)
def test_pretty_file_round_trip(file):
    text = pretty(file)
    again = reparse(text)
    assert strip(again.items) == strip(file.items), text
    assert pretty(again) == text  # canonical: a second pass changes nothing


@FAST
@given(value=literal_values)
def test_literal_round_trip(value):
    text = f"settings {{ k = {literal(value)} }}"
    (settings_,) = reparse(text).items
    assert strip(settings_.options[0].value.value) == strip(value), text


REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    p.relative_to(REPO).as_posix()
    for p in [*REPO.glob("rules/**/*.rules"), *REPO.glob("examples/*.conf")]
)


@pytest.mark.parametrize("relpath", SHIPPED)
def test_pretty_round_trips_shipped_files(relpath):
    parsed = reparse((REPO / relpath).read_text("utf-8"))
    text = pretty(parsed)
    again = reparse(text)
    assert strip(again.items) == strip(parsed.items)
    assert pretty(again) == text


def test_shipped_files_are_found():
    assert len(SHIPPED) >= 3


PRETTY_CASES = [
    ("or-left-assoc", "a == 1 or b == 2 or c == 3", "a == 1 or b == 2 or c == 3"),
    ("or-right-group", "a == 1 or (b == 2 or c == 3)", "a == 1 or (b == 2 or c == 3)"),
    ("and-in-or", "(a == 1 and b == 2) or c == 3", "a == 1 and b == 2 or c == 3"),
    ("or-in-and", "(a == 1 or b == 2) and c == 3", "(a == 1 or b == 2) and c == 3"),
    ("not-binds-tighter", "(not a == 1) and b == 2", "not a == 1 and b == 2"),
    ("not-of-and", "not (a == 1 and b == 2)", "not (a == 1 and b == 2)"),
    ("double-not", "not (not (x == 1))", "not not x == 1"),
    ("test-as-operand", "(a == 1) == (b == 2)", "(a == 1) == (b == 2)"),
    ("regex-slash", 'x matches "a/b"', 'x matches "a/b"'),
    ("regex-flags", "x matches /a\\/b/i", "x matches /a\\/b/i"),
    ("string-escapes", 'x == "q\\"\\\\\\n\\t"', 'x == "q\\"\\\\\\n\\t"'),
    ("duration-canonical", "x == 60s and y == 1500ms", "x == 1m and y == 1500ms"),
    ("size-canonical", "x == 1024B and y == 0KiB", "x == 1KiB and y == 0B"),
    ("ips", "src in [10.0.0.0/8, 2001:db8::/32, ::1]", "src in [10.0.0.0/8, 2001:db8::/32, ::1]"),
    ("ext-key", 'ext["a \\" b"] contains "x"', 'ext["a \\" b"] contains "x"'),
    ("float-exponent", "x == 1.0e+20", "x == 1.0e+20"),
]


@pytest.mark.parametrize(
    "source, expected", [c[1:] for c in PRETTY_CASES], ids=[c[0] for c in PRETTY_CASES]
)
def test_pretty_canonical_form(source, expected):
    (route,) = reparse(f"route r {{ when {source} }}").items
    assert pretty_expr(route.actions[0].expr) == expected


UNWRITABLE = [
    (
        "field-in-list",
        ast.Member(
            ast.Field(("a",), SPAN), ast.ListValue((ast.Field(("b",), SPAN),), SPAN), False, SPAN
        ),
    ),
    ("infinity", ast.Compare("==", ast.Field(("a",), SPAN), ast.Literal(float("inf"), SPAN), SPAN)),
    (
        "sub-millisecond",
        ast.Compare("==", ast.Field(("a",), SPAN), ast.Literal(Duration(1e-4), SPAN), SPAN),
    ),
    ("bad-flags", ast.Matches(ast.Field(("a",), SPAN), "x", "I", SPAN)),
]


def test_pretty_escapes_a_flagged_regex_into_the_same_regex():
    node = ast.Matches(ast.Field(("a",), SPAN), "x/y\n", "i", SPAN)
    assert pretty_expr(node) == "a matches /x\\/y\\n/i"


@pytest.mark.parametrize("node", [c[1] for c in UNWRITABLE], ids=[c[0] for c in UNWRITABLE])
def test_pretty_refuses_what_the_grammar_cannot_say(node):
    with pytest.raises(ValueError):
        pretty_expr(node)
