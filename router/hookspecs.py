"""Hook specifications: the contract between dsrouter and its plugins.

Hooks are called at start-up for registration, never per event. A plugin module implements any
of them with ``@dsrouter.api.hookimpl`` and is found through the ``dsrouter`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from dsrouter.api import InputType, OutputType

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
