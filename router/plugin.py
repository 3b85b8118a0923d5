"""The plugin manager facade: loads built-in and third-party plugins, keeps the type registry.

Core code never calls ``pm.hook.*`` directly; it asks a :class:`Plugins` instance for types.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import pluggy

from dsrouter import hookspecs
from dsrouter.api import Function, InputType, OutputType
from dsrouter.delivery.options import NAMES as DELIVERY_OPTION_NAMES
from dsrouter.delivery.options import delivery_options
from dsrouter.errors import PluginError

#: Names a plugin function may not take: the DSL's built-in and value functions.
RESERVED_FUNCTIONS = frozenset({"lower", "upper", "len", "int", "str", "exists", "env", "file"})

BUILTIN_PLUGINS = (
    "dsrouter.plugins.inputs",
    "dsrouter.plugins.sns",
    "dsrouter.plugins.file",
    "dsrouter.plugins.stdout",
    "dsrouter.plugins.webhook",
    "dsrouter.plugins.siem",
    "dsrouter.plugins.eventlog",
)


class Plugins:
    """The registered input and output types, collected once through the hooks."""

    def __init__(self, extra: Iterable[object] = (), entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("dsrouter")
        self.pm.add_hookspecs(hookspecs)
        for modname in BUILTIN_PLUGINS:
            self.pm.register(importlib.import_module(modname), name=modname)
        for plugin in extra:
            self.pm.register(plugin)
        if entry_points:
            self.pm.load_setuptools_entrypoints("dsrouter")
        self.pm.check_pending()
        self.outputs: dict[str, OutputType] = {}
        self.inputs: dict[str, InputType] = {}
        self.functions: dict[str, Function] = {}
        self._collect()

    def _collect(self) -> None:
        for impl in self.pm.hook.dsrouter_register_outputs.get_hookimpls():
            impl.function(register=self._registrar(self.outputs, impl.plugin_name, "output"))
        for impl in self.pm.hook.dsrouter_register_inputs.get_hookimpls():
            impl.function(register=self._registrar(self.inputs, impl.plugin_name, "input"))
        for impl in self.pm.hook.dsrouter_register_functions.get_hookimpls():
            reg = self._registrar(self.functions, impl.plugin_name, "function")
            impl.function(register=reg)

    @staticmethod
    def _registrar(table: dict, plugin_name: str, what: str):
        label = what if what == "function" else f"{what} type"

        def register(kind: OutputType | InputType | Function) -> None:
            if what == "function" and kind.name in RESERVED_FUNCTIONS:
                raise PluginError(
                    f"function '{kind.name}' from plugin '{plugin_name}' clashes with a "
                    "built-in function"
                )
            if isinstance(kind, OutputType):
                _check_output_options(kind, plugin_name)
            existing = table.get(kind.name)
            if existing is not None:
                raise PluginError(
                    f"{label} '{kind.name}' from plugin '{plugin_name}' is already "
                    f"registered by plugin '{existing.plugin}'"
                )
            table[kind.name] = _with_plugin(kind, plugin_name)

        return register

    def option_specs(self) -> dict[str, dict]:
        """What the config checker needs from plugins.

        ``{"input": {type: options}, "output": {type: options}, "functions": {name: Function}}``.
        """
        return {
            "input": {name: t.options for name, t in self.inputs.items()},
            "output": {
                name: t.options + delivery_options(t.default_queue)
                for name, t in self.outputs.items()
            },
            "functions": dict(self.functions),
            "checks": {
                "input": {n: t.validate for n, t in self.inputs.items() if t.validate},
                "output": {n: t.validate for n, t in self.outputs.items() if t.validate},
            },
        }


def _check_output_options(kind: OutputType, plugin_name: str) -> None:
    """An output type may not declare an option the delivery engine owns."""
    clash = sorted({o.name for o in kind.options} & DELIVERY_OPTION_NAMES)
    if clash:
        raise PluginError(
            f"output type '{kind.name}' from plugin '{plugin_name}' declares "
            f"{', '.join(repr(c) for c in clash)}: every output already has these delivery options"
        )
    if kind.default_queue not in ("memory", "disk"):
        raise PluginError(
            f"output type '{kind.name}' from plugin '{plugin_name}': default_queue must be "
            '"memory" or "disk"'
        )


def _with_plugin(kind, plugin_name: str):
    from dataclasses import replace

    return replace(kind, plugin=plugin_name)
