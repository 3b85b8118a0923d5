"""The built-in ``udp``, ``tcp`` and ``tls`` input types, registered as any plugin would.

input dsm_udp { type = "udp", listen = "0.0.0.0:514", recv_buffer = 16MiB }
input dsm_tcp { type = "tcp", listen = "0.0.0.0:601", framing = "auto", idle_timeout = 5m }
input dsm_tls { type = "tls", listen = "0.0.0.0:6514", cert = "server.pem", key = "server.key" }
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dsrouter.api import Duration, InputType, Option, Size, hookimpl
from dsrouter.ingest.limits import allow_list, peer_rates
from dsrouter.ingest.tls import CLIENT_CERT, TlsListener, TlsSettings
from dsrouter.ingest.transport import FRAMINGS, UDP_RCVBUF, Sink, TcpListener, UdpListener

_LISTEN = Option("listen", "address", help='where to listen, "HOST:PORT" ("[::]:514" for IPv6)')
_MAX_MESSAGE = Option(
    "max_message",
    "size",
    Size(64 * 1024),
    help="longest message accepted; longer ones are counted and skipped",
)

_ALLOW = Option(
    "allow",
    "ip_list",
    [],
    help="sender addresses and CIDR ranges allowed to send (empty: anyone); others are "
    "refused and counted",
)

_RATE = Option(
    "rate_limit",
    "int",
    0,
    help="messages per second one sender IP may send (a one-second burst allowed; 0: no "
    "limit); over it, TCP and TLS senders are read more slowly, UDP datagrams are dropped "
    "and counted",
)

UDP_OPTIONS = (
    _LISTEN,
    _ALLOW,
    _RATE,
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
    _ALLOW,
    _RATE,
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
        "partial_timeout",
        "duration",
        Duration(60.0),
        help="close a connection whose message stays unfinished this long (a slow sender); "
        "the partial message is kept, marked truncated (0: never)",
    ),
    Option(
        "max_connections",
        "int",
        1024,
        help="connections beyond this are accepted and closed at once (when every slot is "
        "taken, the peer holding the most gives one up)",
    ),
    Option(
        "max_connections_per_peer",
        "int",
        64,
        help="connections one sender IP may hold open (0: no limit but max_connections)",
    ),
)

TLS_OPTIONS = (
    *TCP_OPTIONS,
    Option("cert", "string", help="the router's certificate (PEM, with its chain)"),
    Option("key", "string", help="the certificate's private key (PEM)"),
    Option("key_password", "string", None, secret=True, help="the key's passphrase"),
    Option("client_ca", "string", None, help="CA bundle (PEM) that signs senders' certificates"),
    Option(
        "client_cert",
        "enum",
        "none",
        choices=CLIENT_CERT,
        help="ask senders for a certificate signed by client_ca",
    ),
    Option(
        "peer_names",
        "list",
        [],
        help='certificate names allowed to connect, e.g. ["dsm.example.com", "*.example.com"]',
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
        allow=allow_list(_opt(options, UDP_OPTIONS, "allow")),
        rates=peer_rates(_opt(options, UDP_OPTIONS, "rate_limit")),
    )


def _stream_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    def get(key: str) -> Any:
        return _opt(options, TCP_OPTIONS, key)

    return {
        "max_message": int(get("max_message")),
        "idle_timeout": float(get("idle_timeout")),
        "partial_timeout": float(get("partial_timeout")),
        "max_connections": int(get("max_connections")),
        "max_connections_per_peer": int(get("max_connections_per_peer")),
        "framing": get("framing"),
        "allow": allow_list(get("allow")),
        "rates": peer_rates(get("rate_limit")),
    }


def make_tcp(name: str, options: Mapping[str, Any], sink: Sink) -> TcpListener:
    """Build the ``tcp`` listener from checked options."""
    host, port = options["listen"]
    return TcpListener(name, host, port, sink, **_stream_kwargs(options))


def _tls_settings(options: Mapping[str, Any]) -> TlsSettings:
    return TlsSettings(
        cert=options.get("cert", ""),
        key=options.get("key", ""),
        key_password=_opt(options, TLS_OPTIONS, "key_password"),
        client_ca=_opt(options, TLS_OPTIONS, "client_ca"),
        client_cert=_opt(options, TLS_OPTIONS, "client_cert"),
        peer_names=tuple(str(n) for n in _opt(options, TLS_OPTIONS, "peer_names")),
    )


def make_tls(name: str, options: Mapping[str, Any], sink: Sink) -> TlsListener:
    """Build the ``tls`` listener from checked options (certificate files are read here)."""
    host, port = options["listen"]
    tls = _tls_settings(options)
    return TlsListener(name, host, port, sink, tls=tls, **_stream_kwargs(options))


@hookimpl
def dsrouter_register_inputs(register: Callable[[InputType], None]) -> None:
    """Register the ``udp``, ``tcp`` and ``tls`` receivers."""
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
    register(
        InputType(
            "tls",
            make_tls,
            TLS_OPTIONS,
            help="syslog over TLS 1.2+ (RFC 5425), optionally with client certificates",
            validate=lambda options: _tls_settings(options).problems(),
            paths=("cert", "key", "client_ca"),
        )
    )
