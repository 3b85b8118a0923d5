"""Every real DS syslog line in ../shared/corpus parses cleanly and lands in the right module.

The expected module is derived here, independently of ``classify``: the product and the ID are
cut out of the line with plain string operations and mapped with rules written for the test.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dsrouter.ds import parse_message

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

# ID prefix of the 7-digit rule IDs, and the small agent IDs, as FORMATS §3.1 lists them.
BY_MILLION = {
    1: "intrusion_prevention",
    2: "integrity_monitoring",
    3: "log_inspection",
    4: "anti_malware",
    5: "web_reputation",
    6: "application_control",
    7: "device_control",
}
SMALL = {
    10: "intrusion_prevention",
    20: "firewall",
    21: "firewall",
    30: "integrity_monitoring",
    40: "log_inspection",
}

# Lines per file, so that a file that silently stops being read fails the test.
EXPECTED_LINES = {
    "aws-samples-siem-test_sf_deepsecurity.log": 1,
    "cef-parser-unittest-ds8.log": 7,
    "cef2hashmap-rs-example.log": 1,
    "cribl-pack-readme-appcontrol.log": 1,
    "deep-security-splunk-app-DETAIL.log": 1,
    "elastic-integrations-trendmicro-docsamples.log": 2,
    "elastic-integrations-trendmicro-pipeline-tests.log": 2,
    "elastic-integrations-trendmicro-sample_logs.log": 42,
    "ember-results-service.log": 1,
    "ibm-qradar-dsm-doc-leef.log": 1,
    "sekoia-intake-formats-deep-security-tests.log": 10,
    "splunk-sc4s-test_trend_deep_security-comments.log": 1,  # the other has {{ host }}
    "splunk-sc4s-test_trend_deep_security.log": 0,  # every line is a Jinja template
    "streamsets-testleefparser.log": 3,
    "sumologic-documentation-trend-micro-deep-security.log": 1,
    "wazuh-trendmicro-cloud-one-ini.log": 3,
    "xql-helper-docstring-singtel.log": 1,
    "datadog-event-forwarder-python-tests-sns.log": 0,  # SNS JSON
    "deep-security-amazon-sns-readme.log": 0,
    "trendmicro-to-datadog-csharp-tests-sns.log": 0,
}


def expected_module(line: str) -> str:
    start = max(line.find("CEF:"), line.find("LEEF:"))
    fields = line[start:].split("|")
    product, sig = fields[2], int(fields[4])
    if product.endswith("Security Manager"):
        return "system"
    assert product == "Deep Security Agent"
    if sig in SMALL:
        return SMALL[sig]
    if 100 <= sig < 200:
        return "firewall"
    if 200 <= sig < 900:
        return "intrusion_prevention"
    return BY_MILLION[sig // 1_000_000]


def corpus_lines() -> dict[str, list[str]]:
    if not CORPUS.is_dir():
        pytest.skip(
            "../shared/corpus not present: corpus tests need the shared folder beside the repo"
        )
    out = {}
    for path in sorted(CORPUS.glob("*.log")):
        lines = path.read_text(encoding="utf-8").split("\n")
        out[path.name] = [ln for ln in lines if ln and not is_skipped(ln)]
    return out


def is_skipped(line: str) -> bool:
    """SNS JSON (not syslog) and Jinja templates with placeholders."""
    return "{{" in line or line[0] in "[{"


def test_corpus_files_are_all_read() -> None:
    counts = {name: len(lines) for name, lines in corpus_lines().items()}
    assert counts == EXPECTED_LINES


def test_corpus_lines_parse_and_classify() -> None:
    checked = 0
    for name, lines in corpus_lines().items():
        for number, line in enumerate(lines, 1):
            ev = parse_message(line, "corpus", "", "")
            where = f"{name}:{number}"
            assert "parse_error" not in ev, (where, ev["parse_error"])
            assert ev["format"] in ("cef", "leef"), where
            assert ev["module"] == expected_module(line), where
            assert isinstance(ev["signature_id"], int), where
            orjson.dumps(ev)
            checked += 1
    assert checked == sum(EXPECTED_LINES.values())


def test_corpus_details() -> None:
    lines = corpus_lines()
    relayed = parse_message(lines["cribl-pack-readme-appcontrol.log"][0])
    assert relayed["syslog"]["appname"] == "syslog"
    assert relayed["syslog"]["hostname"] == "logstream"
    assert relayed["sha1"] == "0CC9713BA896193A527213D9C94892D41797EB7C"
    spaced = parse_message(lines["elastic-integrations-trendmicro-sample_logs.log"][-1])
    assert spaced["syslog"]["hostname"] == "DeepSec Logs"
    no_host = parse_message(lines["sumologic-documentation-trend-micro-deep-security.log"][0])
    assert "hostname" not in no_host["syslog"]
    assert no_host["host"] == "workstation_tsiley"
    leef = parse_message(lines["ibm-qradar-dsm-doc-leef.log"][0])
    assert (leef["suser"], leef["severity"], leef["cat"]) == ("qradar", 6, "System")
    am = parse_message(lines["xql-helper-docstring-singtel.log"][0])
    assert am["filePath"].startswith("D:\\Temp\\Ad-hoc_Scan\\")
    assert "(\\\\?\\D:" in am["filePath"]
