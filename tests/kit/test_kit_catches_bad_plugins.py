"""The kit is only worth something if it fails bad plugins: each flaw below must fail exactly
the check named for it (and a flawless twin must pass every check), run through pytest itself."""

from __future__ import annotations

import pytest

PLUGIN = """
import contextlib, threading
import pytest
from dsrouter.api import Function, Option, Output, OutputType, RetryLater, PermanentFailure, hookimpl
from dsrouter.testing import Destination, FunctionContract, OutputContract

STORE, MODE = [], {"fail": None}

class Memory(Output):
    flaw = None
    def open(self):
        self.buffer, self.closed = [], 0
        if self.flaw == "thread":
            threading.Thread(target=threading.Event().wait, args=(30,), daemon=True).start()
    def send(self, events):
        if MODE["fail"] == "transient":
            if self.flaw == "swallow":
                return
            raise RetryLater("down")
        if MODE["fail"] == "permanent":
            raise PermanentFailure("refused")
        if self.flaw == "mutate":
            for e in events:
                e.pop("host", None)
        if self.flaw == "early":
            self.buffer += [e["event_id"] for e in events]
        else:
            STORE.extend(e["event_id"] for e in events)
    def close(self):
        self.closed += 1
        if self.flaw == "close_twice" and self.closed > 1:
            raise RuntimeError("closed already")
        STORE.extend(self.buffer)
        self.buffer = []
    def describe(self):
        if self.flaw == "secret":
            return "memory with token " + self.options["token"]
        return "memory"

def factory(flaw):
    return lambda name, options, ctx: type("M", (Memory,), {"flaw": flaw})(name, options, ctx)

FLAWS = [None, "early", "swallow", "mutate", "thread", "close_twice", "secret"]

class Plugin:
    @hookimpl
    def dsrouter_register_outputs(self, register):
        for flaw in FLAWS:
            register(OutputType(f"mem_{flaw}", factory(flaw),
                     (Option("token", "string", "", help="api token", secret=True),)))
    @hookimpl
    def dsrouter_register_functions(self, register):
        register(Function("good_len", lambda s: len(s), ("string",), "int", help="length"))
        register(Function("bad_len", lambda s: str(len(s)), ("string",), "int", help="length"))

class Dest(Destination):
    def delivered_ids(self):
        return list(STORE)
    @contextlib.contextmanager
    def fail(self, mode):
        MODE["fail"] = mode
        try:
            yield
        finally:
            MODE["fail"] = None

class Base(OutputContract):
    extra_plugins = (Plugin(),)
    large_batch = 100
    @pytest.fixture
    def destination(self):
        STORE.clear()
        return Dest()
    def options(self, destination):
        return {"token": "t0ken"}
"""

OUTPUT_CLASS = """
class TestIt(Base):
    type_name = "mem_{flaw}"
"""

FUNCTION_CLASS = """
class TestFn(FunctionContract):
    extra_plugins = (Plugin(),)
    name = "{name}"
    examples = [(("abc",), 3), (("",), 0)]
"""


def _outcomes(pytester, body: str) -> dict[str, str]:
    """Check name → PASSED / FAILED / ERROR (skips are counted under "skipped")."""
    pytester.makepyfile(test_kit_run=PLUGIN + body)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider", "-rA")
    got = {"skipped": str(result.parseoutcomes().get("skipped", 0))}
    for report in result.outlines:
        for outcome in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            if report.startswith(outcome + " "):
                got[report.split("::")[-1].split(" ")[0]] = outcome
    return got


def test_a_flawless_output_passes_every_check(pytester):
    got = _outcomes(pytester, OUTPUT_CLASS.format(flaw=None))
    failed = {k: v for k, v in got.items() if v in ("FAILED", "ERROR")}
    assert not failed and sum(v == "PASSED" for v in got.values()) == 13, got
    assert got["skipped"] == "1"  # test_cancelled_send_is_not_success: a blocking send


@pytest.mark.parametrize(
    ("flaw", "check"),
    [
        ("early", "test_success_only_after_the_data_left"),
        ("swallow", "test_transient_failure_is_retryable"),
        ("mutate", "test_send_does_not_modify_events"),
        ("thread", "test_close_releases_threads_and_files"),
        ("close_twice", "test_close_is_idempotent"),
        ("secret", "test_describe_hides_secrets"),
    ],
)
def test_each_flaw_fails_its_check(pytester, flaw, check):
    got = _outcomes(pytester, OUTPUT_CLASS.format(flaw=flaw))
    assert got[check] == "FAILED", got


def test_a_function_returning_the_wrong_type_fails_its_examples(pytester):
    good = _outcomes(pytester, FUNCTION_CLASS.format(name="good_len"))
    assert len(good) == 6 and set(good.values()) == {"PASSED", "0"}, good
    bad = _outcomes(pytester, FUNCTION_CLASS.format(name="bad_len"))
    assert bad["test_examples"] == "FAILED", bad


def test_the_documented_example_passes_the_kit(pytester):
    """docs/plugin-testing.md's output example, run as an author would run it."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugin-testing.md").read_text()
    example = re.search(r"```python\n(import contextlib.*?)```", doc, re.S).group(1)
    pytester.makepyfile(test_doc=example)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 13 and "failed" not in outcomes, result.outlines[-20:]
