"""``dsrouter test``: run a configuration's ``test`` blocks against its compiled routes."""

from __future__ import annotations

import sys
from typing import Any

from dsrouter.ds import parse_message
from dsrouter.dsl import Config, compile_routes
from dsrouter.dsl import ast as A


def _value(node: Any) -> Any:
    """The Python value of a literal or list node, as an event would hold it."""
    if isinstance(node, A.ListValue):
        return [_value(n) for n in node.items]
    value = node.value
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)  # IP literals compare with the event's string form


def _field(event: dict, field: Any) -> Any:
    if isinstance(field, A.Field):
        if field.ext or len(field.path) == 1:
            return event.get(field.path[0])
        return (event.get(field.path[0]) or {}).get(field.path[1])
    return None


def _where(span) -> str:
    return f"{span.path}:{span.line}:{span.column}"


def check_case(case: A.TestDecl, decide) -> list[str]:
    """Failures of one test block, as readable lines (empty when it passes)."""
    inputs = [i for i in case.items if isinstance(i, A.TestInput)]
    if len(inputs) != 1:
        return [f"{_where(case.span)}: a test needs exactly one input, found {len(inputs)}"]
    event = parse_message(inputs[0].text, input="test", peer="", received_at="")
    d = decide(event)
    failures = []
    for item in case.items:
        if isinstance(item, A.ExpectRoutes | A.ExpectOutputs):
            what = "routes" if isinstance(item, A.ExpectRoutes) else "outputs"
            want, got = _value(item.names), list(d.routes if what == "routes" else d.outputs)
        elif isinstance(item, A.ExpectDropped):
            what, want, got = "dropped", True, d.dropped
        elif isinstance(item, A.ExpectField):
            what, want, got = item.field.dotted, _value(item.value), _field(event, item.field)
        else:
            continue
        if want != got:
            failures.append(
                f"{_where(item.span)}: expect {what}\n"
                f"      expected: {want!r}\n      actual:   {got!r}"
            )
    return failures


def run(config: Config, out=None) -> int:
    """Run every test block; print PASS/FAIL lines and a closing count. Exit code 0 or 1."""
    out = out or sys.stdout
    decide = compile_routes(config).decide
    passed = failed = 0
    for case in config.tests:
        failures = check_case(case, decide)
        mark = "FAIL" if failures else "PASS"
        print(f"{mark}  {case.description}  ({_where(case.span)})", file=out)
        for f in failures:
            print(f"    {f}", file=out)
        passed += not failures
        failed += bool(failures)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0
