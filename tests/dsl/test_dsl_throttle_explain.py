"""throttle (fake clock), counters, explain traces and plugin-provided functions."""

from __future__ import annotations

import pytest

from dsrouter.api import Function, hookimpl
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.dsl.throttle import Throttle
from dsrouter.plugin import Plugins

from .conftest import OUTPUTS, SPECS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(routes: str, clock=None):
    config = load_config_text(OUTPUTS + routes, "t.conf", SPECS)
    return compile_routes(config, clock=clock) if clock else compile_routes(config)


THROTTLED = (
    "route page { when severity >= 8; throttle 2 per 1m by host; to pager }\n"
    "route rest { to archive }\n"
)


def test_throttle_per_key_fixed_window_and_fall_through():
    clock = Clock()
    t = table(THROTTLED, clock)
    ev = {"severity": 9, "host": "web-01"}
    got = [t.decide(dict(ev)).routes for _ in range(3)]
    assert got == [("page",), ("page",), ("rest",)]
    assert t.decide({"severity": 9, "host": "db-01"}).routes == ("page",)  # its own key
    clock.now += 59.9
    assert t.decide(dict(ev)).routes == ("rest",)
    clock.now += 0.1  # the window opened at 1000.0 has ended
    assert t.decide(dict(ev)).routes == ("page",)
    assert t.counters()["throttled"] == {"page": 2}


def test_throttle_without_by_and_counters_shape():
    clock = Clock()
    t = table("route p { throttle 1 per 5s; to pager }\nroute d { drop }\n", clock)
    assert [t.decide({}).routes for _ in range(3)] == [("p",), ("d",), ("d",)]
    assert t.counters() == {
        "throttled": {"p": 2},
        "throttle_evicted": {"p": 0},
        "dropped": {"d": 2},
    }


def test_throttle_cap_evicts_oldest_and_counts():
    clock = Clock()
    gate = Throttle(1, 60.0, [lambda e: e["k"]], clock, max_keys=2)
    assert [gate.admit({"k": k}) for k in ("a", "b", "c")] == [True, True, True]
    assert list(gate.windows) == [("b",), ("c",)] and gate.evicted == 1
    clock.now += 61  # expired windows are removed without counting an eviction
    assert gate.admit({"k": "d"}) and gate.evicted == 1
    assert gate.admit({"k": "a"})  # "a" was evicted: a fresh window


def test_throttle_unhashable_key_is_keyed_by_text():
    gate = Throttle(1, 60.0, [lambda e: e["k"]], Clock())
    assert gate.admit({"k": {"a": 1}}) and not gate.admit({"k": {"a": 1}})


def test_dropped_counter_counts_unmatched_drop():
    t = table("route a { when dpt == 1; to pager }\nroute _unmatched { drop }\n")
    for _ in range(3):
        t.decide({})
    assert t.counters()["dropped"] == {"_unmatched": 3}


# ---- explain ----

EXPLAINED = (
    'route critical { when severity >= 8 and module in ["intrusion_prevention"]\n'
    "  throttle 1 per 5m by host, signature_id; to pager; continue }\n"
    'route noise { when act == "Deny" or dpt in [137]; drop }\n'
    "route everything { to archive }\n"
)


def test_explain_traces_every_route():
    t = table(EXPLAINED, Clock())
    event = {"severity": 6, "act": "Allow", "dpt": 137}
    ex = t.explain(event)
    assert ex.decision == t.decide(dict(event))
    got = [(r.name, r.verdict, r.steps) for r in ex.routes]
    assert got == [
        ("critical", "no match", ["severity >= 8  →  6 >= 8  →  false"]),
        (
            "noise",
            "dropped",
            [
                'act == "Deny"  →  "Allow" == "Deny"  →  false',
                "dpt in [137]  →  137 in [137]  →  true",
            ],
        ),
        (
            "everything",
            "not reached",
            [],
        ),
    ]
    assert ex.routes[0].span.line == 5


def test_explain_throttle_line_and_same_state_as_decide():
    t = table(EXPLAINED, Clock())
    ev = {
        "severity": 9,
        "module": "intrusion_prevention",
        "host": "web-01",
        "signature_id": 1000552,
    }
    first = t.explain(dict(ev))
    assert first.routes[0].verdict == "matched, continue"
    assert first.routes[0].throttle == "1 of 1 per 5m for key ('web-01', 1000552): within the limit"
    second = t.explain(dict(ev))
    assert second.routes[0].verdict == "throttled"
    assert second.routes[0].throttle == "2 of 1 per 5m for key ('web-01', 1000552): over the limit"
    assert second.decision.routes == ("everything",)
    assert t.counters()["throttled"] == {"critical": 1}


def test_explain_applies_set_and_hides_env_values():
    config = load_config_text(
        OUTPUTS + 'route a { when cs1 == env("TOKEN"); set seen = true; to pager }\n'
        "route b { to archive }\n",
        "t.conf",
        SPECS,
        environ={"TOKEN": "s3cret"},
    )
    t = compile_routes(config)
    event = {"cs1": "s3cret"}
    ex = t.explain(event)
    assert ex.routes[0].steps == ['cs1 == env("TOKEN")  →  "s3cret" == env("TOKEN")  →  true']
    assert event["seen"] is True


def test_explain_unmatched_trace():
    t = table(
        'route a { when not (dpt == 1 and act == "x"); to pager }\nroute _unmatched { drop }\n'
    )
    ex = t.explain({"dpt": 1, "act": "x"})
    assert [(r.name, r.verdict) for r in ex.routes] == [
        ("a", "no match"),
        ("_unmatched", "dropped"),
    ]
    assert ex.routes[0].steps == [
        "dpt == 1  →  1 == 1  →  true",
        'act == "x"  →  "x" == "x"  →  true',
    ]


# ---- plugin functions ----


def geo(ip: str) -> str:
    return "JP" if ip.startswith("203.") else "US"


class GeoPlugin:
    calls: list = []

    @hookimpl
    def dsrouter_register_functions(self, register):
        register(Function("geo", geo, params=("ip",), returns="string", help="country of an IP"))
        register(Function("boom", lambda s: 1 / 0, params=("string",), returns="bool"))
        register(Function("twice", lambda n: n * 2, params=("number",), returns="int"))


@pytest.fixture(scope="module")
def plugin_specs():
    specs = Plugins(extra=[GeoPlugin()], entry_points=False).option_specs()
    return {**SPECS, "functions": specs["functions"]}


def test_plugin_function_routes(plugin_specs):
    text = OUTPUTS + 'route jp { when geo(src) == "JP"; to pager }\nroute _unmatched { drop }\n'
    t = compile_routes(load_config_text(text, "t.conf", plugin_specs))
    assert t.decide({"src": "203.0.113.9"}).routes == ("jp",)
    assert t.decide({"src": "198.51.100.1"}).routes == ("_unmatched",)
    assert t.decide({}).routes == ("_unmatched",)  # null in, null out


def test_plugin_function_errors_yield_null_and_fold(plugin_specs):
    text = OUTPUTS + (
        "route a { when boom(msg); to pager }\nroute b { when twice(2) == 4 and dpt == 1; to siem }\n"
        "route _unmatched { drop }\n"
    )
    t = compile_routes(load_config_text(text, "t.conf", plugin_specs))
    assert t.decide({"msg": "x"}).routes == ("_unmatched",)
    assert t.decide({"dpt": 1}).routes == ("b",)


@pytest.mark.parametrize(
    "cond, code, message",
    [
        ('geo(severity) == "JP"', "E231", "geo() expects an IP address as argument 1"),
        ('geo(src, dst) == "JP"', "E233", "geo() takes 1 argument, got 2"),
        ("geo(src) == 1", "E231", "is always false"),
        ('gео(src) == "JP"', "E102", "unexpected character"),
    ],
    ids=["arg-type", "arity", "result-type", "non-ascii-name"],
)
def test_plugin_function_checked(plugin_specs, cond, code, message):
    from .conftest import diagnostics_of

    diags = diagnostics_of(
        OUTPUTS + f"route r {{ when {cond}; to pager }}\nroute x {{ drop }}\n",
        option_specs=plugin_specs,
    )
    assert any(d.code == code and message in d.message for d in diags), [d.render() for d in diags]


def test_plugin_function_duplicates_rejected():
    class Other:
        @hookimpl
        def dsrouter_register_functions(self, register):
            register(Function("geo", geo, params=("ip",)))

    plugins = Plugins(extra=[GeoPlugin(), Other()], entry_points=False)
    assert plugins.functions["geo"].plugin == "GeoPlugin"  # the first one keeps the name
    [problem] = plugins.problems
    assert "plugin 'Other'" in problem and "function 'geo' is already registered" in problem


def test_plugin_function_cannot_shadow_builtin():
    class Shadow:
        @hookimpl
        def dsrouter_register_functions(self, register):
            register(Function("lower", str.lower, params=("string",)))

    plugins = Plugins(extra=[Shadow()], entry_points=False)
    assert plugins.functions == {}
    assert "clashes with a built-in function" in plugins.problems[0]


def test_set_stores_plain_json_values_every_output_can_write():
    import orjson

    from dsrouter.dsl import compile_routes, load_config_text

    from .conftest import SPECS

    text = (
        'output o { type = "file", path = "a" }\n'
        "route r { set window = 5m; set net = 10.0.0.0/8; set ip = 192.0.2.1; set sz = 1KiB;"
        " set low = lower(name); to o }\n"
    )
    table = compile_routes(load_config_text(text, "t.conf", SPECS))
    event = {"name": "XSS"}
    table.decide(event)
    assert event == {
        "name": "XSS",
        "window": 300.0,
        "net": "10.0.0.0/8",
        "ip": "192.0.2.1",
        "sz": 1024,
        "low": "xss",
    }
    assert [type(event[k]) for k in ("window", "sz")] == [float, int]
    assert orjson.loads(orjson.dumps(event)) == event
