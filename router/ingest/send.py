"""Small blocking senders used by ``dsrouter send`` and the tests."""

from __future__ import annotations

import socket
from collections.abc import Iterable


def send_udp(host: str, port: int, messages: Iterable[bytes]) -> int:
    """Send each message as one datagram; return how many were sent."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, kind, proto, _, addr = infos[0]
    sent = 0
    with socket.socket(family, kind, proto) as sock:  # unconnected: no ICMP errors on send
        for message in messages:
            sock.sendto(message, addr)
            sent += 1
    return sent


def send_tcp(
    host: str,
    port: int,
    messages: Iterable[bytes],
    framing: str = "lf",
    timeout: float = 10.0,
) -> int:
    """Send messages over one TCP connection, LF-terminated or octet-counted; return the count.

    ``framing`` is ``"lf"`` (a message containing LF would be cut by the receiver) or
    ``"octet"`` (or ``"octet-counted"``: RFC 6587 ``LEN SP MSG``, any payload).
    """
    if framing not in ("lf", "octet", "octet-counted"):
        raise ValueError(f"unknown framing {framing!r}; expected 'lf' or 'octet'")
    sent = 0
    with socket.create_connection((host, port), timeout=timeout) as sock:
        batch: list[bytes] = []
        size = 0
        for message in messages:
            if framing == "lf":
                batch += (message, b"\n")
            else:
                batch += (b"%d " % len(message), message)
            sent += 1
            size += len(message)
            if size >= 65536:
                sock.sendall(b"".join(batch))
                batch.clear()
                size = 0
        if batch:
            sock.sendall(b"".join(batch))
        sock.shutdown(socket.SHUT_WR)
    return sent
