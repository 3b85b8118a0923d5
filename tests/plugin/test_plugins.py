"""The plugin system: hooks documented, duplicates rejected, a third-party plugin end to end."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

from dsrouter import __version__, hookspecs
from dsrouter.api import OutputType, hookimpl
from dsrouter.cli import main
from dsrouter.plugin import Plugins

ROOT = Path(__file__).resolve().parents[2]


def _hook_names():
    return [
        n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("dsrouter_")
    ]


def test_every_hook_is_documented_in_docs_plugins_md():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    names = _hook_names()
    assert names
    for name in names:
        assert f"`{name}(" in doc, f"{name} is not documented in docs/plugins.md"
        assert getattr(hookspecs, name).__doc__.strip()


def test_every_public_name_of_the_api_is_documented():
    from dsrouter import api

    doc = (ROOT / "docs" / "plugins.md").read_text()
    table = doc[doc.index("Import only from `dsrouter.api`") : doc.index("## Hooks")]
    assert len(api.__all__) >= 15
    for name in api.__all__:
        assert f"`{name}`" in table, f"dsrouter.api.{name} is not in docs/plugins.md's table"
        obj = getattr(api, name)
        if inspect.isclass(obj) and obj.__module__.startswith("dsrouter"):
            assert (obj.__doc__ or "").strip(), f"dsrouter.api.{name} has no docstring"


def test_every_hookspec_says_when_it_is_called_and_what_to_return():
    for name in _hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert "Called" in doc and "Return nothing" in doc, name
        for param in inspect.signature(getattr(hookspecs, name)).parameters:
            assert f"``{param}``" in doc or f"{param}(" in doc, f"{name}: {param} undocumented"


def test_builtins_register_through_the_hooks():
    p = Plugins(entry_points=False)
    assert {"file", "stdout"} <= set(p.outputs) and {"udp", "tcp"} <= set(p.inputs)
    assert p.outputs["file"].plugin == "file"
    assert p.outputs["file"].distribution == f"dsrouter {__version__}"
    assert p.problems == []


class _Duplicate:
    @staticmethod
    @hookimpl
    def dsrouter_register_outputs(register):
        register(OutputType("file", lambda *a: None))


def test_duplicate_type_names_the_plugins_and_keeps_the_first():
    p = Plugins(extra=[_Duplicate()], entry_points=False)
    assert p.outputs["file"].plugin == "file"
    assert p.problems == [
        f"plugin '_Duplicate': output type 'file' is already registered by plugin 'file' "
        f"(dsrouter {__version__})"
    ]


class _Misspelled:
    @staticmethod
    @hookimpl
    def dsrouter_register_output(register):  # missing "s"
        pass


def test_misspelled_hook_is_caught():
    p = Plugins(extra=[_Misspelled()], entry_points=False)
    [problem] = p.problems
    assert "implements unknown hook dsrouter_register_output " in problem
    assert "dsrouter_register_outputs" in problem  # the list of hooks it could have meant


@pytest.fixture
def csv_plugin(monkeypatch):
    path = ROOT / "examples" / "plugin-csv" / "dsrouter_csv" / "__init__.py"
    spec = importlib.util.spec_from_file_location("dsrouter_csv", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "dsrouter_csv", module)
    original = Plugins.__init__

    def init(self, extra=(), entry_points=True):
        original(self, extra=[*extra, module], entry_points=entry_points)

    monkeypatch.setattr(Plugins, "__init__", init)
    return module


def test_example_third_party_plugin_is_checked_and_listed(csv_plugin, tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text(
        'output sheet { type = "csv", path = "e.csv", colums = ["a"] }\nroute all { to sheet }\n'
    )
    assert main(["check", "-c", str(conf)]) == 1
    assert "colums" in capsys.readouterr().err  # a plugin's options are checked strictly
    conf.write_text('output sheet { type = "csv", path = "e.csv" }\nroute all { to sheet }\n')
    assert main(["check", "-c", str(conf)]) == 0
    assert main(["plugins"]) == 0
    assert "output csv" in capsys.readouterr().out
