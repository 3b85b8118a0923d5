"""Receiving: sockets, framing and the limits that protect them (bytes in, messages out)."""
