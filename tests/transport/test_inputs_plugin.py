"""The built-in ``udp`` and ``tcp`` input types, through the registration hook."""

from __future__ import annotations

import asyncio

import pluggy
import pytest

from dsrouter import hookspecs
from dsrouter.api import InputType
from dsrouter.ingest.transport import TcpListener, UdpListener, send_tcp
from dsrouter.options import Duration, Size
from dsrouter.plugins import inputs


def registered() -> dict[str, InputType]:
    pm = pluggy.PluginManager("dsrouter")
    pm.add_hookspecs(hookspecs)
    pm.register(inputs, name="dsrouter.plugins.inputs")
    pm.check_pending()
    got: list[InputType] = []
    pm.hook.dsrouter_register_inputs(register=got.append)
    return {t.name: t for t in got}


def test_registers_udp_tcp_and_tls() -> None:
    types = registered()
    assert sorted(types) == ["tcp", "tls", "udp"]
    assert [o.name for o in types["udp"].options] == [
        "listen",
        "allow",
        "rate_limit",
        "max_message",
        "recv_buffer",
    ]
    tcp = [
        "listen",
        "allow",
        "rate_limit",
        "framing",
        "max_message",
        "idle_timeout",
        "partial_timeout",
        "max_connections",
        "max_connections_per_peer",
    ]
    assert [o.name for o in types["tcp"].options] == tcp
    tls = ["cert", "key", "key_password", "client_ca", "client_cert", "peer_names"]
    assert [o.name for o in types["tls"].options] == tcp + tls
    assert all(t.help for t in types.values())


OPTION_CHECKS = [
    ("listen-ok", "tcp", "listen", "127.0.0.1:5514", ("127.0.0.1", 5514), None),
    ("listen-bad", "tcp", "listen", "localhost", None, 'expected "HOST:PORT"'),
    ("framing-ok", "tcp", "framing", "octet-counted", "octet-counted", None),
    ("framing-bad", "tcp", "framing", "rfc5425", None, "expected one of"),
    ("size-ok", "udp", "max_message", Size(8192), 8192, None),
    ("recv-buffer-ok", "udp", "recv_buffer", Size(16 * 1024 * 1024), 16 * 1024 * 1024, None),
    ("recv-buffer-bad", "udp", "recv_buffer", "big", None, "expected a size"),
    ("timeout-bad", "tcp", "idle_timeout", 30, None, "expected a duration"),
]


@pytest.mark.parametrize(
    ("kind", "name", "value", "coerced", "error"),
    [c[1:] for c in OPTION_CHECKS],
    ids=[c[0] for c in OPTION_CHECKS],
)
def test_option_checks(kind: str, name: str, value, coerced, error) -> None:
    option = {o.name: o for o in registered()[kind].options}[name]
    got, problem = option.check(value)
    if error is None:
        assert (got, problem) == (coerced, None)
    else:
        assert got is None and error in problem


def test_required_and_defaults() -> None:
    tcp = {o.name: o for o in registered()["tcp"].options}
    assert tcp["listen"].required
    assert tcp["max_message"].default == 65536 and isinstance(tcp["max_message"].default, Size)
    assert tcp["idle_timeout"].default == 300.0
    assert isinstance(tcp["idle_timeout"].default, Duration)
    assert (tcp["framing"].default, tcp["max_connections"].default) == ("auto", 1024)


def test_factories_apply_options_and_defaults() -> None:
    types = registered()
    sink = lambda messages, peer: None  # noqa: E731
    udp = types["udp"].factory("u", {"listen": ("127.0.0.1", 0)}, sink)
    assert isinstance(udp, UdpListener) and udp.max_message == 65536
    assert udp.requested_recv_buffer == 8 * 1024 * 1024
    udp = types["udp"].factory("u", {"listen": ("127.0.0.1", 0), "recv_buffer": Size(4096)}, sink)
    assert udp.requested_recv_buffer == 4096
    tcp = types["tcp"].factory(
        "t",
        {"listen": ("127.0.0.1", 0), "framing": "lf", "idle_timeout": Duration(5.0)},
        sink,
    )
    assert isinstance(tcp, TcpListener)
    assert (tcp.framing, tcp.idle_timeout, tcp.max_connections) == ("lf", 5.0, 1024)


def test_forced_lf_framing_ignores_octet_counts_end_to_end() -> None:
    got: list[bytes] = []

    async def body() -> None:
        factory = registered()["tcp"].factory
        options = {"listen": ("127.0.0.1", 0), "framing": "lf"}
        listener = factory("t", options, lambda m, p: got.extend(m))
        await listener.start()
        try:
            port = listener.address[1]
            await asyncio.to_thread(send_tcp, "127.0.0.1", port, [b"5 <13>a"], "lf")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not got and loop.time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            listener.close()

    asyncio.run(asyncio.wait_for(body(), 15))
    assert got == [b"5 <13>a"]
