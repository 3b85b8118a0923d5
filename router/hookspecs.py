"""Hook specifications: the contract between dsrouter and its plugins.

Hooks are called for registration and at the daemon's start and stop, never per event. A
plugin module implements any of them with ``@dsrouter.api.hookimpl`` and is found through the
``dsrouter`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from dsrouter.api import Function, InputType, OutputType, RunContext

hookspec = pluggy.HookspecMarker("dsrouter")


@hookspec
def dsrouter_register_outputs(register: Callable[[OutputType], None]) -> None:
    """Register output types.

    Called once per process that loads plugins (``run``, ``check``, ``dry-run``, ``test``,
    ``plugins``), before any configuration is checked. Call ``register(OutputType(...))`` once
    per type. A name another plugin already took, an option named like a delivery option or a
    bad ``default_queue`` is refused: that one registration is skipped and the problem, naming
    both plugins and their distributions, is reported (``check`` warns W401); the rest of the
    plugin still loads. If the hook raises, everything it registered is dropped. Return nothing.
    """


@hookspec
def dsrouter_register_inputs(register: Callable[[InputType], None]) -> None:
    """Register input (receiver) types.

    Called once, like ``dsrouter_register_outputs``. Call ``register(InputType(...))`` once
    per type; a taken name is refused and reported in the same way. Return nothing.
    """


@hookspec
def dsrouter_register_functions(register: Callable[[Function], None]) -> None:
    """Register functions for routing expressions.

    Called once, like ``dsrouter_register_outputs``. Call ``register(Function(...))`` once per
    function. A name already registered by another plugin, or the name of a built-in function
    (``lower``, ``upper``, ``len``, ``int``, ``str``, ``exists``, ``env``, ``file``), is
    refused and reported in the same way. Return nothing.
    """


@hookspec
def dsrouter_startup(context: RunContext) -> None:
    """The daemon has started: its outputs are open and its inputs are about to accept.

    Called once per ``dsrouter run`` (not by ``check``, ``dry-run`` or ``test``), on the main
    thread, after every hook above. ``context`` has ``data_dir``, ``config_dir`` and
    ``logger``. Start what the plugin's types share (a cache refresher, a client pool) here.
    An exception is logged as ``plugin_hook_failed`` naming the plugin; the daemon keeps
    starting. Return nothing.
    """


@hookspec
def dsrouter_shutdown(context: RunContext) -> None:
    """The daemon has stopped: inputs are closed and outputs drained and closed.

    Called once, on the main thread, after ``dsrouter_startup`` was called (also when the
    daemon stops because start-up failed after it), with the same ``context``. Release what
    ``dsrouter_startup`` took; an exception is logged and ignored. Return nothing.
    """
