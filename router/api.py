"""The public API for plugin authors: everything a third-party output or input imports.

An output plugin module implements the ``dsrouter_register_outputs`` hook and registers an
:class:`OutputType`; the daemon builds one :class:`Output` per ``output`` block. Each output
has its own queue and its own worker thread, which calls ``send()`` with batches of
normalized events (plain dicts); ``send()`` may block (it never runs on the receivers' event
loop). Its outcome is the delivery contract:

* it returns normally: every event of the batch was delivered;
* :class:`RetryLater`: a transient failure (connection refused, disk full, HTTP 503); the
  batch stays queued and is offered again with backoff (``retry_after`` overrides the delay);
* :class:`PermanentFailure`: retrying cannot help this batch; it is dead-lettered;
* :class:`PartialFailure`: the failure concerns some events only (a path that cannot exist, a
  value the peer rejects): those listed in ``rejected`` are dead-lettered alone, those in
  ``retry`` are retried, and every other event of the batch counts as delivered;
* any other exception counts as transient, like :class:`RetryLater`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from dsrouter.options import Duration, Option, Size

__all__ = [
    "API_VERSION",
    "Duration",
    "Event",
    "Function",
    "InputType",
    "Option",
    "Output",
    "OutputContext",
    "OutputType",
    "PartialFailure",
    "PermanentFailure",
    "RetryLater",
    "RunContext",
    "Size",
    "hookimpl",
]

hookimpl = pluggy.HookimplMarker("dsrouter")

#: The plugin API this dsrouter provides, ``"MAJOR.MINOR"``. A minor release only adds (hooks,
#: optional methods, keyword arguments with defaults); removing or changing anything bumps the
#: major. A plugin module may declare ``dsrouter_api_version = 1`` or ``"1.1"`` (same major, at
#: least that minor): under any other dsrouter it is refused with a clear error, not half-run.
API_VERSION = "1.0"

Event = dict[str, Any]


class RetryLater(Exception):
    """A transient delivery failure: the same batch will be offered again later.

    ``retry_after`` (seconds), when the peer said how long to wait (HTTP ``Retry-After``),
    replaces the output's backoff delay for this retry.
    """

    def __init__(self, reason: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    """Delivery can never succeed for this batch: it goes to the dead-letter store.

    ``response`` is kept with each dead letter when there is one, e.g. ``{"status": 403,
    "body": "..."}`` for HTTP (never request headers: they may hold secrets).
    """

    def __init__(self, reason: str = "", *, response: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.response = dict(response) if response is not None else None


class PartialFailure(Exception):
    """Some events of the batch failed; every event not named here was delivered.

    ``rejected`` maps a batch index to the :class:`PermanentFailure` (or reason text) of an
    event that can never be delivered: it is dead-lettered alone. ``retry`` lists the indices
    of events that failed transiently: they are offered again later (``retry_after`` as for
    :class:`RetryLater`).
    """

    def __init__(
        self,
        reason: str = "",
        *,
        rejected: Mapping[int, PermanentFailure | str] | None = None,
        retry: Sequence[int] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.rejected = {
            i: f if isinstance(f, PermanentFailure) else PermanentFailure(str(f))
            for i, f in (rejected or {}).items()
        }
        self.retry = tuple(retry)
        self.retry_after = retry_after


@dataclass(frozen=True)
class OutputContext:
    """What the daemon tells an output about its surroundings."""

    data_dir: Path
    config_dir: Path
    logger: Any = None


@dataclass(frozen=True)
class RunContext:
    """What the lifecycle hooks learn about the daemon that starts or stops."""

    data_dir: Path
    config_dir: Path
    logger: Any = None


class Output:
    """Base class of a destination. Subclasses override :meth:`send` and maybe the others.

    ``send``, ``send_payloads`` and ``flush`` run on the output's own worker thread (never on
    the receivers' event loop), one call at a time unless :attr:`concurrency` is above 1, in
    which case up to that many ``send()`` calls run at once on separate threads (an HTTP output
    with keep-alive connections, for example). ``reopen`` and the retries of an ``open`` that
    raised run on a worker thread between batches. The factory, the first ``open``,
    ``describe`` and ``close`` run on the daemon's main thread: keep them short and bounded.
    ``open``, ``reopen`` and ``close`` never overlap a ``send``; ``close`` is called only after
    a successful ``open``. The output's ``send_timeout`` bounds a send (see docs/plugins.md).
    """

    #: How many batches may be in flight at once (each on its own worker thread).
    concurrency: int = 1

    #: True: the worker calls :meth:`send_payloads` with each event's JSON bytes instead of
    #: :meth:`send` with dicts. For outputs that write the events' JSON as it is (the file
    #: output with a fixed path does): the receiving side serialised each event once already.
    takes_payloads: bool = False

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        self.name = name
        self.options = options
        self.context = context

    def open(self) -> None:
        """Acquire resources (files, connections). Called once before the first send."""

    def send(self, events: Sequence[Event]) -> None:
        """Deliver a batch of events; raise RetryLater or PermanentFailure on failure."""
        raise NotImplementedError

    def send_payloads(self, payloads: Sequence[bytes]) -> None:
        """Like :meth:`send`, given the events as ``orjson.dumps(event)`` bytes (no newline);
        called instead of it when :attr:`takes_payloads` is True. Same failures as ``send``."""
        raise NotImplementedError

    def flush(self) -> None:
        """Push buffered data down (called after each batch and before close)."""

    def reopen(self) -> None:
        """Reopen files or connections; called on reload (SIGHUP) for outputs that stay."""

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
    #: The distribution that registered it, ``"NAME VERSION"`` (``"dsrouter 0.x"`` for the
    #: built-ins); filled in by dsrouter at registration, for messages and ``dsrouter plugins``.
    distribution: str = field(default="", compare=False)
    #: The ``queue`` option's default: ``"disk"`` for outputs that talk to the network (an
    #: outage should survive a restart), ``"memory"`` for local ones.
    default_queue: str = "memory"
    #: Checks across options, run by ``dsrouter check`` once each option is valid on its own:
    #: ``validate(options)`` returns the contradictions in words (reported as E225).
    validate: Callable[[Mapping[str, Any]], list[str]] | None = field(default=None, compare=False)


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
    #: The distribution that registered it, ``"NAME VERSION"`` (``"dsrouter 0.x"`` for the
    #: built-ins); filled in by dsrouter at registration, for messages and ``dsrouter plugins``.
    distribution: str = field(default="", compare=False)
    #: Checks across options, as for :attr:`OutputType.validate`.
    validate: Callable[[Mapping[str, Any]], list[str]] | None = field(default=None, compare=False)
    #: Options naming files: the daemon resolves relative ones against the config file's folder.
    paths: tuple[str, ...] = ()


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
    #: The distribution that registered it, ``"NAME VERSION"`` (``"dsrouter 0.x"`` for the
    #: built-ins); filled in by dsrouter at registration, for messages and ``dsrouter plugins``.
    distribution: str = field(default="", compare=False)
