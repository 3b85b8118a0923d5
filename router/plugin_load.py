"""Finding and importing plugins, each on its own: one that fails never stops the others.

A plugin is a built-in module (``dsrouter.plugins.file``, named ``file``), an object passed
in-process, or an entry point in the ``dsrouter`` group (named by the entry point). Every one
gets a :class:`PluginInfo`: where it comes from, what it registered, and why it is disabled or
failed. Nothing a plugin does while being imported or checked escapes this module.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dsrouter import __version__
from dsrouter.api import API_VERSION

#: ``DSROUTER_DISABLE_PLUGINS="a,b"``: plugins (or distributions) never imported.
ENV_DISABLE = "DSROUTER_DISABLE_PLUGINS"
#: ``DSROUTER_DISABLE_PLUGIN_AUTOLOAD=1``: no entry point is imported (built-ins still load).
ENV_NO_AUTOLOAD = "DSROUTER_DISABLE_PLUGIN_AUTOLOAD"
GROUP = "dsrouter"


@dataclass
class PluginInfo:
    """One plugin as ``dsrouter plugins`` shows it."""

    name: str
    distribution: str
    version: str
    module: str
    builtin: bool = False
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    disabled: str | None = None  # why, when it is
    obj: Any = field(default=None, repr=False)

    @property
    def dist_label(self) -> str:
        """``"dsrouter-assets 0.1.0"`` (empty for an in-process plugin object)."""
        return f"{self.distribution} {self.version}".strip()

    @property
    def label(self) -> str:
        """How messages name it: ``plugin 'assets' (dsrouter-assets 0.1.0)``."""
        dist = f" ({self.dist_label})" if self.dist_label else ""
        return f"plugin '{self.name}'{dist}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "outputs": self.outputs,
            "inputs": self.inputs,
            "functions": self.functions,
            "disabled": self.disabled,
            "error": "; ".join(self.errors) or None,
        }


def disabled_names(configured: Iterable[str] = ()) -> dict[str, str]:
    """Name → why, from ``settings.disable_plugins`` and :data:`ENV_DISABLE`."""
    why = {str(n).strip(): "settings.disable_plugins" for n in configured if str(n).strip()}
    for name in os.environ.get(ENV_DISABLE, "").replace(" ", ",").split(","):
        if name.strip():
            why[name.strip()] = ENV_DISABLE
    return why


def builtins(modules: Iterable[str], disabled: dict[str, str]) -> Iterator[PluginInfo]:
    for modname in modules:
        short = modname.rsplit(".", 1)[-1]
        info = PluginInfo(short, "dsrouter", __version__, modname, builtin=True)
        info.disabled = disabled.get(short)
        if info.disabled is None:
            _import(info, lambda m=modname: importlib.import_module(m))
        yield info


def in_process(objects: Iterable[object]) -> Iterator[PluginInfo]:
    for obj in objects:
        name = getattr(obj, "__name__", None) or type(obj).__name__
        yield PluginInfo(name, "", "", getattr(obj, "__module__", "") or name, obj=obj)


def entry_points(disabled: dict[str, str]) -> Iterator[PluginInfo]:
    """Every ``dsrouter`` entry point once, imported unless disabled."""
    if os.environ.get(ENV_NO_AUTOLOAD, "").strip() not in ("", "0"):
        return
    seen: set[tuple[str, str]] = set()
    for ep in md.entry_points(group=GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ""
        key = (dist_name, ep.name)
        if key in seen:  # the same distribution twice on sys.path
            continue
        seen.add(key)
        version = dist.version if dist is not None else ""
        info = PluginInfo(ep.name, dist_name, version, ep.value)
        info.disabled = disabled.get(ep.name) or disabled.get(dist_name) or disabled.get("*")
        if info.disabled is None:
            _import(info, ep.load)
        yield info


def _import(info: PluginInfo, load: Any) -> None:
    try:
        info.obj = load()
    except (Exception, SystemExit) as exc:  # a broken plugin is reported, never fatal
        info.errors.append(f"cannot import {info.module}: {type(exc).__name__}: {exc}")
        return
    problem = api_problem(getattr(info.obj, "dsrouter_api_version", None))
    if problem:
        info.errors.append(problem)
        info.obj = None


def api_problem(wanted: Any) -> str | None:
    """Why a plugin declaring ``dsrouter_api_version = wanted`` cannot load here, if it cannot.

    ``wanted`` is ``MAJOR`` or ``"MAJOR.MINOR"``: the same major and at least that minor."""
    if wanted is None:
        return None
    have = tuple(int(p) for p in API_VERSION.split("."))
    try:
        parts = tuple(int(p) for p in str(wanted).split("."))
    except ValueError:
        return f"dsrouter_api_version {wanted!r} is not MAJOR or 'MAJOR.MINOR'"
    if len(parts) not in (1, 2) or parts[0] != have[0] or parts[1:] > have[1:]:
        return f"needs plugin API {wanted}; this dsrouter {__version__} provides {API_VERSION}"
    return None
