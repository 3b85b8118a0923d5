"""The field catalogue: classify table, field names, the generated docs page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dsrouter.ds import parse_message
from dsrouter.ds.catalog import (
    ALIASES,
    FIELDS,
    INT_KEYS,
    MODULES,
    RESERVED,
    classify,
    render_markdown,
)

ROOT = Path(__file__).resolve().parents[2]

CLASSIFY = [
    ("Deep Security Manager", 21, "system"),
    ("Deep Security Manager", "851", "system"),
    ("Workload Security Manager", None, "system"),
    ("Deep Security Agent", 10, "intrusion_prevention"),
    ("Deep Security Agent", 19, "unknown"),
    ("Deep Security Agent", 20, "firewall"),
    ("Deep Security Agent", "21", "firewall"),
    ("Deep Security Agent", 22, "unknown"),
    ("Deep Security Agent", 30, "integrity_monitoring"),
    ("Deep Security Agent", 40, "log_inspection"),
    ("Deep Security Agent", 99, "unknown"),
    ("Deep Security Agent", 100, "firewall"),
    ("Deep Security Agent", 199, "firewall"),
    ("Deep Security Agent", 200, "intrusion_prevention"),
    ("Deep Security Agent", 899, "intrusion_prevention"),
    ("Deep Security Agent", 900, "unknown"),
    ("Deep Security Agent", 999_999, "unknown"),
    ("Deep Security Agent", 1_000_000, "intrusion_prevention"),
    ("Deep Security Agent", 1_999_999, "intrusion_prevention"),
    ("Deep Security Agent", 2_000_000, "integrity_monitoring"),
    ("Deep Security Agent", 3_002_795, "log_inspection"),
    ("Deep Security Agent", 4_000_030, "anti_malware"),
    ("Deep Security Agent", 5_000_000, "web_reputation"),
    ("Deep Security Agent", 6_002_200, "application_control"),
    ("Deep Security Agent", 7_002_200, "device_control"),
    ("Deep Security Agent", 8_000_000, "unknown"),
    ("Deep Security Agent", -1, "unknown"),
    ("Deep Security Agent", "1e6", "unknown"),
    ("Deep Security Agent", None, "unknown"),
    ("Deep Security Agent", True, "unknown"),
    ("Apex One", 4_000_000, "unknown"),
    (None, 4_000_000, "unknown"),
]


@pytest.mark.parametrize(
    ("product", "sig", "module"), CLASSIFY, ids=[f"{p}-{s}" for p, s, _ in CLASSIFY]
)
def test_classify(product: str | None, sig: int | str | None, module: str) -> None:
    assert classify(product, sig) == module


def test_modules_are_the_ten_of_the_dsl() -> None:
    assert len(MODULES) == 10 and MODULES[-1] == "unknown"
    assert {m for _, _, m in CLASSIFY} == set(MODULES) - {"unknown"} | {"unknown"}


def test_field_info_is_complete() -> None:
    for name, info in FIELDS.items():
        assert info.type in {"int", "string", "ip", "float", "bool", "object"}, name
        assert info.description and info.source, name
    assert FIELDS["syslog.hostname"].type == "string"
    assert FIELDS["src"].type == FIELDS["dst"].type == FIELDS["dvc"].type == "ip"
    assert all(FIELDS[k].type == "int" for k in INT_KEYS)


def test_every_alias_and_reserved_name_is_a_field() -> None:
    aliases = {alias for pairs in ALIASES.values() for _, alias in pairs}
    assert aliases <= FIELDS.keys()
    assert {"module", "host", "raw", "syslog", "format", "ext_shadowed"} <= RESERVED
    assert not aliases & INT_KEYS


def test_emitted_fields_are_catalogued() -> None:
    line = (
        '<134>1 2025-11-27T23:18:32Z node app 1 CEF [a@1 b="c"] CEF:0|Trend Micro|'
        "Deep Security Agent|1|1000001|n|6|cn1=1 cs1=a cn2=1 cn3=2 cs2=b cs3=c cs4=d cs5=1 cs6=1 "
        "module=x"
    )
    ev = parse_message(line, "in", "peer", "now")
    assert set(ev) <= FIELDS.keys()
    assert {f"syslog.{k}" for k in ev["syslog"]} <= FIELDS.keys()


def test_docs_fields_md_is_in_sync() -> None:
    page = ROOT / "docs" / "fields.md"
    assert page.read_text(encoding="utf-8") == render_markdown(), (
        "docs/fields.md is stale: run python -m dsrouter.ds.catalog > docs/fields.md"
    )


def test_module_entry_point_prints_the_page() -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", "-m", "dsrouter.ds.catalog"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout == render_markdown()
    assert out.stderr == ""
