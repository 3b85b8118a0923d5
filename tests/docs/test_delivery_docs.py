"""docs/delivery.md lists every delivery option with its real default; the webhook page's
metric and command names exist."""

from __future__ import annotations

import re
from pathlib import Path

from dsrouter.delivery.options import delivery_options
from dsrouter.options import Duration, Size

ROOT = Path(__file__).resolve().parents[2]


def _written(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as the language writes them
    if isinstance(value, Size):
        return f"{value // (1024 * 1024)}MiB" if value % (1024 * 1024) == 0 else str(int(value))
    if isinstance(value, Duration):
        return f"{value:g}s"
    return str(value)


def _table() -> dict[str, str]:
    text = (ROOT / "docs" / "delivery.md").read_text().split("## Options", 1)[1]
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| `([a-z_]+)`(?:, `([a-z_]+)`)? \| ([^|]+) \|", line)
        if m:
            defaults = [d.strip(" `") for d in m.group(3).split(",")]
            for name, default in zip([m.group(1), m.group(2)], defaults, strict=False):
                if name:
                    rows[name] = default
    return rows


def test_every_delivery_option_is_documented_with_its_default():
    rows = _table()
    options = {o.name: o for o in delivery_options()}
    assert set(rows) == set(options)
    for name, option in options.items():
        if name == "queue":  # its default depends on the output type, said in words
            assert rows[name].startswith("disk` for network outputs")
            continue
        assert rows[name] == _written(option.default), name


def test_metrics_named_in_delivery_md_exist(tmp_path):
    from dsrouter.metrics import collect_families

    text = (ROOT / "docs" / "delivery.md").read_text()
    named = set(re.findall(r"`(dsrouter_[a-z_]+)", text))
    snapshot = {
        "inputs": {"u": {"messages_total": 1, "kernel_drops_total": 1}},
        "outputs": {
            "o": {
                "queue_events": 1,
                "corrupt_total": 1,
                "dropped_total": {"x": 1},
                "dead_lettered_total": 1,
                "send_timeouts_total": 1,
                "open_failures_total": 1,
            }
        },
        "reload": {"success": 1, "timestamp": 1.0, "total": 1, "failed_total": 0},
    }
    exposed = set()
    for family in collect_families(snapshot):
        exposed.add(family.name)
        exposed.update(s.name for s in family.samples)
    assert named and named <= exposed, named - exposed


def test_file_output_page_example_checks(tmp_path):
    from dsrouter.cli import main

    text = (ROOT / "docs" / "outputs" / "file.md").read_text()
    example = re.search(r"```\n(.*?)```", text, re.S).group(1)
    conf = tmp_path / "file.conf"
    conf.write_text(example.replace("/var/lib/dsrouter", str(tmp_path / "data")))
    assert main(["check", "-c", str(conf)]) == 0
