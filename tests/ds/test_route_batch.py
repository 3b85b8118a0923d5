"""A parser process's batch work (``route_batch``): the events it serializes one at a time are
exactly those the batch-at-a-time reference builds — stamps, truncation marks, parse errors,
which outputs get them, and the events a throttle decides going back unrouted."""

from __future__ import annotations

import orjson

from dsrouter.ds import parse_batch
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.parse_worker import Stamper, route_batch
from dsrouter.plugin import Plugins

CONFIG = """
output all { type = "file", path = "all.jsonl" }
output sev { type = "file", path = "sev.jsonl" }
output quiet { type = "file", path = "quiet.jsonl" }
route high { when severity >= 6 to sev continue }
route noisy { when module == "log_inspection" throttle 1 per 1h by host to quiet }
route all { to all }
"""
LINE = (
    "<134>Nov 27 23:18:32 web-{n} CEF:0|Trend Micro|Deep Security Agent|20.0|{sig}|x|{sev}|"
    "cn1={n} dvchost=web-{n} msg=c:\\\\temp\\\\{n}"
)


def _lines(start: int, count: int) -> list[bytes]:
    sigs = ("20", "1005402", "3003005", "4000000")
    return [
        LINE.format(n=n, sig=sigs[n % 4], sev=3 + n % 6).encode()
        for n in range(start, start + count)
    ]


def test_route_batch_serializes_what_the_batch_reference_builds() -> None:
    config = load_config_text(CONFIG, "<test>", Plugins(entry_points=False).option_specs())
    table = compile_routes(config, defer_throttles=True)
    junk = [b"not syslog at all", b"<134>Nov 27 23:18:32 h CEF:0|broken"]
    items = [("a", "1.2.3.4", _lines(0, 30) + junk, False), ("b", "5.6.7.8", _lines(30, 20), True)]
    stamper = Stamper()
    routed = route_batch(table, stamper, 7, items, "2026-12-03T00:00:00.000000+00:00")

    reference = []
    for name, peer, messages, truncated in items:
        for ev in parse_batch(messages, name, peer, "2026-12-03T00:00:00.000000+00:00"):
            if truncated:
                ev["truncated"] = True
            reference.append(ev)
    for n, ev in enumerate(reference):
        ev["event_id"] = f"{stamper.prefix}-{n:x}"

    assert (routed.batch, routed.events, routed.unparsed) == (7, 52, 2)
    assert stamper.next == 52  # the next batch goes on numbering from here
    deferred = [orjson.loads(p) for p in routed.deferred]
    assert deferred == [ev for ev in reference if ev["module"] == "log_inspection"]
    decided = [ev for ev in reference if ev["module"] != "log_inspection"]
    got = {name: [orjson.loads(p) for p in payloads] for name, payloads in routed.outputs.items()}
    assert got["all"] == decided
    assert got["sev"] == [ev for ev in decided if ev.get("severity", 0) >= 6]
    assert {ev["event_id"] for ev in got["all"]}.isdisjoint(ev["event_id"] for ev in deferred)
    assert "quiet" not in got  # only the main process, which holds the budgets, decides those
    assert sum(routed.decisions.values()) == len(decided)
    # one payload object per event, shared by every output that takes it
    by_id = {id(p) for p in routed.outputs["all"]}
    assert all(id(p) in by_id for p in routed.outputs["sev"])
