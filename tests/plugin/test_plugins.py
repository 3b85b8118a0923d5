"""The plugin system: hooks documented, duplicates rejected, a third-party plugin end to end."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

from dsrouter import hookspecs
from dsrouter.api import OutputType, hookimpl
from dsrouter.cli import main
from dsrouter.errors import PluginError
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


def test_builtins_register_through_the_hooks():
    p = Plugins(entry_points=False)
    assert {"file", "stdout"} <= set(p.outputs) and {"udp", "tcp"} <= set(p.inputs)
    assert p.outputs["file"].plugin == "dsrouter.plugins.file"


class _Duplicate:
    @staticmethod
    @hookimpl
    def dsrouter_register_outputs(register):
        register(OutputType("file", lambda *a: None))


def test_duplicate_type_names_the_plugins():
    with pytest.raises(
        PluginError, match="'file'.*already registered by plugin 'dsrouter.plugins.file'"
    ):
        Plugins(extra=[_Duplicate()], entry_points=False)


class _Misspelled:
    @staticmethod
    @hookimpl
    def dsrouter_register_output(register):  # missing "s"
        pass


def test_misspelled_hook_is_caught():
    with pytest.raises(Exception, match="dsrouter_register_output"):
        Plugins(extra=[_Misspelled()], entry_points=False)


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
