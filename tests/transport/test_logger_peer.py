"""A real peer: util-linux ``logger`` sending to our listeners over UDP and TCP."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from dsrouter.ingest.transport import TcpListener, UdpListener

LOGGER = shutil.which("logger")
pytestmark = pytest.mark.skipif(LOGGER is None, reason="util-linux logger is not installed")

TEXT = "CEF:0|Trend Micro|Deep Security Agent|20.0|4000000|Eicar_test_file|6|act=Delete"

CASES = [
    ("udp-rfc3164", "udp", ["--udp", "--rfc3164"], rb"^<13>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d "),
    ("udp-rfc5424", "udp", ["--udp", "--rfc5424"], rb"^<13>1 \d{4}-\d\d-\d\dT"),
    ("tcp-octet-rfc5424", "tcp", ["--tcp", "--octet-count", "--rfc5424"], rb"^<13>1 \d{4}-"),
    ("tcp-octet-rfc3164", "tcp", ["--tcp", "--octet-count", "--rfc3164"], rb"^<13>[A-Z]"),
    ("tcp-lf-rfc5424", "tcp", ["--tcp", "--rfc5424"], rb"^<13>1 \d{4}-"),
]


async def _logger(port: int, flags: list[str], text: str) -> int:
    assert LOGGER is not None
    argv = [LOGGER, *flags, "--server", "127.0.0.1", "--port", str(port), "-t", "dsa", text]
    proc = await asyncio.create_subprocess_exec(*argv)
    return await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.parametrize(
    ("proto", "flags", "header"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_logger_messages_arrive_whole(proto: str, flags: list[str], header: bytes) -> None:
    got: list[bytes] = []

    async def body() -> None:
        cls = UdpListener if proto == "udp" else TcpListener
        listener = cls("in", "127.0.0.1", 0, lambda m, p: got.extend(m))
        await listener.start()
        try:
            for i in range(3):
                assert await _logger(listener.address[1], flags, f"{TEXT} n={i}") == 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while len(got) < 3 and loop.time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            listener.close()

    asyncio.run(asyncio.wait_for(body(), 30))
    assert len(got) == 3
    for i, message in enumerate(got):
        assert re.match(header, message), message
        assert message.endswith(f"{TEXT} n={i}".encode()), message
