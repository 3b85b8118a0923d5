"""The public API for plugin authors: everything a third-party output or input imports.

An output plugin module implements the ``dsrouter_register_outputs`` hook and registers an
:class:`OutputType`; the daemon builds one :class:`Output` per ``output`` block and calls its
``send()`` with batches of normalized events (plain dicts). ``send()`` returns normally when the
batch is delivered, raises :class:`RetryLater` for a transient failure (the batch is retried with
backoff) and :class:`PermanentFailure` when retrying cannot help (the batch is dead-lettered).
Any other exception counts as transient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from dsrouter.options import Duration, Option, Size

__all__ = [
    "Duration",
    "Event",
    "Function",
    "InputType",
    "Option",
    "Output",
    "OutputContext",
    "OutputType",
    "PermanentFailure",
    "RetryLater",
    "Size",
    "hookimpl",
]

hookimpl = pluggy.HookimplMarker("dsrouter")

Event = dict[str, Any]


class RetryLater(Exception):
    """A transient delivery failure: the same batch will be offered again later."""


class PermanentFailure(Exception):
    """Delivery can never succeed for this batch: it goes to the dead-letter file."""


@dataclass(frozen=True)
class OutputContext:
    """What the daemon tells an output about its surroundings."""

    data_dir: Path
    config_dir: Path
    logger: Any = None


class Output:
    """Base class of a destination. Subclasses override :meth:`send` and maybe the others."""

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        self.name = name
        self.options = options
        self.context = context

    def open(self) -> None:
        """Acquire resources (files, connections). Called once before the first send."""

    def send(self, events: Sequence[Event]) -> None:
        """Deliver a batch of events; raise RetryLater or PermanentFailure on failure."""
        raise NotImplementedError

    def flush(self) -> None:
        """Push buffered data down (called after each batch and before close)."""

    def close(self) -> None:
        """Release resources. Called once at shutdown."""

    def describe(self) -> str:
        """One line for the start-up banner, e.g. where the output writes."""
        return self.name


@dataclass(frozen=True)
class OutputType:
    """A kind of output usable as ``output NAME { type = "<name>", ... }``."""

    name: str
    factory: Callable[[str, Mapping[str, Any], OutputContext], Output]
    options: tuple[Option, ...] = ()
    help: str = ""
    plugin: str = field(default="", compare=False)


@dataclass(frozen=True)
class InputType:
    """A kind of receiver usable as ``input NAME { type = "<name>", ... }``.

    ``factory(name, options, sink)`` returns a listener with ``async start()`` and ``close()``;
    ``sink(messages, peer)`` takes a list of raw messages (bytes) received together.
    """

    name: str
    factory: Callable[..., Any]
    options: tuple[Option, ...] = ()
    help: str = ""
    plugin: str = field(default="", compare=False)


@dataclass(frozen=True)
class Function:
    """A function usable in routing expressions, e.g. ``when geo(src) == "JP"``.

    ``impl`` is called with one Python value per parameter and returns the result. ``params``
    and ``returns`` are type names checked by ``dsrouter check``: ``"string"``, ``"int"``,
    ``"float"``, ``"number"`` (int or float), ``"bool"``, ``"ip"`` or ``"any"``. A null
    (missing) argument makes the result null without calling ``impl``; an exception raised by
    ``impl`` also yields null (the event keeps flowing). A ``pure`` function (same arguments,
    same result, no side effects) called with constant arguments is evaluated once when the
    rules are compiled. Register it through ``dsrouter_register_functions``.
    """

    name: str
    impl: Callable[..., Any]
    params: tuple[str, ...] = ()
    returns: str = "any"
    pure: bool = True
    help: str = ""
    plugin: str = field(default="", compare=False)
