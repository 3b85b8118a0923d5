"""Secret option values: kept out of every diagnostic, and flagged when a file exposes them.

An option declared ``secret=True`` (a webhook's ``url`` or ``bearer_token``) that is written
as a literal in the configuration is masked (``"******"``, same width) in every source excerpt,
and warned about (``W201``) when its file is readable by every user: anyone on the machine can
read the secret there. Values from ``env()`` and ``file()`` are neither shown nor warned about.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import Reporter, blank_strings


def secret_keys(option_specs: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """The names of every secret option of every input and output type."""
    return frozenset(
        opt.name
        for kind in ("input", "output")
        for options in option_specs.get(kind, {}).values()
        for opt in options
        if getattr(opt, "secret", False)
    )


def masker(keys: Iterable[str]):
    """A function masking the string literals after ``KEY =`` on a line, for secret keys."""
    names = sorted(keys)
    if not names:
        return lambda line: line
    words = "|".join(map(re.escape, names))
    after_key = re.compile(rf"(?<![\w.])(?:{words})(\s*=\s*)" + r'(\[[^\]]*|"(?:[^"\\\n]|\\.)*"?)')

    def mask(line: str) -> str:
        if "=" not in line:
            return line
        return after_key.sub(lambda m: m[0][: m.start(2) - m.start(0)] + blank_strings(m[2]), line)

    return mask


def inline_secret(opt: ast.Option, where: str, rep: Reporter) -> None:
    """Mask a secret written as a literal; W201 when its file is world-readable."""
    literals = _strings(opt.value)
    if not literals:
        return
    for node in literals:
        rep.redact(node.span)
    path = opt.span.path
    if path.startswith("<") or os.name == "nt":  # text given directly; no POSIX modes
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        key = opt.key.text
        msg = f"secret option '{key}' of {where} is written in '{path}', which every user can read"
        help = f'chmod o-r \'{path}\', or write {key} = env("NAME") or file("path")'
        rep.warning("W201", msg, opt.key.span, help)


def _strings(node: ast.Node) -> list[ast.Literal]:
    if isinstance(node, ast.Literal):
        return [node] if isinstance(node.value, str) and node.value else []
    if isinstance(node, ast.ListValue):
        return [n for item in node.items for n in _strings(item)]
    return []
