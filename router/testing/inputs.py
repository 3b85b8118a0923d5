"""``InputContract``: an input (receiver) type against what the daemon expects of listeners."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from dsrouter.api import InputType
from dsrouter.plugin import Plugins
from dsrouter.testing.common import checked, schema_problems

_WAIT = 10.0


class Received:
    """The sink the kit hands a listener: records every call as the daemon's pipeline would."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[bytes], str, bool]] = []
        self.events: list[dict] = []

    def __call__(self, messages: list[bytes], peer: str, truncated: bool = False) -> None:
        assert isinstance(messages, list), f"sink got {type(messages).__name__}, not a list"
        assert all(isinstance(m, bytes) for m in messages), "sink messages must be bytes"
        assert isinstance(peer, str) and peer, f"peer must be a non-empty str, got {peer!r}"
        self.calls.append((messages, peer, truncated))

    def submit(self, events: list[dict], on_done) -> None:
        """Inputs that parse themselves (like ``sns``) hand over events; committed at once."""
        self.events.extend(events)
        on_done(True)

    @property
    def messages(self) -> list[bytes]:
        return [m for batch, _, _ in self.calls for m in batch]


class InputContract:
    """Subclass it as ``TestMyInput``; set :attr:`type_name`, and provide :meth:`options`
    (listening on port 0) and :meth:`deliver` (send through the real transport)."""

    type_name: ClassVar[str] = ""
    extra_plugins: ClassVar[Sequence[object]] = ()
    #: How many messages the ordering check sends.
    count: ClassVar[int] = 50

    def options(self) -> dict[str, Any]:
        raise NotImplementedError("InputContract.options()")

    def deliver(self, address: tuple, messages: list[bytes]) -> None:
        """Send ``messages`` to the listener at ``address`` (runs in a thread)."""
        raise NotImplementedError("InputContract.deliver(address, messages)")

    def messages(self, n: int) -> list[bytes]:
        """What :meth:`deliver` sends: numbered syslog lines; override for other payloads."""
        return [f"<134>Jan  1 00:00:00 kit app: message {i:05d}".encode() for i in range(n)]

    # -- helpers --------------------------------------------------------------------------
    @pytest.fixture
    def kit_plugins(self) -> Plugins:
        return Plugins(extra=self.extra_plugins)

    @pytest.fixture
    def kind(self, kit_plugins: Plugins) -> InputType:
        assert self.type_name in kit_plugins.inputs, (
            f"no input type {self.type_name!r}; problems: {kit_plugins.problems}"
        )
        return kit_plugins.inputs[self.type_name]

    @pytest.fixture
    def kit_options(self, kit_plugins, tmp_path) -> Mapping[str, Any]:
        return checked(kit_plugins, "input", self.type_name, self.options(), tmp_path)

    async def _started(self, kind: InputType, options: Mapping[str, Any], sink: Received):
        listener = kind.factory("i", dict(options), sink)
        await listener.start()
        return listener

    @staticmethod
    async def _close(listener: Any) -> None:
        """``close()`` (and ``wait_closed()`` when it has one) as the daemon calls them."""
        closing = listener.close()
        if asyncio.iscoroutine(closing):
            await closing
        if hasattr(listener, "wait_closed"):  # the daemon waits (bounded) for connections
            await listener.wait_closed()
        for _ in range(5):
            await asyncio.sleep(0.02)

    async def _deliver_until(self, address, messages, sink, want: int) -> None:
        if messages:
            await asyncio.to_thread(self.deliver, address, messages)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _WAIT
        while len(sink.messages) + len(sink.events) < want and loop.time() < deadline:
            await asyncio.sleep(0.02)

    # -- the checks -----------------------------------------------------------------------
    def test_type_is_registered(self, kit_plugins: Plugins, kind: InputType) -> None:
        mine = [p for p in kit_plugins.problems if f"'{kind.plugin}'" in p]
        assert not mine, mine
        assert callable(kind.factory)

    def test_option_schema_is_valid(self, kind: InputType) -> None:
        assert schema_problems(kind.options, output=False) == []

    def test_options_pass_check(self, kit_plugins, tmp_path) -> None:
        given = self.options()
        checked(kit_plugins, "input", self.type_name, given, tmp_path)
        with pytest.raises(AssertionError, match="E204"):
            checked(kit_plugins, "input", self.type_name, {**given, "no_such_opt": 1}, tmp_path)

    def test_start_reports_the_bound_address(self, kind, kit_options) -> None:
        async def run() -> None:
            listener = await self._started(kind, kit_options, Received())
            try:
                host, port = listener.address[:2]
                assert isinstance(host, str) and isinstance(port, int) and port > 0, (
                    f"address {listener.address!r}: port 0 must be reported as the bound port"
                )
            finally:
                await self._close(listener)

        asyncio.run(run())

    def test_messages_reach_the_sink_in_order(self, kind, kit_options) -> None:
        sent = self.messages(self.count)

        async def run() -> Received:
            sink = Received()
            listener = await self._started(kind, kit_options, sink)
            try:
                await self._deliver_until(listener.address, sent, sink, len(sent))
            finally:
                await self._close(listener)
            return sink

        sink = asyncio.run(run())
        if sink.events:
            assert len(sink.events) == len(sent)
        else:
            assert sink.messages == sent

    def test_close_stops_listening(self, kind, kit_options) -> None:
        async def run() -> Received:
            sink = Received()
            listener = await self._started(kind, kit_options, sink)
            address = listener.address
            await self._close(listener)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.deliver, address, [b"late"]), 5)
            except (OSError, TimeoutError):  # refused or reset: what a closed port does
                pass
            await asyncio.sleep(0.2)
            return sink

        sink = asyncio.run(run())
        assert sink.messages == [] and sink.events == []

    def test_close_is_idempotent(self, kind, kit_options) -> None:
        async def run() -> None:
            listener = await self._started(kind, kit_options, Received())
            await self._close(listener)
            await self._close(listener)

        asyncio.run(run())

    def test_stats_is_a_mapping_of_numbers(self, kind, kit_options) -> None:
        async def run() -> Any:
            listener = await self._started(kind, kit_options, Received())
            try:
                getattr(listener, "refresh_stats", lambda: None)()
                return listener.stats
            finally:
                await self._close(listener)

        stats = asyncio.run(run())
        assert isinstance(stats, Mapping)
        assert all(isinstance(v, int | float | Mapping) for v in stats.values()), stats

    def test_pause_holds_messages_until_resume(self, kind, kit_options) -> None:
        async def run() -> tuple[int, Received]:
            sink = Received()
            listener = await self._started(kind, kit_options, sink)
            if not hasattr(listener, "pause"):
                await self._close(listener)
                pytest.skip("no pause()/resume(): the daemon cannot push back on this input")
            try:
                listener.pause()
                sent = self.messages(5)
                sending = asyncio.ensure_future(
                    asyncio.to_thread(self.deliver, listener.address, sent)
                )
                await asyncio.sleep(0.3)  # a paused listener may not even finish a handshake
                during = len(sink.messages)
                listener.resume()
                await asyncio.wait_for(sending, _WAIT)
                await self._deliver_until(listener.address, [], sink, len(sent))
                return during, sink
            finally:
                await self._close(listener)

        during, sink = asyncio.run(run())
        assert during == 0, "messages reached the sink while the input was paused"
        assert len(sink.messages) == 5
