"""``dsrouter plugins``: every plugin with its distribution, what it registers and its errors.

Option defaults are shown as they are written in a configuration (``64KiB``, ``5m``, ``"json"``),
never as Python values. ``--json`` prints the same as one document for tools.
"""

from __future__ import annotations

import sys
from typing import Any

from dsrouter.api import API_VERSION, Function
from dsrouter.cli.common import EXIT_OK, load, print_json
from dsrouter.delivery.options import delivery_options
from dsrouter.dsl.pretty import literal
from dsrouter.options import Option
from dsrouter.plugin import Plugins


def list_plugins(args) -> int:
    """Print every plugin, type and function (``-c``: as that configuration loads them)."""
    plugins = load(args)[1] if args.config else Plugins()
    if args.json:
        print_json(as_json(plugins))
        return EXIT_OK
    out = sys.stdout
    out.write(f"dsrouter plugin API {API_VERSION}\n")
    for info in plugins.infos:
        origin = "built-in" if info.builtin else "entry point" if info.distribution else "loaded"
        head = f"plugin {info.name}  {info.dist_label or '(no distribution)'}  {origin}"
        if info.disabled:
            out.write(f"{head}  DISABLED by {info.disabled}\n")
            continue
        out.write(head + "\n")
        for error in info.errors:
            out.write(f"  ERROR: {error}\n")
        for what, names, table in (
            ("input", info.inputs, plugins.inputs),
            ("output", info.outputs, plugins.outputs),
        ):
            for name in names:
                kind = table[name]
                out.write(f"  {what} {name} — {kind.help}\n" if kind.help else f"  {what} {name}\n")
                out.write(_option_lines(kind.options))
        for name in info.functions:
            out.write(f"  function {_signature(plugins.functions[name])}\n")
    out.write("every output also takes the delivery options (see docs/delivery.md):\n")
    out.write(_option_lines(delivery_options()))
    return EXIT_OK


def default_text(opt: Option) -> str:
    """``required``, ``none``, or the default as a configuration writes it."""
    if opt.required:
        return "required"
    if opt.default is None:
        return "none"
    try:
        if isinstance(opt.default, list | tuple):
            return "[" + ", ".join(literal(v) for v in opt.default) + "]"
        return literal(opt.default)
    except (TypeError, ValueError):  # a default no literal can write (a plugin's own object)
        return repr(opt.default)


def _option_lines(options: tuple[Option, ...]) -> str:
    """One line per option, in columns: name, kind (or its choices), default, help."""
    rows = []
    for opt in options:
        kind = "|".join(f'"{c}"' for c in opt.choices) if opt.choices else opt.kind
        if opt.kind == "enum_or_size":
            kind += "|size"
        default = default_text(opt) + (", secret" if opt.secret else "")
        rows.append((opt.name, kind, default, opt.help))
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(
        f"      {n:<{widths[0]}}  {k:<{widths[1]}}  {d:<{widths[2]}}  {h}".rstrip() + "\n"
        for n, k, d, h in rows
    )


def _signature(fn: Function) -> str:
    purity = "" if fn.pure else "  (not pure)"
    help = f" — {fn.help}" if fn.help else ""
    return f"{fn.name}({', '.join(fn.params)}) -> {fn.returns}{purity}{help}"


def _option_json(opt: Option) -> dict[str, Any]:
    return {
        "name": opt.name,
        "kind": opt.kind,
        "required": opt.required,
        "default": None if opt.required or opt.default is None else default_text(opt),
        "choices": list(opt.choices),
        "secret": opt.secret,
        "help": opt.help,
    }


def as_json(plugins: Plugins) -> dict[str, Any]:
    """The ``--json`` document: plugins, types with their option schemas, functions."""

    def kinds(table: dict) -> dict[str, Any]:
        return {
            name: {
                "plugin": kind.plugin,
                "distribution": kind.distribution,
                "help": kind.help,
                "options": [_option_json(o) for o in kind.options],
            }
            for name, kind in sorted(table.items())
        }

    return {
        "api_version": API_VERSION,
        "plugins": [info.to_json() for info in plugins.infos],
        "inputs": kinds(plugins.inputs),
        "outputs": kinds(plugins.outputs),
        "functions": {
            name: {
                "plugin": fn.plugin,
                "distribution": fn.distribution,
                "params": list(fn.params),
                "returns": fn.returns,
                "pure": fn.pure,
                "help": fn.help,
            }
            for name, fn in sorted(plugins.functions.items())
        },
        "delivery_options": [_option_json(o) for o in delivery_options()],
    }
