"""Hook specifications: the contract between dsrouter and its plugins.

Hooks are called at start-up for registration, never per event. A plugin module implements any
of them with ``@dsrouter.api.hookimpl`` and is found through the ``dsrouter`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from dsrouter.api import Function, InputType, OutputType

hookspec = pluggy.HookspecMarker("dsrouter")


@hookspec
def dsrouter_register_outputs(register: Callable[[OutputType], None]) -> None:
    """Register output types.

    Called once when the plugin manager loads. Call ``register(OutputType(...))`` once per
    type. A type name already registered by another plugin is rejected with a PluginError that
    names both plugins. Return nothing.
    """


@hookspec
def dsrouter_register_inputs(register: Callable[[InputType], None]) -> None:
    """Register input (receiver) types.

    Called once when the plugin manager loads. Call ``register(InputType(...))`` once per type;
    duplicates are rejected as for outputs. Return nothing.
    """


@hookspec
def dsrouter_register_functions(register: Callable[[Function], None]) -> None:
    """Register functions for routing expressions.

    Called once when the plugin manager loads. Call ``register(Function(...))`` once per
    function. A name already registered by another plugin, or the name of a built-in function
    (``lower``, ``upper``, ``len``, ``int``, ``str``, ``exists``, ``env``, ``file``), is
    rejected with a PluginError. Return nothing.
    """
