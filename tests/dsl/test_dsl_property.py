"""The compiled routes agree with a slow tree-walking reference evaluator on random input."""

from __future__ import annotations

import operator

from hypothesis import given, settings
from hypothesis import strategies as st

from dsrouter.dsl import compile_expr, load_config_text

from .conftest import OUTPUTS, SPECS

FIELDS = ("a", "b", "c")  # untyped extension keys: written ext["a"]
CONSTANTS = (0, 1, 2, -1, 1.5, 2.0, "a", "b", "", True, False)
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le}
OPS |= {">": operator.gt, ">=": operator.ge}

# Expression trees as tuples, rendered fully parenthesised so the parser is tested too.
operands = st.one_of(
    st.sampled_from(FIELDS).map(lambda f: ("field", f)),
    st.sampled_from(CONSTANTS).map(lambda c: ("const", c)),
)
comparisons = st.tuples(st.just("cmp"), st.sampled_from(sorted(OPS)), operands, operands).filter(
    # the checker rejects ordering true/false ('<' compares numbers or strings)
    # and constants of different kinds (comparing them is a type error)
    lambda e: (
        (e[1] in ("==", "!=") or not any(isinstance(o[1], bool) for o in e[2:]))
        and (e[2][0] == "field" or e[3][0] == "field")
    )
)
leaves = st.one_of(
    comparisons,
    st.tuples(
        st.just("in"),
        st.booleans(),
        st.sampled_from(FIELDS),
        st.lists(st.sampled_from(CONSTANTS), max_size=4),
    ),
)
exprs = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(["and", "or"]), inner, inner),
        st.tuples(st.just("not"), inner),
    ),
    max_leaves=6,
)
values = st.one_of(st.none(), st.sampled_from(CONSTANTS))
events = st.fixed_dictionaries(
    {},
    optional={
        "a": values,
        "b": values,
        "c": values,
    },
)


def render_const(c) -> str:
    if isinstance(c, bool):
        return "true" if c else "false"
    if isinstance(c, str):
        return f'"{c}"'
    return repr(c)


def render(e) -> str:
    tag = e[0]
    if tag == "cmp":
        return f"{render_operand(e[2])} {e[1]} {render_operand(e[3])}"
    if tag == "in":
        items = ", ".join(render_const(c) for c in e[3])
        return f'ext["{e[2]}"] {"not in" if e[1] else "in"} [{items}]'
    if tag == "not":
        return f"not ({render(e[1])})"
    return f"({render(e[1])}) {tag} ({render(e[2])})"


def render_operand(o) -> str:
    return f'ext["{o[1]}"]' if o[0] == "field" else render_const(o[1])


# ---- the reference: written from DSL.md, independent of the compiler ----


def lookup(event: dict, dotted: str):
    value = event
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def category(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return "string"


def same(a, b) -> bool:
    return category(a) == category(b) and a == b


def reference(e, event: dict) -> bool:
    tag = e[0]
    if tag == "and":
        return reference(e[1], event) and reference(e[2], event)
    if tag == "or":
        return reference(e[1], event) or reference(e[2], event)
    if tag == "not":
        return not reference(e[1], event)
    if tag == "in":
        v = lookup(event, e[2])
        found = v is not None and any(same(v, c) for c in e[3])
        return not found if e[1] else found
    op, left, right = e[1], operand(e[2], event), operand(e[3], event)
    if left is None or right is None:
        return op == "!="
    if op in ("==", "!="):
        return same(left, right) == (op == "==")
    if category(left) != category(right) or category(left) == "bool":
        return False
    return OPS[op](left, right)


def operand(o, event):
    return lookup(event, o[1]) if o[0] == "field" else o[1]


@settings(max_examples=200, deadline=None)
@given(expr=exprs, batch=st.lists(events, min_size=1, max_size=8))
def test_compiled_matches_reference(expr, batch):
    text = OUTPUTS + f"route r {{ when {render(expr)}; to pager }}\nroute _unmatched {{ drop }}\n"
    config = load_config_text(text, "t.conf", SPECS)
    predicate = compile_expr(config.routes[0].when)
    for event in batch:
        assert predicate(event) == reference(expr, event), (render(expr), event)
