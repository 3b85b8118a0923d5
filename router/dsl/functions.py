"""Expression types and the built-in functions: what the checker types and the compiler calls.

Static types are strings: ``int``, ``float``, ``string``, ``ip``, ``bool``, ``object``,
``duration``, ``size``, ``cidr``, ``list`` and ``any`` (``ext[...]`` keys and values whose
type is only known at run time). ``number`` is accepted as a parameter type for int or float.
Built-ins take and return null for null (or wrongly typed run-time) arguments.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any

from dsrouter.api import Function
from dsrouter.options import Duration, Size

NUMERIC = frozenset({"int", "float", "duration", "size", "number"})
STRINGY = frozenset({"string", "ip"})  # ip-typed fields hold the address as text


def _lower(v: Any) -> Any:
    return v.lower() if v.__class__ is str else None


def _upper(v: Any) -> Any:
    return v.upper() if v.__class__ is str else None


def _len(v: Any) -> Any:
    return len(v) if isinstance(v, str | list | dict) else None


_INT_TEXT = re.compile(r"\s*[-+]?[0-9]{1,40}\s*")


def _int(v: Any) -> Any:
    if v.__class__ is str:  # ASCII digits only: not "1_0", not other scripts' digits
        return int(v) if _INT_TEXT.fullmatch(v) else None
    if v.__class__ is bool:
        return int(v)
    if isinstance(v, float):
        return int(v) if math.isfinite(v) else None
    return v if isinstance(v, int) else None


def _str(v: Any) -> Any:
    if v.__class__ is str:
        return v
    if v.__class__ is bool:
        return "true" if v else "false"
    if isinstance(v, int | float | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(v)
    return None


BUILTINS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("lower", _lower, ("string",), "string", help="lower-case a string"),
        Function("upper", _upper, ("string",), "string", help="upper-case a string"),
        Function("len", _len, ("any",), "int", help="length of a string"),
        Function("int", _int, ("any",), "int", help="integer from a number or numeric text"),
        Function("str", _str, ("any",), "string", help="text of a number, bool or string"),
    )
}
"""``exists(field)`` is handled by the checker and compiler themselves (it takes a field)."""

SPECIAL = frozenset({"exists", "env", "file"})


def function_table(plugin_functions: Mapping[str, Function]) -> dict[str, Function]:
    """Built-ins plus plugin functions (the plugin manager already rejected clashes)."""
    return {**plugin_functions, **BUILTINS}


def type_of_value(value: Any) -> str:
    """The static type of a constant."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Duration):
        return "duration"
    if isinstance(value, Size):
        return "size"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return "ip"
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return "cidr"
    if isinstance(value, list):
        return "list"
    return "any" if value is None else "object"


def accepts(param: str, arg: str) -> bool:
    """Can a value of static type ``arg`` be passed where ``param`` is expected?"""
    if param == "any" or arg == "any" or param == arg:
        return True
    if param in NUMERIC and arg in NUMERIC:
        return param in ("number", "float") or arg in ("int", "size")
    return param == "string" and arg == "ip"


def comparable(a: str, b: str) -> bool:
    """Can ``a == b`` ever be true (so the comparison is worth writing)?"""
    if "any" in (a, b) or a == b:
        return a != "cidr"
    if a in NUMERIC and b in NUMERIC:
        return True
    return {a, b} == {"ip", "string"}


def orderable(a: str, b: str) -> bool:
    """Is ``a < b`` meaningful: numbers with numbers, strings with strings?"""
    kinds = {("num" if t in NUMERIC else t) for t in (a, b) if t != "any"}
    return len(kinds) <= 1 and kinds <= {"num", "string"}


def describe(t: str) -> str:
    """A type for messages: 'an integer', 'a string', ..."""
    return {
        "int": "an integer",
        "float": "a number",
        "number": "a number",
        "string": "a string",
        "ip": "an IP address",
        "bool": "true/false",
        "object": "an object",
        "duration": "a duration",
        "size": "a size",
        "cidr": "a CIDR range",
        "list": "a list",
        "any": "a value",
    }.get(t, t)
