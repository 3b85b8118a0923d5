"""What the contract classes share: options checked as ``dsrouter check`` checks them, real
events, the option-schema rules and the :class:`Destination` an output's test adapts."""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dsrouter.delivery.options import NAMES as DELIVERY_OPTIONS
from dsrouter.ds import parse_batch
from dsrouter.dsl import load_config_text
from dsrouter.dsl.pretty import literal as source_of
from dsrouter.dsl.pretty import quote
from dsrouter.errors import ConfigError
from dsrouter.options import KINDS, Duration, Option, Size
from dsrouter.plugin import Plugins
from dsrouter.samples import sample_lines


class literal(str):
    """A value written bare in the configuration: ``literal("5s")`` is ``timeout = 5s``."""

    __slots__ = ()


class Destination:
    """The author's view of where an output delivers (a real server, files, a queue).

    Override :meth:`delivered_ids` always, and :meth:`fail` for each way the destination can
    fail; a mode it cannot fail in makes the kit skip that check, saying so."""

    def delivered_ids(self) -> list[str]:
        """``event_id`` of every event that has reached the destination, in arrival order,
        duplicates kept."""
        raise NotImplementedError

    def fail(self, mode: str) -> contextlib.AbstractContextManager[None]:
        """While inside, fail as ``mode`` says: ``"transient"`` (503, connection refused, disk
        full), ``"permanent"`` (400/403, a path that can never exist) or ``"hang"`` (accept
        the request and never answer)."""
        raise NotImplementedError(mode)


def render(value: Any) -> str:
    """A Python option value as configuration text."""
    if isinstance(value, literal):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Duration | Size | int | float):
        return source_of(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} in a configuration; use literal('...')")


def config_text(kind: str, type_name: str, options: Mapping[str, Any]) -> str:
    """A whole configuration with one ``kind`` block of ``type_name`` and a route to it."""
    body = ", ".join(
        [f"type = {quote(type_name)}"] + [f"{k} = {render(v)}" for k, v in options.items()]
    )
    if kind == "output":
        return f"output o {{ {body} }}\nroute all {{ to o }}\n"
    return f'input i {{ {body} }}\noutput o {{ type = "stdout" }}\nroute all {{ to o }}\n'


def checked(plugins: Plugins, kind: str, type_name: str, options: Mapping[str, Any], base: Path):
    """The block's options after the real checker (defaults filled in, values coerced).

    A configuration the checker refuses fails the test with its diagnostics."""
    text = config_text(kind, type_name, options)
    try:
        config = load_config_text(text, "<kit>", plugins.option_specs(), base_dir=base)
    except ConfigError as exc:
        raise AssertionError(f"dsrouter check refuses the options:\n{exc}\n---\n{text}") from None
    block = (config.outputs if kind == "output" else config.inputs)[0]
    return dict(block.options)


def schema_problems(options: tuple[Option, ...], output: bool) -> list[str]:
    """What is wrong with a declared option schema, in words (empty: nothing)."""
    problems, seen = [], set()
    for opt in options:
        where = f"option {opt.name!r}"
        if opt.name in seen:
            problems.append(f"{where} is declared twice")
        seen.add(opt.name)
        if not opt.name.isidentifier():
            problems.append(f"{where}: not a name a configuration can write")
        if opt.kind not in KINDS:
            problems.append(f"{where}: kind {opt.kind!r} is not one of {', '.join(KINDS)}")
            continue
        if opt.kind in ("enum", "enum_or_size") and not opt.choices:
            problems.append(f"{where}: an {opt.kind} needs choices")
        if not opt.help.strip():
            problems.append(f"{where}: no help text (dsrouter plugins shows it)")
        if output and opt.name in DELIVERY_OPTIONS:
            problems.append(f"{where}: every output already has this delivery option")
        if not opt.required and opt.default is not None:
            default = list(opt.default) if isinstance(opt.default, tuple) else opt.default
            _, wrong = opt.check(default)
            if wrong:
                problems.append(
                    f"{where}: its default {opt.default!r} fails its own check: {wrong}"
                )
    return problems


_IDS = itertools.count(1)


def sample_events(n: int) -> list[dict[str, Any]]:
    """``n`` real normalized DS events (every module, cycled), each with its own event_id."""
    base = parse_batch(
        [line.encode() for line in sample_lines()], "kit", "127.0.0.1", "2026-01-01T00:00:00Z"
    )
    out = []
    for ev in itertools.islice(itertools.cycle(base), n):
        ev = copy.deepcopy(ev)
        ev["event_id"] = f"kit-{next(_IDS):06d}"
        out.append(ev)
    return out


@contextlib.contextmanager
def failing(destination: Destination, mode: str) -> Iterator[None]:
    """``destination.fail(mode)``, or a pytest skip saying the destination cannot."""
    import pytest

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(destination.fail(mode))
        except NotImplementedError:
            pytest.skip(f"destination cannot fail {mode!r} (Destination.fail)")
        yield
