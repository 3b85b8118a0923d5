"""Shipped example configurations and the rule library stay valid, tested and documented."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from dsrouter.cli import main
from dsrouter.dsl import ast, load_config, load_config_text
from dsrouter.dsl.diagnostics import Reporter
from dsrouter.dsl.parser import parse
from dsrouter.plugin import Plugins
from dsrouter.ruletest import run_all

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "examples").glob("*.conf"))
RULES = sorted((ROOT / "rules").glob("**/*.rules"))
RULE_IDS = [str(r.relative_to(ROOT / "rules")) for r in RULES]
DOCS = ROOT / "docs" / "rules.md"
README = ROOT / "rules" / "README.md"
_OUTPUTS_LINE = re.compile(r"^# Outputs: (.+)$", re.MULTILINE)


def _parsed(path: Path) -> ast.File:
    rep = Reporter()
    parsed = parse(path.read_text("utf-8"), str(path), rep)
    assert parsed is not None, [d.render() for d in rep.diagnostics]
    return parsed


def _routes(parsed: ast.File) -> list[ast.RouteDecl]:
    return [i for i in parsed.items if isinstance(i, ast.RouteDecl)]


def _outputs_used(parsed: ast.File) -> set[str]:
    return {
        t.text
        for route in _routes(parsed)
        for action in route.actions
        if isinstance(action, ast.To)
        for t in action.targets
    }


def test_there_are_examples_and_rules():
    assert CONFIGS
    assert RULES


@pytest.mark.parametrize("conf", CONFIGS, ids=[c.name for c in CONFIGS])
def test_example_checks_and_its_tests_pass(conf, capsys):
    assert main(["check", "-c", str(conf)]) == 0
    assert main(["test", "-c", str(conf)]) == 0
    summary = re.search(r"(\d+) passed, 0 failed", capsys.readouterr().out)
    assert summary and int(summary.group(1)) > 0


def test_every_rule_file_is_included_by_an_example():
    specs = Plugins().option_specs()
    included = {f.resolve() for conf in CONFIGS for f in load_config(conf, specs).files}
    missing = [r for r, rid in zip(RULES, RULE_IDS, strict=True) if r.resolve() not in included]
    assert not missing, f"no example includes: {missing}"


@pytest.mark.parametrize("rules", RULES, ids=RULE_IDS)
def test_rule_file_has_tests(rules):
    parsed = _parsed(rules)
    assert _routes(parsed), "a rule file holds at least one route"
    assert any(isinstance(i, ast.TestDecl) for i in parsed.items), "and at least one test block"


@pytest.mark.parametrize("rules", RULES, ids=RULE_IDS)
def test_rule_file_header_names_the_outputs_it_uses(rules):
    text = rules.read_text("utf-8")
    assert text.startswith("# "), "a rule file starts with a header comment"
    declared = _OUTPUTS_LINE.search(text)
    assert declared, "the header has an '# Outputs: a, b' line (or '# Outputs: none ...')"
    words = declared.group(1).split("(")[0].replace(",", " ").split()
    expected = set() if words == ["none"] else set(words)
    assert _outputs_used(_parsed(rules)) == expected


@pytest.mark.parametrize("rules", RULES, ids=RULE_IDS)
def test_rule_file_and_its_routes_are_documented(rules):
    docs, readme = DOCS.read_text("utf-8"), README.read_text("utf-8")
    rel = str(rules.relative_to(ROOT / "rules"))
    assert f"`{rel}`" in readme
    assert f"`{rel}`" in docs
    for route in _routes(_parsed(rules)):
        assert f"`{route.name.text}`" in docs, route.name.text


def test_the_docs_configuration_loads_and_its_tests_pass():
    block = re.search(r"```conf\n(.*?)```", DOCS.read_text("utf-8"), re.DOTALL)
    assert block, "docs/rules.md shows a complete configuration in a ```conf block"
    specs = Plugins().option_specs()
    config = load_config_text(block.group(1), "<docs/rules.md>", specs, base_dir=ROOT)
    results = run_all(config)
    assert results and all(r.passed for r in results)


# ---- the library's throttles, end to end through dry-run ----------------------------------

_IPS = (
    "<134>Mar 14 02:11:09 {host} CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000608|"
    "Generic SQL Injection Prevention|10|cn1=41 cn1Label=Host ID dvchost={host} "
    "src=198.51.100.23 dst=192.0.2.80 proto=TCP spt=51544 dpt=443 cnt=1 act=Reset"
)
_LI = (
    "<134>Jul 21 22:06:40 {host} CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|3002730|"
    "Unix - SSH|10|cn1=502 cn1Label=Host ID dvchost={host} cs1Label=LI Description "
    "cs1=sshd: brute force trying to get access to the system. src=203.0.113.200"
)
_UPDATE = (
    "<134>2024-08-02T04:15:09+02:00 dsm-prod-01 CEF:0|Trend Micro|Deep Security Manager|"
    "20.0.913|2205|Security Update: Pattern Update on Agents/Appliances Failed|6|"
    "src=192.0.2.5 suser=System target={host} targetID=318 targetType=Host"
)

THROTTLED = [
    ("critical_alerts", _IPS),
    ("li_brute_force", _LI),
    ("security_update_failed", _UPDATE),
]


@pytest.mark.parametrize(("route", "line"), THROTTLED, ids=[r for r, _ in THROTTLED])
def test_library_throttles_per_key(route, line, tmp_path, capsys):
    hosts = ["alpha", "alpha", "alpha", "beta", "alpha"]
    capture = tmp_path / "capture.log"
    capture.write_text("".join(line.format(host=h) + "\n" for h in hosts), "utf-8")
    conf = ROOT / "examples" / "with-rules.conf"
    assert main(["dry-run", "-c", str(conf), "--json", str(capture)]) == 0
    results = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [route in r["routes"] for r in results] == [True, False, False, True, False]
    assert all("everything" in r["routes"] for r in results), "throttled events still archived"
