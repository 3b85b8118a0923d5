"""``OutputContract``: an output type against the delivery contract of ``docs/plugins.md``."""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import structlog

from dsrouter.api import Output, OutputContext, OutputType, PartialFailure, PermanentFailure
from dsrouter.delivery.deadletter import DeadLetters
from dsrouter.delivery.memqueue import MemoryQueue
from dsrouter.delivery.options import DeliveryOptions
from dsrouter.delivery.worker import Worker
from dsrouter.plugin import Plugins
from dsrouter.testing.common import (
    Destination,
    checked,
    failing,
    sample_events,
    schema_problems,
)

_SETTLE = 5.0  # seconds a check waits for something asynchronous (threads ending, delivery)


def send(output: Output, events: Sequence[dict]) -> None:
    """Call ``send`` (or ``send_payloads``) and ``flush`` as the worker does."""
    if inspect.iscoroutinefunction(output.send):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(output.send(events))
        finally:
            loop.close()
    elif output.takes_payloads:
        output.send_payloads([orjson.dumps(e, default=str) for e in events])
    else:
        output.send(events)
    output.flush()


def outcome(error: BaseException | None, n: int) -> tuple[set[int], set[int], set[int]]:
    """``(delivered, dead-lettered, retried)`` batch indices, by the worker's own rules."""
    every = set(range(n))
    if error is None:
        return every, set(), set()
    if isinstance(error, PartialFailure):
        rejected = set(error.rejected) & every
        retry = (set(error.retry) & every) - rejected
        return every - rejected - retry, rejected, retry
    if isinstance(error, PermanentFailure):
        return set(), every, set()
    return set(), set(), every


def _wait(what: Callable[[], bool], timeout: float = _SETTLE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.02)
    return what()


def _fds() -> int | None:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


class OutputContract:
    """Subclass it as ``TestMyOutput``; set :attr:`type_name`, provide a ``destination``
    fixture yielding a :class:`Destination` and :meth:`options`. Each check is a test."""

    type_name: ClassVar[str] = ""
    #: Plugin modules or objects registered besides the installed ones (in-tree tests).
    extra_plugins: ClassVar[Sequence[object]] = ()
    large_batch: ClassVar[int] = 2000

    def options(self, destination: Destination) -> dict[str, Any]:
        """The output block's options as a user writes them (see ``literal``)."""
        raise NotImplementedError("OutputContract.options(destination)")

    def data_dir(self, destination: Destination, tmp_path: Path) -> Path:
        """The ``data_dir`` the output is told about (override to put it elsewhere)."""
        return tmp_path / "data"

    # -- helpers --------------------------------------------------------------------------
    @pytest.fixture
    def kit_plugins(self) -> Plugins:
        return Plugins(extra=self.extra_plugins)

    @pytest.fixture
    def kind(self, kit_plugins: Plugins) -> OutputType:
        assert self.type_name in kit_plugins.outputs, (
            f"no output type {self.type_name!r}; problems: {kit_plugins.problems}"
        )
        return kit_plugins.outputs[self.type_name]

    @pytest.fixture
    def make(self, kit_plugins, kind, destination, tmp_path) -> Callable[..., Output]:
        """``make(**overrides)``: a new, unopened Output built from checked options."""

        def make(**overrides: Any) -> Output:
            given = {**self.options(destination), **overrides}
            opts = checked(kit_plugins, "output", self.type_name, given, tmp_path)
            _, own = DeliveryOptions.split(opts)
            data = self.data_dir(destination, tmp_path)
            data.mkdir(parents=True, exist_ok=True)
            ctx = OutputContext(data, tmp_path, structlog.get_logger("kit"))
            return kind.factory("o", own, ctx)

        return make

    @pytest.fixture
    def output(self, make) -> Any:
        out = make()
        out.open()
        yield out
        out.close()

    # -- the checks -----------------------------------------------------------------------
    def test_type_is_registered(self, kit_plugins: Plugins, kind: OutputType) -> None:
        mine = [p for p in kit_plugins.problems if f"'{kind.plugin}'" in p]
        assert not mine, mine
        assert callable(kind.factory) and kind.default_queue in ("memory", "disk")

    def test_option_schema_is_valid(self, kind: OutputType) -> None:
        assert schema_problems(kind.options, output=True) == []

    def test_options_pass_check(self, kit_plugins, destination, tmp_path) -> None:
        given = self.options(destination)
        checked(kit_plugins, "output", self.type_name, given, tmp_path)
        with pytest.raises(AssertionError, match="E204"):  # unknown keys are refused
            checked(kit_plugins, "output", self.type_name, {**given, "no_such_opt": 1}, tmp_path)

    def test_open_send_close(self, make, destination: Destination) -> None:
        out = make()
        out.open()
        events = sample_events(1)
        send(out, events)
        out.close()
        assert destination.delivered_ids() == [events[0]["event_id"]]

    def test_large_batch(self, output, destination: Destination) -> None:
        events = sample_events(self.large_batch)
        send(output, events)
        seen = Counter(destination.delivered_ids())
        assert {e["event_id"]: seen[e["event_id"]] for e in events} == {
            e["event_id"]: 1 for e in events
        }

    def test_success_only_after_the_data_left(self, output, destination: Destination) -> None:
        events = sample_events(20)
        send(output, events)  # returned normally: every event must be there already
        arrived = set(destination.delivered_ids())
        assert [e["event_id"] for e in events if e["event_id"] not in arrived] == []

    def test_transient_failure_is_retryable(self, output, destination: Destination) -> None:
        events = sample_events(5)
        with failing(destination, "transient"):
            error = _attempt(output, events)
        delivered, rejected, retry = outcome(error, len(events))
        assert error is not None, "send() reported success while the destination was failing"
        assert not rejected, f"a transient failure was reported permanent: {error!r}"
        assert retry, f"nothing would be retried after {error!r}"
        _assert_there(destination, events, delivered)
        again = [events[i] for i in sorted(retry)]
        send(output, again)
        _assert_there(destination, events, delivered | retry)

    def test_permanent_failure_is_dead_lettered(self, output, destination: Destination) -> None:
        events = sample_events(5)
        with failing(destination, "permanent"):
            error = _attempt(output, events)
        delivered, rejected, retry = outcome(error, len(events))
        assert rejected and not retry, f"expected PermanentFailure, got {error!r}"
        _assert_there(destination, events, delivered)

    def test_close_is_idempotent(self, make) -> None:
        out = make()
        out.open()
        send(out, sample_events(1))
        out.close()
        out.close()

    def test_cancelled_send_is_not_success(self, output, destination: Destination) -> None:
        if not inspect.iscoroutinefunction(output.send):
            pytest.skip(
                "a blocking send() cannot be cancelled: past send_timeout dsrouter reports it "
                "hung and settles the batch when it returns (docs/delivery.md)"
            )
        events = sample_events(3)
        loop = asyncio.new_event_loop()
        try:
            with failing(destination, "hang"):
                task = loop.create_task(output.send(events))
                loop.run_until_complete(asyncio.sleep(0.3))
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    loop.run_until_complete(task)
        finally:
            loop.close()
        arrived = set(destination.delivered_ids())
        assert all(e["event_id"] not in arrived for e in events)

    def test_describe_hides_secrets(self, make, kind: OutputType, destination) -> None:
        given = self.options(destination)
        marks = {
            o.name: f"kit{os.urandom(6).hex()}"
            for o in kind.options
            if o.secret and isinstance(given.get(o.name), str | list)
        }
        values = {
            k: (v + marks[k] if isinstance(v, str) else [x + marks[k] for x in v])
            for k, v in given.items()
            if k in marks
        }
        out = make(**values)
        shown = f"{out.describe()} {out!s} {out!r}"
        assert isinstance(out.describe(), str) and out.describe()
        assert [k for k, m in marks.items() if m in shown] == [], shown

    def test_send_does_not_modify_events(self, output) -> None:
        events = sample_events(10)
        before = copy.deepcopy(events)
        send(output, events)
        assert events == before

    def test_close_releases_threads_and_files(self, make) -> None:
        threads, fds = threading.active_count(), _fds()
        out = make()
        out.open()
        send(out, sample_events(50))
        out.close()
        assert _wait(lambda: threading.active_count() <= threads), (
            f"threads left running: {[t.name for t in threading.enumerate()]}"
        )
        if fds is not None:
            assert _wait(lambda: (_fds() or 0) <= fds), f"{(_fds() or 0) - fds} file(s) left open"

    def test_retried_then_dead_lettered_through_the_worker(
        self, output, destination: Destination, tmp_path: Path
    ) -> None:
        queue = MemoryQueue("o")
        letters = DeadLetters(tmp_path / "dead")
        opts = DeliveryOptions(retry_initial=0.05, retry_max=0.1, batch=50)
        worker = Worker("o", output, queue, letters, opts, structlog.get_logger("kit"))
        first, second = sample_events(30), sample_events(7)
        worker.start()
        try:
            with failing(destination, "transient"):
                queue.publish(first)
                assert _wait(lambda: worker.snapshot()["retried_total"] > 0)
            assert _wait(lambda: worker.snapshot()["delivered_total"] == len(first))
            seen = Counter(destination.delivered_ids())
            assert all(seen[e["event_id"]] == 1 for e in first)
            with failing(destination, "permanent"):
                queue.publish(second)
                assert _wait(lambda: worker.snapshot()["dead_lettered_total"] == len(second))
        finally:
            worker.stop(time.monotonic() + _SETTLE)
        assert sum(1 for _ in letters.list("o")) == len(second)


def _attempt(output: Output, events: Sequence[dict]) -> BaseException | None:
    try:
        send(output, events)
    except Exception as exc:  # the outcome under test
        return exc
    return None


def _assert_there(destination: Destination, events: Sequence[dict], indices: set[int]) -> None:
    arrived = set(destination.delivered_ids())
    missing = [
        events[i]["event_id"] for i in sorted(indices) if events[i]["event_id"] not in arrived
    ]
    assert not missing, f"reported delivered but not at the destination: {missing}"
