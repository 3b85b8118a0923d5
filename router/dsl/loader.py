"""Loading a configuration: read the main file, splice in includes, parse, check.

``include "glob"`` is resolved relative to the including file; its matches are read in sorted
order and their items spliced in place. A file that is already being read (a cycle) and a glob
that matches nothing are errors. Syntax errors are collected from every file; the semantic
checks run only when every file parsed, so they never report noise caused by a broken file.

Only regular files are included, each at most 1 MiB (:mod:`.files`; ``E215``), at most
:data:`MAX_FILES` in all and :data:`MAX_INCLUDE_DEPTH` deep (``E214``); the main file may also
be a pipe (``-c <(generate)``) and has the same size limit (``E220``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dsrouter.dsl import ast
from dsrouter.dsl.checker import SETTINGS, check
from dsrouter.dsl.config import Config
from dsrouter.dsl.diagnostics import Reporter, at
from dsrouter.dsl.files import CONFIG_LIMIT, Refused, read_text
from dsrouter.dsl.includes import MAX_ENTRIES, WalkTooLong, find
from dsrouter.dsl.parser import parse
from dsrouter.dsl.secrets import masker, secret_keys
from dsrouter.dsl.values import ValueContext
from dsrouter.errors import ConfigError, Diagnostic, Span

MAX_FILES = 1000
"""The most files one configuration may include, all includes together."""
MAX_INCLUDE_DEPTH = 32
"""The longest chain of files including each other."""

OptionSpecs = Mapping[str, Mapping[str, tuple]]
_EMPTY_SPECS: OptionSpecs = {"input": {}, "output": {}}


def load_config(
    path: str | Path, option_specs: OptionSpecs, environ: Mapping[str, str] | None = None
) -> Config:
    """Load and check the configuration at ``path``; raises :class:`ConfigError`."""
    base = Path(path).absolute().parent
    text = read_config(path)
    return load_config_text(text, str(path), option_specs, base_dir=base, environ=environ)


def read_config(path: str | Path) -> str:
    """The main file's text, read once (it may be a pipe); E220 when it cannot be read."""
    try:
        return read_text(path, CONFIG_LIMIT, regular_only=False)
    except Refused as exc:
        diag = Diagnostic("E220", f"cannot read configuration file '{path}': {exc}")
        raise ConfigError(diagnostics=[diag]) from None


def load_config_text(
    text: str,
    path: str = "<config>",
    option_specs: OptionSpecs = _EMPTY_SPECS,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Check configuration text; ``base_dir`` anchors relative paths (default: cwd)."""
    base = Path(base_dir if base_dir is not None else os.getcwd()).absolute()
    secret_settings = {name for name, opt in SETTINGS.items() if opt.secret}
    rep = Reporter(masker(secret_keys(option_specs) | secret_settings))
    items, loader = _items(text, path, base, rep)
    rep.raise_if_errors()
    env = os.environ if environ is None else environ
    ctx = ValueContext(rep, env, loader.dirs, base, bool(option_specs.get("problems")))
    config = check(items, option_specs, ctx, loader.files)
    rep.raise_if_errors()
    config.warnings.extend(rep.warnings)
    return config


def disabled_plugins(text: str, path: str | Path) -> tuple[str, ...]:
    """``settings { disable_plugins = [...] }`` of the configuration ``text`` read from
    ``path`` (with its includes), found before any plugin is imported, so a disabled one is
    never imported. Only string literals count; the real load reports anything wrong."""
    if "disable_plugins" not in text and "include" not in text:  # no second parse needed
        return ()
    items, _ = _items(text, str(path), Path(path).absolute().parent, Reporter())
    names: list[str] = []
    for item in items:
        for opt in item.options if isinstance(item, ast.Settings) else ():
            if opt.key.text == "disable_plugins" and isinstance(opt.value, ast.ListValue):
                names += [
                    v.value
                    for v in opt.value.items
                    if isinstance(v, ast.Literal) and isinstance(v.value, str)
                ]
    return tuple(names)


def _items(text: str, path: str, base: Path, rep: Reporter) -> tuple[list[ast.Item], _Includes]:
    """The parsed items of the main file with its includes spliced in."""
    loader = _Includes(rep)
    main = parse(text, path, rep)
    loader.dirs[path] = base
    stack: list[tuple[Path, Span | None]] = []
    if not path.startswith("<"):  # a real file, not "<config>" or "<stdin>"
        loader.files.append(Path(path).absolute())
        stack.append((Path(path).resolve(), None))
    return (loader.expand(main, stack) if main is not None else []), loader


class _Includes:
    """Expands ``include`` items recursively, remembering each file's directory."""

    def __init__(self, rep: Reporter) -> None:
        self.rep = rep
        self.dirs: dict[str, Path] = {}
        self.files: list[Path] = []

    def expand(self, file: ast.File, stack: list[tuple[Path, Span | None]]) -> list[ast.Item]:
        """Items of ``file`` with includes spliced in.

        ``stack`` holds the files being read, outermost first: ``(resolved path, the include
        statement that opened it)``; a file found on it again closes a cycle.
        """
        out: list[ast.Item] = []
        for item in file.items:
            if isinstance(item, ast.Include):
                out.extend(self._include(item, stack))
            else:
                out.append(item)
        return out

    def _include(self, inc: ast.Include, stack: list) -> list[ast.Item]:
        base = self.dirs[inc.span.path]
        if "\0" in inc.pattern:  # no file name holds one; the OS would refuse the pattern
            self.rep.error("E213", "include pattern holds a NUL character", inc.span)
            return []
        pattern = os.path.join(base, inc.pattern)
        room = MAX_FILES - len(self.files) + 1  # the main file is in self.files too
        try:
            matches = find(pattern, room)
        except WalkTooLong:
            msg = f'include "{inc.pattern}" would look through more than {MAX_ENTRIES} entries'
            self.rep.error("E215", msg, inc.span, "narrow the glob: start it in the rules folder")
            return []
        if len(matches) > room:
            msg = f'include "{inc.pattern}" would read more than {MAX_FILES} files'
            self.rep.error("E215", msg, inc.span, "narrow the glob")
            return []
        if not matches:
            self.rep.error(
                "E213",
                f'include "{inc.pattern}" matches no file',
                inc.span,
                f"looked for {pattern}",
            )
            return []
        items: list[ast.Item] = []
        for match in matches:
            items.extend(self._one(Path(match), inc, stack))
        return items

    def _one(self, path: Path, inc: ast.Include, stack: list) -> list[ast.Item]:
        real = path.resolve()
        if len(stack) > MAX_INCLUDE_DEPTH:
            msg = f"includes nested too deeply (limit {MAX_INCLUDE_DEPTH} files)"
            self.rep.error("E214", msg, inc.span, "include the files from one place instead")
            return []
        for i, (open_path, _) in enumerate(stack):
            if open_path == real:
                self._cycle(path, inc, stack[i + 1][1] if i + 1 < len(stack) else None)
                return []
        try:
            text = read_text(path, CONFIG_LIMIT)
        except Refused as exc:
            if not exc.unsafe:
                self.rep.error("E213", f"cannot read included file '{path}': {exc}", inc.span)
                return []
            help = "include regular files of configuration, at most 1 MiB each"
            self.rep.error("E215", f"cannot include '{path}': {exc}", inc.span, help)
            return []
        name = _display(path)
        self.dirs[name] = path.absolute().parent
        self.files.append(path.absolute())
        parsed = parse(text, name, self.rep)
        if parsed is None:
            return []
        return self.expand(parsed, [*stack, (real, inc.span)])

    def _cycle(self, path: Path, inc: ast.Include, first: Span | None) -> None:
        name = _display(path)
        msg = f"include cycle: '{name}' is already being read"
        help = "a file cannot include itself"
        if first is not None:
            help = f"'{name}' starts the cycle with the include at {at(first)}"
        self.rep.error("E214", msg, inc.span, help)


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if len(rel) < len(str(path.absolute())) else str(path.absolute())
