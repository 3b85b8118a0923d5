"""``dsrouter plugin new NAME [--output | --input | --function] [--dir DIR]``.

Writes a ready third-party plugin project into ``DIR/NAME``: ``pyproject.toml`` (distribution
``dsrouter-NAME``, entry point ``NAME`` in the ``dsrouter`` group), the package
``dsrouter_NAME`` with a small working example of the chosen kind, a README, and tests that use
the conformance kit and pass as soon as the project is installed (``pip install -e .``).

A mistake in the arguments (a bad NAME, a name a built-in already has) is one line on stderr
and exit 2; a target that exists or cannot be written is one line and exit 1.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from string import Template
from typing import Any

from dsrouter.api import API_VERSION
from dsrouter.cli import scaffold_templates as t
from dsrouter.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE

NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
MAX_NAME = 40


class ScaffoldError(Exception):
    """A one-line reason; ``code`` is the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub) -> None:
    """The ``plugin`` command with its ``new`` subcommand (called by ``build_parser``)."""
    plugin = sub.add_parser(
        "plugin",
        help="write a new third-party plugin project (plugin new NAME)",
        description="Tools for plugin authors.",
    )
    actions = plugin.add_subparsers(dest="plugin_command", metavar="ACTION", required=True)
    new = actions.add_parser(
        "new",
        help="write a ready plugin project into DIR/NAME",
        description="Write a plugin project: pyproject.toml (distribution dsrouter-NAME, "
        "entry point NAME), the package dsrouter_NAME with a working example, a README and "
        "tests using the conformance kit that pass once it is installed (pip install -e .).",
    )
    new.add_argument("name", metavar="NAME", help="lower case: letters, digits, - and _")
    kind = new.add_mutually_exclusive_group()
    for flag, what in (
        ("output", "an output type appending events to a file (the default)"),
        ("input", "an input type receiving messages over UDP"),
        ("function", "a function for routing expressions"),
    ):
        kind.add_argument(f"--{flag}", dest="kind", action="store_const", const=flag, help=what)
    new.add_argument(
        "--dir", metavar="DIR", default=".", help="where to create NAME/ (default: here)"
    )


def plugin_command(args) -> int:
    """Run ``dsrouter plugin ACTION``: only ``new`` so far."""
    kind = args.kind or "output"
    try:
        target = new_project(args.name, kind, Path(args.dir))
    except ScaffoldError as exc:
        print(f"dsrouter plugin new: {exc}", file=sys.stderr)
        return exc.code
    print(f"wrote the {kind} plugin dsrouter-{args.name} in {target}")
    print(f"next: cd {target} && pip install -e '.[test]' && python -m pytest")
    return EXIT_OK


def check_name(name: str, kind: str) -> dict[str, str]:
    """The template values for NAME, or ScaffoldError (exit 2) saying what is wrong with it."""
    if name.startswith(("dsrouter-", "dsrouter_")):
        bare = name[len("dsrouter-") :]
        raise ScaffoldError(
            f"give the name without 'dsrouter-' ('{bare}'): the distribution will be "
            f"dsrouter-{bare}",
            EXIT_USAGE,
        )
    if not NAME.match(name) or len(name) > MAX_NAME:
        raise ScaffoldError(
            f"invalid plugin name '{name}': use lower-case letters, digits, '-' and '_', "
            f"starting with a letter (at most {MAX_NAME} characters), e.g. 'assets' or 'my-sink'",
            EXIT_USAGE,
        )
    ident = name.replace("-", "_")
    taken = _taken(kind, name, ident)
    if taken:
        raise ScaffoldError(f"'{name}' is taken: {taken}; choose another name", EXIT_USAGE)
    return {
        "name": name,
        "dist": f"dsrouter-{name}",
        "package": f"dsrouter_{ident}",
        "ident": ident,
        "kind": kind,
        "api_major": API_VERSION.split(".")[0],
    }


def _taken(kind: str, name: str, ident: str) -> str | None:
    """Why the plugin or its type/function name would clash with a built-in, if it would."""
    from dsrouter.dsl.syntax import RESERVED
    from dsrouter.plugin import BUILTIN_PLUGINS, RESERVED_FUNCTIONS, Plugins

    if name in {m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS}:
        return f"a built-in plugin is called '{name}'"
    if kind == "function" and ident in RESERVED_FUNCTIONS:
        return f"'{ident}' is a built-in function of the rule language"
    if kind == "function" and ident in RESERVED:
        return f"'{ident}' is a word of the rule language, never a function name"
    builtins = Plugins(entry_points=False)
    table: dict[str, dict[str, Any]] = {
        "output": builtins.outputs,
        "input": builtins.inputs,
        "function": builtins.functions,
    }
    if ident in table[kind]:
        return f"a built-in {kind} is called '{ident}'"
    return None


def render(values: dict[str, str]) -> dict[str, str]:
    """Relative path → contents of every file of the project."""
    summary, usage, module, tests = t.KINDS[values["kind"]]
    values = {**values, "summary": summary}
    values["usage"] = Template(usage).substitute(values)
    package, ident = values["package"], values["ident"]
    files = {
        "pyproject.toml": t.PYPROJECT,
        "README.md": t.README,
        ".gitignore": t.GITIGNORE,
        f"{package}/__init__.py": module,
        "tests/conftest.py": t.CONFTEST,
        f"tests/test_{ident}.py": tests + t.ENTRY_POINT_TEST,
    }
    return {path: Template(text).substitute(values) for path, text in files.items()}


def new_project(name: str, kind: str, parent: Path) -> Path:
    """Write the project into ``parent/name`` and return that path; ScaffoldError if not."""
    files = render(check_name(name, kind))
    target = parent / name
    if parent.exists() and not parent.is_dir():
        raise ScaffoldError(f"cannot create {target}: {parent} is not a directory", EXIT_INVALID)
    if target.exists() or target.is_symlink():
        what = "directory" if target.is_dir() else "file"
        raise ScaffoldError(f"{target} already exists (a {what}); nothing written", EXIT_INVALID)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        target.mkdir()
    except FileExistsError:
        raise ScaffoldError(f"{target} already exists; nothing written", EXIT_INVALID) from None
    except OSError as exc:
        raise ScaffoldError(f"cannot create {target}: {_why(exc)}", EXIT_INVALID) from None
    try:
        for rel, text in files.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:  # a full disk: leave nothing half-written behind
        shutil.rmtree(target, ignore_errors=True)
        raise ScaffoldError(f"cannot write {target}: {_why(exc)}", EXIT_INVALID) from None
    return target


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
