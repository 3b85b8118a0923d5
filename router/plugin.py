"""The plugin manager facade: loads built-in and third-party plugins, keeps the type registry.

Core code never calls ``pm.hook.*`` directly; it asks a :class:`Plugins` instance for types.
A plugin that cannot be imported, implements an unknown hook, raises while registering or
registers a taken name loses only what it got wrong: the problem is kept in its
:class:`~dsrouter.plugin_load.PluginInfo` (``dsrouter check`` warns, ``dsrouter plugins``
shows it, the daemon logs it) and everything else loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pluggy

from dsrouter import hookspecs, plugin_load
from dsrouter.api import Function, InputType, OutputType, RunContext
from dsrouter.delivery.options import NAMES as DELIVERY_OPTION_NAMES
from dsrouter.delivery.options import delivery_options
from dsrouter.plugin_load import PluginInfo

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
_REGISTRATIONS = (
    ("dsrouter_register_outputs", "outputs", "output type"),
    ("dsrouter_register_inputs", "inputs", "input type"),
    ("dsrouter_register_functions", "functions", "function"),
)


class Plugins:
    """The registered input and output types and functions, collected once through the hooks.

    ``disabled`` names plugins (or distributions; ``"*"``: every entry point) never imported,
    as ``settings { disable_plugins = [...] }`` does; ``DSROUTER_DISABLE_PLUGINS`` adds more.
    """

    def __init__(
        self, extra: Iterable[object] = (), entry_points: bool = True, disabled: Iterable[str] = ()
    ) -> None:
        self.disabled = tuple(disabled)
        why = plugin_load.disabled_names(self.disabled)
        self.pm = pluggy.PluginManager("dsrouter")
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = [
            *plugin_load.builtins(BUILTIN_PLUGINS, why),
            *plugin_load.in_process(extra),
            *(plugin_load.entry_points(why) if entry_points else ()),
        ]
        self.outputs: dict[str, OutputType] = {}
        self.inputs: dict[str, InputType] = {}
        self.functions: dict[str, Function] = {}
        for info in self.infos:
            if info.obj is not None and not info.errors:
                self._register(info)
        for info in self.infos:
            if info.obj is not None and not info.errors:
                self._collect(info)

    # -- loading --------------------------------------------------------------------------
    def _register(self, info: PluginInfo) -> None:
        try:
            self.pm.register(info.obj, name=info.name)
        except Exception as exc:  # a name taken, or a hookimpl whose signature is wrong
            info.errors.append(f"cannot register: {exc}")
            return
        callers = self.pm.get_hookcallers(info.obj) or []
        unknown = [caller.name for caller in callers if not caller.has_spec()]
        if unknown:
            self.pm.unregister(info.obj)
            known = ", ".join(sorted(n for n in dir(self.pm.hook) if n.startswith("dsrouter_")))
            info.errors.append(f"implements unknown hook {', '.join(unknown)} (hooks: {known})")

    def _collect(self, info: PluginInfo) -> None:
        for hook, table, label in _REGISTRATIONS:
            impl = next(
                (i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is info.obj),
                None,
            )
            if impl is None:
                continue
            staged: dict[str, Any] = {}
            try:
                impl.function(register=self._registrar(info, staged, table, label))
            except Exception as exc:  # what it registered before raising is dropped too
                info.errors.append(f"{hook} raised {type(exc).__name__}: {exc}")
                continue
            getattr(self, table).update(staged)
            getattr(info, table).extend(staged)

    def _registrar(self, info: PluginInfo, staged: dict, table: str, label: str):
        registry = getattr(self, table)

        def register(kind: OutputType | InputType | Function) -> None:
            problem = _problem(kind, label)
            existing = registry.get(kind.name) or staged.get(kind.name)
            if existing is not None and problem is None:
                owner = existing.plugin
                dist = f" ({existing.distribution})" if existing.distribution else ""
                problem = f"{label} '{kind.name}' is already registered by plugin '{owner}'{dist}"
            if problem is not None:
                info.errors.append(problem)
                return
            staged[kind.name] = replace(kind, plugin=info.name, distribution=info.dist_label)

        return register

    # -- what the rest of dsrouter asks ---------------------------------------------------
    @property
    def problems(self) -> list[str]:
        """One line per plugin that failed (wholly or in part), naming it and its distribution."""
        return [f"{i.label}: {e}" for i in self.infos for e in i.errors]

    def info_of(self, name: str) -> PluginInfo | None:
        return next((i for i in self.infos if i.name == name), None)

    def run_hook(self, hook: str, context: RunContext, log: Any) -> None:
        """Call a lifecycle hook of every plugin, each on its own: one raising is logged."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            try:
                impl.function(context=context)
            except Exception as exc:  # a plugin's failure never stops start or stop
                info = self.info_of(impl.plugin_name)
                log.error(
                    "plugin_hook_failed",
                    hook=hook,
                    plugin=impl.plugin_name,
                    distribution=info.dist_label if info else "",
                    error=f"{type(exc).__name__}: {exc}",
                )

    def option_specs(self) -> dict[str, Any]:
        """What the config checker needs from plugins.

        ``{"input": {type: options}, "output": {type: options}, "functions": {name: Function},
        "checks": ..., "problems": [line, ...]}``.
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
            "problems": self.problems,
            "plugin_names": sorted(
                {i.name for i in self.infos} | {i.distribution for i in self.infos} - {""}
            ),
        }


def _problem(kind: Any, label: str) -> str | None:
    """What is wrong with a registration on its own (before looking for a taken name)."""
    expected: type = {"output type": OutputType, "input type": InputType, "function": Function}[
        label
    ]
    if not isinstance(kind, expected):
        return f"registered {type(kind).__name__} where a {expected.__name__} belongs"
    if isinstance(kind, Function) and kind.name in RESERVED_FUNCTIONS:
        return f"function '{kind.name}' clashes with a built-in function"
    if isinstance(kind, OutputType):
        return _output_problem(kind)
    return None


def _output_problem(kind: OutputType) -> str | None:
    """An output type may not declare an option the delivery engine owns."""
    clash = sorted({o.name for o in kind.options} & DELIVERY_OPTION_NAMES)
    if clash:
        return (
            f"output type '{kind.name}' declares {', '.join(repr(c) for c in clash)}: every "
            "output already has these delivery options"
        )
    if kind.default_queue not in ("memory", "disk"):
        return f'output type \'{kind.name}\': default_queue must be "memory" or "disk"'
    return None


__all__ = ["BUILTIN_PLUGINS", "PluginInfo", "Plugins", "RESERVED_FUNCTIONS"]
