"""``dsrouter test``: run a configuration's ``test`` blocks against its compiled routes.

Throttle state never leaks from one test into the next (a configuration with throttles gets a
freshly compiled route table per test), so the order of tests does not matter. A failure names
the expectation's ``path:line:column`` with the expected and the actual value; when a routing
expectation fails, the route trace (``dry-run --explain``) follows, so the reader sees why.
"""

from __future__ import annotations

import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from dsrouter.ds import parse_message
from dsrouter.dsl import Config, RouteTable, compile_routes
from dsrouter.dsl import ast as A
from dsrouter.report import render_explain, where


class Failure(NamedTuple):
    """One expectation that did not hold."""

    span: Any  # dsrouter.errors.Span of the expectation (or of the test)
    what: str  # "routes", "outputs", "dropped", a field name, or a problem with the test
    expected: Any
    actual: Any

    def message(self) -> str:
        """One line: ``expect host: expected 'a', actual 'b'``."""
        if self.what.startswith("test "):
            return self.what
        return f"expect {self.what}: expected {self.expected!r}, actual {self.actual!r}"

    def render(self) -> str:
        """``path:line:column: expect what`` then the expected and actual values."""
        if self.what.startswith("test "):
            return f"{where(self.span)}: {self.what}"
        return (
            f"{where(self.span)}: expect {self.what}\n"
            f"      expected: {self.expected!r}\n      actual:   {self.actual!r}"
        )


class CaseResult(NamedTuple):
    """The outcome of one test block."""

    case: A.TestDecl
    failures: list[Failure]
    trace: str  # the route trace, filled in when a routing expectation failed
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.failures


def _value(node: Any) -> Any:
    """The Python value of a literal or list node, as an event would hold it."""
    if isinstance(node, A.ListValue):
        return [_value(n) for n in node.items]
    value = node.value
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)  # IP literals compare with the event's string form


def _field(event: dict, field: Any) -> Any:
    """The value of ``field`` in ``event``; None when missing (or not a field reference)."""
    if not isinstance(field, A.Field):
        return None
    if field.ext:
        return event.get(field.path[0])
    value: Any = event
    for key in field.path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _expectation(item: Any, decision: Any, event: dict) -> tuple[str, Any, Any] | None:
    """``(what, expected, actual)`` for an expect item; None for the input line."""
    if isinstance(item, A.ExpectRoutes):
        return "routes", _value(item.names), list(decision.routes)
    if isinstance(item, A.ExpectOutputs):
        return "outputs", _value(item.names), list(decision.outputs)
    if isinstance(item, A.ExpectDropped):
        return "dropped", True, decision.dropped
    if isinstance(item, A.ExpectField):
        return _label(item.field), _value(item.value), _field(event, item.field)
    return None


class _Source(str):
    """How a failure shows an ``env()``/``file()`` value: by its source, never the secret."""

    def __repr__(self) -> str:
        return str(self)


def _shown(item: Any, expected: Any) -> Any:
    value = getattr(item, "value", None)
    if isinstance(value, A.Resolved) and value.secret:
        from dsrouter.dsl.pretty import pretty_value

        return _Source(pretty_value(value.source))
    return expected


def _label(field: A.Field | A.Subscript) -> str:
    """How the expectation names its field: ``syslog.hostname``, ``ext["k"]``, ``name["k"]``."""
    if isinstance(field, A.Field):
        return field.dotted
    return f'{field.name}["{field.key}"]'


def check_case(case: A.TestDecl, config: Config, table: RouteTable | None = None) -> CaseResult:
    """Run one test block against ``table`` (default: a freshly compiled one)."""
    started = time.perf_counter()
    inputs = [i for i in case.items if isinstance(i, A.TestInput)]
    if len(inputs) != 1:
        problem = f"test needs exactly one input, found {len(inputs)}"
        return CaseResult(case, [Failure(case.span, problem, 1, len(inputs))], "", 0.0)
    event = parse_message(inputs[0].text, input="test", peer="", received_at="")
    explanation = (table or compile_routes(config)).explain(event)
    decision = explanation.decision
    failures = []
    for item in case.items:
        found = _expectation(item, decision, event)
        if found is not None and found[1] != found[2]:
            what, expected, actual = found
            failures.append(Failure(item.span, what, _shown(item, expected), actual))
    routing = any(f.what in ("routes", "outputs", "dropped") for f in failures)
    trace = render_explain(explanation) if routing else ""
    return CaseResult(case, failures, trace, time.perf_counter() - started)


def run_all(config: Config) -> list[CaseResult]:
    """Every test block of ``config``, in file order."""
    stateful = any(r.throttle is not None for r in config.routes)
    shared = None if stateful else compile_routes(config)
    return [check_case(case, config, shared) for case in config.tests]


def report(results: list[CaseResult], out: TextIO) -> None:
    """PASS/FAIL lines with locations, failures with expected and actual, a closing count."""
    for r in results:
        print(
            f"{'PASS' if r.passed else 'FAIL'}  {r.case.description}  ({where(r.case.span)})",
            file=out,
        )
        for f in r.failures:
            print(f"    {f.render()}", file=out)
        if r.trace:
            print("    why:", file=out)
            out.write("".join(f"  {line}\n" for line in r.trace.splitlines()))
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed", file=out)


def junit_xml(results: list[CaseResult], name: str) -> bytes:
    """The results as JUnit XML: one testsuite, a testcase per test, a failure per failing one."""
    failed = sum(not r.passed for r in results)
    total = f"{sum(r.seconds for r in results):.6f}"
    counts = {"tests": str(len(results)), "failures": str(failed), "errors": "0"}
    root = ET.Element("testsuites", {**counts, "time": total})
    suite = ET.SubElement(root, "testsuite", {"name": name, **counts, "skipped": "0"})
    suite.set("time", total)
    for r in results:
        span = r.case.span
        case = ET.SubElement(suite, "testcase", _case_attrs(r, span))
        if r.failures:
            failure = ET.SubElement(case, "failure", _failure_attrs(r))
            body = [f.render() for f in r.failures]
            failure.text = "\n".join(body) + (f"\nwhy:\n{r.trace}" if r.trace else "\n")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _case_attrs(r: CaseResult, span: Any) -> dict[str, str]:
    return {
        "classname": Path(span.path).name,
        "name": r.case.description,
        "file": span.path,
        "line": str(span.line),
        "time": f"{r.seconds:.6f}",
    }


def _failure_attrs(r: CaseResult) -> dict[str, str]:
    first = r.failures[0]
    message = f"{where(first.span)}: {first.message()}"
    if len(r.failures) > 1:
        message += f" (and {len(r.failures) - 1} more)"
    return {"message": message, "type": "ExpectationFailed"}


def run(config: Config, out: TextIO | None = None, junit: str | None = None, name: str = "") -> int:
    """Run every test block, print the report, write JUnit XML if asked. Exit code 0 or 1."""
    results = run_all(config)
    report(results, out or sys.stdout)
    if junit:
        Path(junit).write_bytes(junit_xml(results, name or "dsrouter"))
    return 0 if all(r.passed for r in results) else 1
