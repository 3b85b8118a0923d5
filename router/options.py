"""Option schemas that input and output types declare, and the typed config values.

Every ``input`` and ``output`` type declares its options as a tuple of :class:`Option`; the
config checker rejects unknown keys and values of the wrong kind with a positioned error, so a
plugin's options are checked as strictly as a built-in's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Duration(float):
    """A duration in seconds, written ``500ms``, ``30s``, ``5m``, ``2h`` or ``400d``."""

    __slots__ = ()


class Size(int):
    """A size in bytes, written ``512B``, ``64KiB``, ``10MiB`` or ``1GiB``."""

    __slots__ = ()


IPValue = (
    ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network
)

_REQUIRED = object()

KINDS = (
    "string",
    "int",
    "float",
    "bool",
    "duration",
    "size",
    "list",
    "address",
    "ip_list",
    "enum",
    "enum_or_size",
)


@dataclass(frozen=True)
class Option:
    """One option of an input or output type.

    ``kind`` is one of :data:`KINDS` (``enum_or_size``: one of ``choices`` or a size, e.g.
    ``rotate = "daily"`` or ``rotate = 100MiB``). An option without ``default`` is required.
    ``secret`` options are never echoed in messages or logs. ``validate``, when given, checks
    the value once its kind is right: it returns what is wrong (``dsrouter check`` reports it)
    or ``None``.
    """

    name: str
    kind: str
    default: Any = _REQUIRED
    help: str = ""
    choices: tuple[str, ...] = ()
    secret: bool = False
    validate: Callable[[Any], str | None] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def check(self, value: Any) -> tuple[Any, str | None]:
        """Return ``(coerced_value, None)`` or ``(None, "what is wrong")``."""
        checker = _CHECKERS[self.kind]
        value, problem = checker(self, value)
        if problem is None and self.validate is not None:
            problem = self.validate(value)
            if problem is not None:
                return None, problem
        return value, problem


def _string(opt: Option, v: Any) -> tuple[Any, str | None]:
    return (v, None) if isinstance(v, str) else (None, "expected a string")


def _int(opt: Option, v: Any) -> tuple[Any, str | None]:
    ok = isinstance(v, int) and not isinstance(v, bool)
    return (int(v), None) if ok else (None, "expected an integer")


def _float(opt: Option, v: Any) -> tuple[Any, str | None]:
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    return (float(v), None) if ok else (None, "expected a number")


def _bool(opt: Option, v: Any) -> tuple[Any, str | None]:
    return (v, None) if isinstance(v, bool) else (None, "expected true or false")


def _duration(opt: Option, v: Any) -> tuple[Any, str | None]:
    if isinstance(v, Duration):
        return v, None
    return None, "expected a duration such as 500ms, 30s, 5m, 2h or 400d"


def _size(opt: Option, v: Any) -> tuple[Any, str | None]:
    if isinstance(v, Size):
        return v, None
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return Size(v), None
    return None, "expected a size such as 512B, 64KiB, 10MiB or 1GiB"


def _list(opt: Option, v: Any) -> tuple[Any, str | None]:
    return (list(v), None) if isinstance(v, list) else (None, "expected a list [...]")


def _address(opt: Option, v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, str):
        return None, 'expected "HOST:PORT"'
    try:
        return parse_address(v), None
    except ValueError as exc:
        return None, str(exc)


def _ip_list(opt: Option, v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, list):
        return None, "expected a list of IP addresses and CIDR ranges"
    nets = []
    for item in v:
        try:
            nets.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            return None, f"not an IP address or CIDR range: {item!r}"
    return nets, None


def _enum(opt: Option, v: Any) -> tuple[Any, str | None]:
    if isinstance(v, str) and v in opt.choices:
        return v, None
    return None, "expected one of " + ", ".join(f'"{c}"' for c in opt.choices)


def _enum_or_size(opt: Option, v: Any) -> tuple[Any, str | None]:
    if isinstance(v, str) and v in opt.choices:
        return v, None
    if isinstance(v, Size) or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        return Size(v), None
    named = ", ".join(f'"{c}"' for c in opt.choices)
    return None, f"expected {named} or a size such as 100MiB"


_CHECKERS = {
    "string": _string,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "duration": _duration,
    "size": _size,
    "list": _list,
    "address": _address,
    "ip_list": _ip_list,
    "enum": _enum,
    "enum_or_size": _enum_or_size,
}


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:5514"`` or ``"[::1]:5514"`` → ``(host, port)``; raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'expected "HOST:PORT", got "{text}"')
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise ValueError(f'missing host in "{text}"')
    return host, int(port)
