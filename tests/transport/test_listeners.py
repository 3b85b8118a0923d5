"""Real sockets on 127.0.0.1 with ephemeral ports: UDP, TCP framings, limits, timeouts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dsrouter.errors import StartupError
from dsrouter.ingest.transport import TcpListener, UdpListener, send_tcp, send_udp

HOST = "127.0.0.1"


def octet(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


class Collector:
    """A sink that remembers what it got."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.by_peer: dict[str, list[bytes]] = {}
        self.calls = 0
        self.truncated: list[bytes] = []

    def __call__(self, messages: list[bytes], peer: str, truncated: bool = False) -> None:
        self.calls += 1
        if truncated:
            self.truncated += messages
        self.messages += messages
        self.by_peer.setdefault(peer, []).extend(messages)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        await until(lambda: len(self.messages) >= count, timeout)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (bounded); fail the test when it never holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def run(factory: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(main())


async def tcp_listener(sink: Collector, **kw: Any) -> TcpListener:
    listener = TcpListener("tcp_in", HOST, 0, sink, **kw)
    await listener.start()
    return listener


async def connect(listener: TcpListener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*listener.address)


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass  # the listener may already have closed its end


async def is_closed_by_server(reader: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except ConnectionResetError:
        return True


# --- UDP -------------------------------------------------------------------------------------


def no_add_reader(self, *args: Any) -> None:
    raise NotImplementedError  # as on Windows' proactor loop


@pytest.mark.parametrize("path", ["reader", "endpoint"])
def test_udp_datagrams(path: str, monkeypatch) -> None:
    if path == "endpoint":
        monkeypatch.setattr(asyncio.SelectorEventLoop, "add_reader", no_add_reader)

    async def body() -> None:
        sink = Collector()
        listener = UdpListener("udp_in", HOST, 0, sink, max_message=64)
        await listener.start()
        port = listener.address[1]
        assert port != 0
        datagrams = [b"<13>a\n", b"<13>b\r\n", b"", b"\n", b"<13>c", b"<13>" + b"x" * 100, b"<13>d"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            for datagram in datagrams:
                sock.sendto(datagram, (HOST, port))
            me = f"{HOST}:{sock.getsockname()[1]}"
            await sink.wait_for(4)
        listener.close()
        assert sink.messages == [b"<13>a", b"<13>b", b"<13>c", b"<13>d"]
        assert list(sink.by_peer) == [me]
        assert sink.calls == (1 if path == "reader" else 4)  # queued datagrams come as one batch
        assert listener.stats["messages_total"] == 4
        assert listener.stats["oversize_total"] == 1
        assert listener.stats["bytes_total"] == sum(map(len, datagrams))

    run(body)


def test_udp_batches_split_per_peer() -> None:
    async def body() -> None:
        calls: list[tuple[str, list[bytes]]] = []
        listener = UdpListener("udp_in", HOST, 0, lambda m, p: calls.append((p, list(m))))
        await listener.start()
        with socket.socket(type=socket.SOCK_DGRAM) as a, socket.socket(type=socket.SOCK_DGRAM) as b:
            a.bind((HOST, 0))
            b.bind((HOST, 0))
            for sock, text in [(a, b"a1"), (a, b"a2"), (b, b"b1"), (a, b"a3")]:
                sock.sendto(text, listener.address)
            await until(lambda: sum(len(m) for _, m in calls) == 4)
            pa, pb = (f"{HOST}:{s.getsockname()[1]}" for s in (a, b))
        listener.close()
        assert calls == [(pa, [b"a1", b"a2"]), (pb, [b"b1"]), (pa, [b"a3"])]

    run(body)


def test_send_udp_counts_and_delivers() -> None:
    async def body() -> None:
        sink = Collector()
        listener = UdpListener("udp_in", HOST, 0, sink)
        await listener.start()
        messages = [b"<13>m%d" % i for i in range(20)]
        assert await asyncio.to_thread(send_udp, HOST, listener.address[1], messages) == 20
        await sink.wait_for(20)
        listener.close()
        assert sorted(sink.messages) == sorted(messages)

    run(body)


# --- TCP framings ----------------------------------------------------------------------------


def test_tcp_lf_stream_in_pieces() -> None:
    async def body() -> None:
        sink = Collector()
        listener = await tcp_listener(sink)
        reader, writer = await connect(listener)
        for piece in (b"<13>one\n<13>tw", b"o\r\n\n<13>thr", b"ee\x00<13>four\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        await sink.wait_for(4)
        peer = f"{HOST}:{writer.get_extra_info('sockname')[1]}"
        await hang_up(writer)
        await until(lambda: listener.stats["connections_active"] == 0)
        listener.close()
        assert sink.by_peer == {peer: [b"<13>one", b"<13>two", b"<13>three", b"<13>four"]}
        assert listener.stats["connections_total"] == 1

    run(body)


@pytest.mark.parametrize("framing", ["octet", "lf"], ids=["octet-counted", "lf"])
def test_tcp_send_tcp_round_trip(framing: str) -> None:
    async def body() -> None:
        sink = Collector()
        listener = await tcp_listener(sink)
        messages = [b"<86>CEF:0|Trend Micro|n=%d" % i for i in range(2000)]
        if framing == "octet":
            messages.append(b"<86>line\nbreak kept by octet counting")
        sent = await asyncio.to_thread(send_tcp, HOST, listener.address[1], messages, framing)
        assert sent == len(messages)
        await sink.wait_for(len(messages))
        listener.close()
        assert sink.messages == messages
        assert sink.calls < len(messages)  # batches, not one call per message

    run(body)


def test_send_tcp_rejects_unknown_framing() -> None:
    with pytest.raises(ValueError, match="unknown framing"):
        send_tcp(HOST, 9, [b"x"], framing="nul")


def test_fifty_concurrent_connections() -> None:
    async def body() -> None:
        sink = Collector()
        listener = await tcp_listener(sink)

        async def client(i: int) -> str:
            _, writer = await connect(listener)
            lines = b"".join(octet(b"<13>c%d-%d" % (i, j)) for j in range(20))
            writer.write(lines)
            await writer.drain()
            name = f"{HOST}:{writer.get_extra_info('sockname')[1]}"
            await hang_up(writer)
            return name

        peers = await asyncio.gather(*(client(i) for i in range(50)))
        await sink.wait_for(1000)
        await until(lambda: listener.stats["connections_active"] == 0)
        listener.close()
        assert listener.stats["connections_total"] == 50
        for i, peer in enumerate(peers):
            assert sink.by_peer[peer] == [b"<13>c%d-%d" % (i, j) for j in range(20)]

    run(body)


# --- limits ----------------------------------------------------------------------------------


def test_oversize_frame_skipped_connection_keeps_working() -> None:
    async def body() -> None:
        sink = Collector()
        listener = await tcp_listener(sink, max_message=100)
        reader, writer = await connect(listener)
        writer.write(b"<13>" + b"x" * 5000 + b"\n<13>after-line\n")
        writer.write(b"5004 <13>" + b"y" * 5000 + octet(b"<13>after-octet"))
        await writer.drain()
        await sink.wait_for(2)
        writer.write(b"<13>still here\n")
        await writer.drain()
        await sink.wait_for(3)
        assert sink.messages == [b"<13>after-line", b"<13>after-octet", b"<13>still here"]
        assert listener.stats["oversize_total"] == 2
        assert listener.stats["connections_active"] == 1
        await hang_up(writer)
        listener.close()

    run(body)


def test_idle_connection_closed_and_partial_flushed() -> None:
    async def body() -> None:
        sink = Collector()
        listener = await tcp_listener(sink, idle_timeout=0.2)
        reader, writer = await connect(listener)
        writer.write(b"<13>done\n<13>partial")
        await writer.drain()
        await sink.wait_for(1)
        assert await is_closed_by_server(reader)
        await until(lambda: listener.stats["connections_active"] == 0)
        assert listener.stats["idle_closed_total"] == 1
        assert sink.messages == [b"<13>done", b"<13>partial"]
        await hang_up(writer)
        listener.close()

    run(body)


def test_active_connection_not_idle_closed() -> None:
    async def body() -> None:
        sink = Collector()
        listener = await tcp_listener(sink, idle_timeout=0.3)
        _, writer = await connect(listener)
        for i in range(8):  # 0.8 s in all, never 0.3 s silent
            writer.write(b"<13>tick %d\n" % i)
            await writer.drain()
            await asyncio.sleep(0.1)
        await sink.wait_for(8)
        assert listener.stats["idle_closed_total"] == 0
        assert listener.stats["connections_active"] == 1
        await hang_up(writer)
        listener.close()

    run(body)


def test_max_connections() -> None:
    async def body() -> None:
        sink = Collector()
        listener = await tcp_listener(sink, max_connections=2)
        first = [await connect(listener) for _ in range(2)]
        await until(lambda: listener.stats["connections_active"] == 2)
        reader, writer = await connect(listener)
        assert await is_closed_by_server(reader)
        assert listener.stats["rejected_connections_total"] == 1
        for i, (_, w) in enumerate(first):
            w.write(b"<13>kept %d\n" % i)
            await w.drain()
        await sink.wait_for(2)
        assert sorted(sink.messages) == [b"<13>kept 0", b"<13>kept 1"]
        for _, w in [*first, (reader, writer)]:
            await hang_up(w)
        listener.close()

    run(body)


def test_close_flushes_partial_frames_and_disconnects() -> None:
    async def body() -> None:
        sink = Collector()
        listener = await tcp_listener(sink)
        reader, writer = await connect(listener)
        data = b"<13>whole\n<13>half"
        writer.write(data)
        await writer.drain()
        await until(lambda: listener.stats["bytes_total"] == len(data))
        listener.close()
        assert sink.messages == [b"<13>whole", b"<13>half"]
        assert sink.truncated == [b"<13>half"]  # cut by our close: flagged, not passed as whole
        assert await is_closed_by_server(reader)
        await listener.wait_closed()
        assert listener.stats["connections_active"] == 0
        with pytest.raises(OSError):
            await asyncio.open_connection(*listener.address)
        await hang_up(writer)

    run(body)


def test_failing_sink_is_counted_and_does_not_stop_the_listener(capsys) -> None:
    async def body() -> None:
        good = Collector()

        def sink(messages: list[bytes], peer: str) -> None:
            if b"<13>bad" in messages:
                raise RuntimeError("boom")
            good(messages, peer)

        listener = TcpListener("tcp_in", HOST, 0, sink)
        await listener.start()
        _, writer = await connect(listener)
        writer.write(b"<13>bad\n")
        await writer.drain()
        await until(lambda: listener.stats["sink_errors_total"] == 1)
        writer.write(b"<13>good\n")
        await writer.drain()
        await good.wait_for(1)
        assert good.messages == [b"<13>good"]
        await hang_up(writer)
        listener.close()

    run(body)
    logged = capsys.readouterr()
    assert "sink_failed" in logged.out + logged.err
    assert "boom" in logged.out + logged.err


# --- bind errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [TcpListener, UdpListener], ids=["tcp", "udp"])
def test_bind_twice_raises_startup_error(cls) -> None:
    async def body() -> None:
        first = cls("first", HOST, 0, Collector())
        await first.start()
        port = first.address[1]
        second = cls("tcp_in", HOST, port, Collector())
        try:
            with pytest.raises(StartupError) as info:
                await second.start()
        finally:
            first.close()
        assert str(info.value) == (
            f"input 'tcp_in': cannot listen on {HOST}:{port}: Address already in use"
        )

    run(body)


def test_bind_unknown_host_raises_startup_error() -> None:
    async def body() -> None:
        listener = TcpListener("tcp_in", "192.0.2.1", 0, Collector())  # TEST-NET, not ours
        with pytest.raises(
            StartupError, match=r"^input 'tcp_in': cannot listen on 192\.0\.2\.1:0: "
        ):
            await listener.start()

    run(body)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("cls", [TcpListener, UdpListener], ids=["tcp", "udp"])
def test_ipv6_loopback_peer_in_brackets(cls) -> None:
    async def body() -> None:
        sink = Collector()
        listener = cls("in6", "::1", 0, sink)
        await listener.start()
        assert listener.address[0] == "::1"
        sender = send_tcp if cls is TcpListener else send_udp
        await asyncio.to_thread(sender, "::1", listener.address[1], [b"<13>v6"])
        await sink.wait_for(1)
        listener.close()
        assert sink.messages == [b"<13>v6"]
        assert list(sink.by_peer)[0].startswith("[::1]:")

    run(body)
