"""Receivers and senders in one import: the UDP and TCP listeners and the senders."""

from __future__ import annotations

from dsrouter.ingest.framing import FRAMINGS, Framer
from dsrouter.ingest.listener import Sink
from dsrouter.ingest.send import send_tcp, send_udp
from dsrouter.ingest.tcp import TcpListener
from dsrouter.ingest.udp import UDP_RCVBUF, UdpListener

__all__ = [
    "FRAMINGS",
    "UDP_RCVBUF",
    "Framer",
    "Sink",
    "TcpListener",
    "UdpListener",
    "send_tcp",
    "send_udp",
]
