"""The built-in ``udp`` and ``tcp`` input types, registered as any third-party plugin would.

input dsm_udp { type = "udp", listen = "0.0.0.0:514", recv_buffer = 16MiB }
input dsm_tcp { type = "tcp", listen = "0.0.0.0:601", framing = "auto", idle_timeout = 5m }
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dsrouter.api import Duration, InputType, Option, Size, hookimpl
from dsrouter.ingest.transport import FRAMINGS, UDP_RCVBUF, Sink, TcpListener, UdpListener

_LISTEN = Option("listen", "address", help='where to listen, "HOST:PORT" ("[::]:514" for IPv6)')
_MAX_MESSAGE = Option(
    "max_message",
    "size",
    Size(64 * 1024),
    help="longest message accepted; longer ones are counted and skipped",
)

UDP_OPTIONS = (
    _LISTEN,
    _MAX_MESSAGE,
    Option(
        "recv_buffer",
        "size",
        Size(UDP_RCVBUF),
        help="socket receive buffer for bursts (0: the OS default); past the sysctl "
        "net.core.rmem_max it needs root, else it is capped with a warning; datagrams the "
        'kernel drops when it is full count as dropped, reason "kernel"',
    ),
)

TCP_OPTIONS = (
    _LISTEN,
    Option(
        "framing",
        "enum",
        "auto",
        choices=FRAMINGS,
        help='"auto" detects octet counting or LF/CRLF/NUL per message; the others accept '
        "only that framing",
    ),
    _MAX_MESSAGE,
    Option(
        "idle_timeout",
        "duration",
        Duration(300.0),
        help="close a connection silent for this long",
    ),
    Option(
        "max_connections",
        "int",
        1024,
        help="connections beyond this are accepted and closed at once",
    ),
)


def _opt(options: Mapping[str, Any], spec: tuple[Option, ...], name: str) -> Any:
    """The option's value, or its declared default when the config left it out."""
    if name in options:
        return options[name]
    for option in spec:
        if option.name == name:
            return option.default
    raise KeyError(name)


def make_udp(name: str, options: Mapping[str, Any], sink: Sink) -> UdpListener:
    """Build the ``udp`` listener from checked options."""
    host, port = options["listen"]
    return UdpListener(
        name,
        host,
        port,
        sink,
        max_message=int(_opt(options, UDP_OPTIONS, "max_message")),
        recv_buffer=int(_opt(options, UDP_OPTIONS, "recv_buffer")),
    )


def make_tcp(name: str, options: Mapping[str, Any], sink: Sink) -> TcpListener:
    """Build the ``tcp`` listener from checked options."""
    host, port = options["listen"]
    return TcpListener(
        name,
        host,
        port,
        sink,
        max_message=int(_opt(options, TCP_OPTIONS, "max_message")),
        idle_timeout=float(_opt(options, TCP_OPTIONS, "idle_timeout")),
        max_connections=int(_opt(options, TCP_OPTIONS, "max_connections")),
        framing=_opt(options, TCP_OPTIONS, "framing"),
    )


@hookimpl
def dsrouter_register_inputs(register: Callable[[InputType], None]) -> None:
    """Register the ``udp`` and ``tcp`` receivers."""
    register(
        InputType("udp", make_udp, UDP_OPTIONS, help="syslog over UDP, one message per datagram")
    )
    register(
        InputType(
            "tcp",
            make_tcp,
            TCP_OPTIONS,
            help="syslog over TCP, octet-counted or LF/CRLF/NUL framed (RFC 6587)",
        )
    )
