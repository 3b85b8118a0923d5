"""The route index and the fast leaf closures change nothing but speed.

The indexed table (the default) is compared with ``compile_routes(..., index=False)``, which tries
every route for every event, on random route files and random events.
"""

from __future__ import annotations

import copy
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.dsl.compiler import as_ip, member_test

from .conftest import OUTPUTS, SPECS

# Top-level conjunct candidates: indexable tests on module / ext["k"], and others.
CONDITIONS = (
    'module == "firewall"',
    '"system" == module',
    'module in ["firewall", "system"]',
    'module in ["intrusion_prevention"]',
    'ext["k"] == 1',
    'ext["k"] in [1, 2.5, "a"]',
    'tenant == "t"',
    'tenant in ["t", "u"]',
    "severity >= 5",
    "src in [10.0.0.0/8, 192.0.2.1, fd00::/8]",
    "src not in [10.0.0.0/8]",
    'host startswith "w"',
    'not (module == "system")',
    'module != "firewall"',
    '(module == "firewall" or severity > 7)',
    'name matches /^a/ or name contains "b"',
)
ACTIONS = (
    "continue",
    "throttle 1 per 1m by host",
    'set team = "x"',
    'set ext["k"] = 1',
    'set ext["k"] = "a"',
)
OUTS = ("pager", "siem", "archive")


class Text(str):
    """A str subclass: equal to "firewall" for ``==`` but not a plain string for ``in``."""


routes = st.tuples(
    st.lists(st.sampled_from(CONDITIONS), max_size=4),
    st.lists(st.sampled_from(ACTIONS), max_size=2, unique=True),
    st.booleans(),  # drop instead of "to"
    st.sampled_from(OUTS),
)
route_files = st.tuples(st.lists(routes, min_size=1, max_size=8), st.booleans())
events = st.fixed_dictionaries(
    {},
    optional={
        "module": st.sampled_from(
            [
                "firewall",
                "system",
                "intrusion_prevention",
                "other",
                5,
                1.0,
                True,
                ["firewall"],
                Text("firewall"),
            ]
        ),
        "k": st.sampled_from([1, 1.0, 2.5, "a", "1", True, None]),
        "severity": st.sampled_from([3, 8, 8.5, "8", None]),
        "src": st.sampled_from(["10.1.2.3", "192.0.2.1", "010.1.2.3", "fd00::1", "x", 7]),
        "host": st.sampled_from(["web", "db", "w"]),
        "tenant": st.sampled_from(["t", "u", "v", None, 0]),
        "name": st.sampled_from(["abc", "xbz", "zzz"]),
    },
)


def render(spec: tuple) -> str:
    lines, catch_all = spec
    out = [OUTPUTS]
    for i, (conds, actions, drop, output) in enumerate(lines):
        body = []
        if conds:
            body.append("when " + " and ".join(conds))
        body += [a for a in actions if not (drop and a == "continue")]
        body.append("drop" if drop else f"to {output}")
        out.append(f"route r{i} {{ {'; '.join(body)} }}")
    out.append(
        "route last { to archive }"
        if catch_all
        else 'route _unmatched { set why = "none"; to archive }'
    )
    return "\n".join(out) + "\n"


def tables(text: str):
    config = load_config_text(text, option_specs=SPECS)
    now = [0.0]
    fast = compile_routes(config, lambda: now[0])
    plain = compile_routes(config, lambda: now[0], index=False)
    return fast, plain, now


@settings(max_examples=120, deadline=None)
@given(route_files, st.lists(events, min_size=1, max_size=10))
def test_indexed_table_decides_like_the_plain_one(spec, evs):
    fast, plain, now = tables(render(spec))
    for ev in evs:
        now[0] += 20.0  # throttle windows of 1m: some events fall in the same window
        a, b = copy.deepcopy(ev), copy.deepcopy(ev)
        assert fast.decide(a) == plain.decide(b)
        assert a == b  # same set actions ran, in the same order
    assert fast.counters() == plain.counters()


@settings(max_examples=40, deadline=None)
@given(route_files, st.lists(events, min_size=1, max_size=6))
def test_explain_agrees_with_the_plain_table(spec, evs):
    fast, plain, now = tables(render(spec))
    for ev in evs:
        now[0] += 20.0
        a, b = copy.deepcopy(ev), copy.deepcopy(ev)
        got = fast.explain(a)
        assert got.decision == plain.decide(b)
        assert [r.name for r in got.routes] == list(fast.route_names)


FIELD_CASES = [
    (
        "module",
        'route a { when module == "x"; to pager }\nroute b { when module in ["y"]; to pager }\n'
        "route c { to archive }",
        ("module",),
    ),
    ("none", "route a { when severity > 1; to pager }\nroute b { to archive }", ()),
    (
        "one-route-is-not-worth-it",
        'route a { when module == "x"; to pager }\nroute b { to archive }',
        (),
    ),
    (
        "most-constrained-first-module-wins-ties",
        'route a { when ext["k"] == 1 and module == "x" and tenant == "t"; to pager }\n'
        'route b { when ext["k"] in [2, 3] and tenant == "u"; to pager }\n'
        'route c { when module == "y" and ext["k"] == 2; to pager }\n'
        'route d { when ext["k"] == 1 and tenant == "t" and format == "cef"; to pager }\n'
        'route e { when format == "leef" and tenant == "t"; to pager }\n'
        "route f { to archive }",
        ("k", "tenant", "module"),
    ),
    (
        "set-field-not-indexed",
        'route a { when ext["k"] == 1; set ext["k"] = 2; to pager; continue }\n'
        'route b { when ext["k"] == 2; to pager }\nroute c { to archive }',
        (),
    ),
    (
        "or-is-not-a-conjunct",
        'route a { when module == "a" or severity > 1; to pager }\n'
        'route b { when module == "b" or severity > 1; to pager }\nroute c { to archive }',
        (),
    ),
]


@pytest.mark.parametrize(
    ("text", "fields"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
)
def test_index_field_choice(text, fields):
    fast, _, _ = tables(OUTPUTS + text + "\n")
    assert fast.index_fields == fields


def test_a_route_setting_the_field_is_seen_by_later_routes():
    text = OUTPUTS + (
        'route a { when ext["k"] == 1; set ext["k"] = 2; to pager; continue }\n'
        'route b { when ext["k"] == 2; to siem }\n'
        'route c { when ext["k"] in [1, 3]; to siem }\n'
        "route rest { to archive }\n"
    )
    fast, _, _ = tables(text)
    assert fast.decide({"k": 1}).routes == ("a", "b")


def test_candidates_skip_other_modules_and_keep_file_order():
    text = OUTPUTS + (
        'route fw { when module == "firewall" and severity >= 8; to pager; continue }\n'
        "route any { when severity >= 9; to siem; continue }\n"
        'route sys { when module in ["system", "firewall"]; to siem }\n'
        "route rest { to archive }\n"
    )
    fast, plain, _ = tables(text)
    for ev, routes in (
        ({"module": "firewall", "severity": 9}, ("fw", "any", "sys")),
        ({"module": "system", "severity": 9}, ("any", "sys")),
        ({"module": "other", "severity": 9}, ("any", "rest")),
        ({"severity": 3}, ("rest",)),
        ({"module": Text("firewall"), "severity": 9}, ("fw", "any", "rest")),
    ):
        assert fast.decide(dict(ev)).routes == routes
        assert plain.decide(dict(ev)).routes == routes
    assert [len(fast._combos[(m,)]) for m in ("firewall", "system")] == [4, 3]


IP_VALUES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_address("192.0.2.1")]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(
            st.sampled_from(["0", "00", "01", "10", "255", "256", "1a", " 1", ""]), max_size=5
        ).map(".".join),
        st.sampled_from(["192.0.2.1", "10.9.8.7", "::ffff:10.0.0.1", "1.2.3.4\x00", "٣.1.1.1"]),
    )
)
def test_ipv4_fast_path_agrees_with_ipaddress(text):
    ip = as_ip(text)
    want = ip is not None and (ip == IP_VALUES[1] or (ip.version == 4 and ip in IP_VALUES[0]))
    assert member_test(lambda e: e.get("v"), IP_VALUES, "v")({"v": text}) is want
    assert member_test(lambda e: e.get("v"), IP_VALUES)({"v": text}) is want


CHAINS = [
    (
        "and6",
        " and ".join(f'ext["f{i}"] == 1' for i in range(6)),
        {f"f{i}": 1 for i in range(6)},
        True,
    ),
    (
        "and6-last-false",
        " and ".join(f'ext["f{i}"] == 1' for i in range(6)),
        {f"f{i}": 1 for i in range(5)},
        False,
    ),
    ("or7", " or ".join(f'ext["f{i}"] == 1' for i in range(7)), {"f6": 1}, True),
    ("or7-none", " or ".join(f'ext["f{i}"] == 1' for i in range(7)), {"f6": 2}, False),
]


@pytest.mark.parametrize(
    ("cond", "event", "want"), [c[1:] for c in CHAINS], ids=[c[0] for c in CHAINS]
)
def test_long_chains_are_fused_correctly(cond, event, want):
    fast, _, _ = tables(
        OUTPUTS + f"route a {{ when {cond}; to pager }}\nroute b {{ to archive }}\n"
    )
    assert (fast.decide(event).routes == ("a",)) is want
