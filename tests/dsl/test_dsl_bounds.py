"""Memory the compiled routes keep per event value is bounded, whatever the events carry.

Throttle keys and the IP-parsing cache used to keep whole field values: 20,000 throttle keys
from 60 KB host names held 1.2 GB. The tests measure what stays allocated (tracemalloc) after
routing such events through the public route table, and that hashing long values keeps
distinct values apart and equal values together.
"""

from __future__ import annotations

import tracemalloc

from dsrouter.cli.main import main
from dsrouter.dsl import compile_routes, load_config_text

from .conftest import SPECS

BIG = 60_000
MB = 1 << 20
IPS = (
    "<134>Nov 27 23:18:32 web-01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
    "XSS|8|dvchost={host} src=10.1.2.3"
)


def _table(route: str):
    text = f'output o {{ type = "stdout" }}\n{route}\nroute _unmatched {{ to o }}\n'
    return compile_routes(load_config_text(text, option_specs=SPECS), clock=lambda: 0.0)


def _retained(table, events) -> int:
    """Bytes still allocated after routing every event (each made and dropped in turn)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for event in events:
            table.decide(event)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _hosts(n: int, key: str = "host"):
    tail = "h" * BIG
    return ({key: f"{i:08d}{tail}"} for i in range(n))


def test_20000_throttle_keys_of_60kb_values_keep_a_few_mb():
    table = _table("route r { throttle 1 per 1h by host; to o }")
    assert _retained(table, _hosts(20_000)) < 8 * MB  # was 1,192 MB
    assert table.counters()["throttled"] == {"r": 0}  # 20,000 distinct keys, each admitted


def test_long_values_hashed_apart_and_together():
    table = _table("route r { throttle 1 per 1h by host, src; to o }")
    long_a, long_b = "x" * BIG + "a", "x" * BIG + "b"  # the same first 60,000 characters
    routes = [
        table.decide({"host": h, "src": s}).routes
        for h, s in [(long_a, "1"), (long_b, "1"), (long_a, "1"), (long_a, "2"), (long_a, 1)]
    ]
    assert routes == [("r",), ("r",), ("_unmatched",), ("r",), ("r",)]
    assert table.counters()["throttled"] == {"r": 1}


def test_ip_tests_never_cache_long_values():
    table = _table("route r { when src in [10.0.0.0/8, 192.0.2.1] or dst == 10.9.9.9; to o }")
    events = ({"src": h["src"], "dst": h["src"]} for h in _hosts(5_000, "src"))
    assert _retained(table, events) < 2 * MB  # was 4,096 cached keys of 60 KB: 245 MB
    assert table.decide({"src": "10.1.2.3"}).routes == ("r",)
    assert table.decide({"src": "192.0.2.1"}).routes == ("r",)
    assert table.decide({"dst": "10.9.9.9"}).routes == ("r",)


def test_dry_run_explain_shows_a_hashed_key_not_the_value(tmp_path, capsys):
    conf = tmp_path / "t.conf"
    conf.write_text(
        'output o { type = "stdout" }\n'
        "route r { throttle 1 per 1h by host; to o }\nroute _unmatched { to o }\n"
    )
    capture = tmp_path / "cap.log"
    hosts = ["y" * 5000 + "1", "y" * 5000 + "2", "y" * 5000 + "1"]
    capture.write_text("".join(IPS.format(host=h) + "\n" for h in hosts))
    capsys.readouterr()
    assert main(["dry-run", "--explain", "-c", str(conf), str(capture)]) == 0
    out = capsys.readouterr().out
    budgets = [x.strip() for x in out.splitlines() if "per 1h for key" in x]
    assert len(budgets) == 3 and all("<blake2b " in b and len(b) < 200 for b in budgets)
    assert [b.rsplit(": ", 1)[1] for b in budgets] == [
        "within the limit",
        "within the limit",
        "over the limit",
    ]
