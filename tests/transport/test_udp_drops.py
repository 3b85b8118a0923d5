"""UDP receive buffer and kernel drop counting, on real sockets over loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from dsrouter.ingest import udp as transport
from dsrouter.ingest.transport import UDP_RCVBUF, UdpListener, send_udp

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="kernel drop counts are read on Linux only")


def run(factory: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(main())


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@linux_only
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_kernel_drops_plus_received_equal_sent(host: str) -> None:
    if host == "::1" and not ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    sent_count, payload = 5000, b"<13>" + b"x" * 496

    async def body() -> None:
        received: list[bytes] = []
        listener = UdpListener("udp_in", host, 0, lambda m, p: received.extend(m), recv_buffer=4096)
        await listener.start()
        assert listener.recv_buffer == listener.stats["recv_buffer_bytes"] == 4096
        # Sent without yielding to the loop: the reader cannot run, the tiny buffer overflows.
        sent = send_udp(host, listener.address[1], [payload] * sent_count)
        assert sent == sent_count and received == []
        listener.refresh_stats()
        drops = listener.stats["kernel_drops_total"]
        assert 0 < drops < sent  # the buffer held a few, the kernel dropped the rest
        await until(lambda: len(received) + drops == sent)
        await asyncio.sleep(0.05)  # nothing more may arrive
        listener.close()  # reads the counter one last time
        assert len(received) == listener.stats["messages_total"]
        assert listener.stats["kernel_drops_total"] == drops
        assert len(received) + listener.stats["kernel_drops_total"] == sent

    run(body)


@linux_only
def test_no_drops_when_read_in_time() -> None:
    async def body() -> None:
        received: list[bytes] = []
        listener = UdpListener("udp_in", "127.0.0.1", 0, lambda m, p: received.extend(m))
        await listener.start()
        assert await asyncio.to_thread(send_udp, "127.0.0.1", listener.address[1], [b"m"] * 50)
        await until(lambda: len(received) == 50)
        listener.refresh_stats()
        assert listener.stats["kernel_drops_total"] == 0
        listener.close()

    run(body)


def test_default_recv_buffer_is_asked_for_and_reported() -> None:
    async def body() -> None:
        listener = UdpListener("udp_in", "127.0.0.1", 0, lambda m, p: None)
        assert listener.requested_recv_buffer == UDP_RCVBUF == 8 * 1024 * 1024
        assert listener.stats["recv_buffer_bytes"] == 0  # unknown before start
        await listener.start()
        assert listener.recv_buffer > 0
        assert listener.stats["recv_buffer_bytes"] == listener.recv_buffer
        listener.close()

    run(body)


def rmem(name: str) -> int:
    try:
        return int(Path(f"/proc/sys/net/core/{name}").read_text())
    except (OSError, ValueError):
        pytest.skip(f"net.core.{name} unreadable")


@linux_only
def test_capped_buffer_warns_once_at_start(monkeypatch) -> None:
    # SO_RCVBUFFORCE replaced by plain SO_RCVBUF: what an unprivileged process gets.
    monkeypatch.setattr(transport, "_SO_RCVBUFFORCE", socket.SO_RCVBUF)
    asked = 2 * rmem("rmem_max") + 65536

    async def body() -> None:
        listener = UdpListener("udp_in", "127.0.0.1", 0, lambda m, p: None, recv_buffer=asked)
        with capture_logs() as logs:
            await listener.start()
            listener.refresh_stats()
        listener.close()
        capped = [e for e in logs if e["event"] == "udp_recv_buffer_capped"]
        assert len(capped) == 1, logs
        assert capped[0]["asked"] == asked and capped[0]["got"] == listener.recv_buffer < asked
        assert capped[0]["log_level"] == "warning" and capped[0]["input"] == "udp_in"
        assert "net.core.rmem_max" in capped[0]["hint"]

    run(body)


@linux_only
def test_zero_keeps_the_os_default_quietly() -> None:
    default = rmem("rmem_default")

    async def body() -> None:
        listener = UdpListener("udp_in", "127.0.0.1", 0, lambda m, p: None, recv_buffer=0)
        with capture_logs() as logs:
            await listener.start()
        listener.close()
        assert listener.recv_buffer == default // 2  # Linux reports double what it uses
        assert not [e for e in logs if e["event"] == "udp_recv_buffer_capped"]

    run(body)


@linux_only
def test_forced_past_rmem_max_as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("SO_RCVBUFFORCE needs root")
    asked = rmem("rmem_max") + 1024 * 1024

    async def body() -> None:
        listener = UdpListener("udp_in", "127.0.0.1", 0, lambda m, p: None, recv_buffer=asked)
        with capture_logs() as logs:
            await listener.start()
        listener.close()
        if listener.recv_buffer < asked:
            pytest.skip("root without CAP_NET_ADMIN (user namespace)")
        assert not [e for e in logs if e["event"] == "udp_recv_buffer_capped"]

    run(body)


def test_drops_stay_zero_off_linux(monkeypatch) -> None:
    monkeypatch.setattr(transport, "_LINUX", False)

    async def body() -> None:
        listener = UdpListener("udp_in", "127.0.0.1", 0, lambda m, p: None, recv_buffer=4096)
        await listener.start()
        send_udp("127.0.0.1", listener.address[1], [b"x" * 500] * 500)
        listener.refresh_stats()
        assert listener.stats["kernel_drops_total"] == 0
        listener.close()

    run(body)


def test_refresh_after_close_is_harmless() -> None:
    async def body() -> None:
        listener = UdpListener("udp_in", "127.0.0.1", 0, lambda m, p: None)
        listener.refresh_stats()  # before start: nothing to read
        await listener.start()
        listener.close()
        listener.refresh_stats()
        assert listener.stats["kernel_drops_total"] == 0

    run(body)


def test_proc_udp_drops_ignores_unknown_inodes() -> None:
    assert transport._proc_udp_drops(2**62, socket.AF_INET) is None
