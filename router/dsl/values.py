"""Resolving option values: literals and lists as they are, ``env()`` and ``file()`` looked up.

Values from ``env()`` and ``file()`` are often secrets: no diagnostic ever quotes them.
``file()`` reads regular files of at most 64 KiB (:mod:`.files`): ``file("/dev/zero")`` is
error ``E215``, not a hang.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import Reporter
from dsrouter.dsl.files import VALUE_LIMIT, Refused, read_text

INVALID = object()
"""Returned instead of a value when resolving failed (the error is already reported)."""


@dataclass(frozen=True)
class ValueContext:
    """Where values are resolved: the environment and the directory of each source file."""

    reporter: Reporter
    environ: Mapping[str, str]
    dirs: Mapping[str, Path]
    base_dir: Path
    #: Some plugin failed to load: an unknown type may be one of its (E202 says so).
    plugin_problems: bool = False

    def dir_of(self, path: str) -> Path:
        return self.dirs.get(path, self.base_dir)


def resolve(node: ast.Node, ctx: ValueContext) -> Any:
    """The Python value of an option value node, or :data:`INVALID` after reporting why."""
    if isinstance(node, ast.Literal):
        return node.value
    if isinstance(node, ast.ListValue):
        items = [resolve(item, ctx) for item in node.items]
        return INVALID if any(i is INVALID for i in items) else items
    if isinstance(node, ast.Call):
        return _call(node, ctx)
    ctx.reporter.error("E217", "expected a value here", node.span)
    return INVALID


def uses_call(node: ast.Node) -> bool:
    """True when the value comes (partly) from ``env()`` or ``file()``: never echo it."""
    if isinstance(node, ast.Call):
        return True
    return isinstance(node, ast.ListValue) and any(uses_call(i) for i in node.items)


def _call(node: ast.Call, ctx: ValueContext) -> Any:
    args = [resolve(a, ctx) for a in node.args]
    if any(a is INVALID for a in args):
        return INVALID
    if node.name == "env" and 1 <= len(args) <= 2 and all(isinstance(a, str) for a in args):
        return _env(node, args, ctx)
    if node.name == "file" and len(args) == 1 and isinstance(args[0], str):
        return _file(node, args[0], ctx)
    if node.name in ("env", "file"):
        usage = 'env("NAME") or env("NAME", "default")' if node.name == "env" else 'file("path")'
        ctx.reporter.error("E212", f"wrong arguments to {node.name}()", node.span, f"use {usage}")
    else:
        help = "option values may call env() and file()"
        ctx.reporter.error("E212", f"unknown function '{node.name}' in a value", node.span, help)
    return INVALID


def _env(node: ast.Call, args: list[str], ctx: ValueContext) -> Any:
    value = ctx.environ.get(args[0])
    if value is not None:
        return value
    if len(args) == 2:
        return args[1]
    help = f'set it, or give a default: env("{args[0]}", "...")'
    ctx.reporter.error("E210", f"environment variable '{args[0]}' is not set", node.span, help)
    return INVALID


def _file(node: ast.Call, name: str, ctx: ValueContext) -> Any:
    path = ctx.dir_of(node.span.path) / name
    try:
        return read_text(path, VALUE_LIMIT).strip()
    except Refused as exc:
        if exc.unsafe:
            help = "file() reads a regular file of at most 64 KiB, such as a token"
            ctx.reporter.error("E215", f"file() refuses '{path}': {exc}", node.span, help)
        else:
            ctx.reporter.error("E211", f"cannot read file '{path}': {exc}", node.span)
        return INVALID
