"""The plugin system: hooks documented, duplicates rejected, a third-party plugin end to end."""

from __future__ import annotations

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
def assets_plugin(monkeypatch, tmp_path):
    """examples/plugin-assets found through a real entry point, as pip leaves it installed."""
    import shutil

    from .fakedist import make_distribution

    site = make_distribution(
        tmp_path / "site", "dsrouter-assets", {}, {"assets": "dsrouter_assets"}
    )
    source = ROOT / "examples" / "plugin-assets" / "dsrouter_assets"
    shutil.copytree(source, site / "dsrouter_assets", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [
        m for m in sys.modules if m == "dsrouter_assets" or m.startswith("dsrouter_assets.")
    ]:
        del sys.modules[name]


def test_example_third_party_plugin_is_checked_and_listed(assets_plugin, tmp_path, capsys):
    import json

    conf = tmp_path / "c.conf"
    good = (
        'output tickets { type = "github_issue", repo = "secops/incidents", token = "t",\n'
        '                 labels = ["ds"] }\n'
        "route severe {\n"
        '  when severity >= 8 and asset_criticality(host) in ["high", "critical"]\n'
        "  set owner = asset_owner(host)\n"
        "  to tickets\n"
        "}\n"
        "route _unmatched { drop }\n"
    )
    conf.write_text(good.replace("labels =", "lables ="))
    assert main(["check", "-c", str(conf)]) == 1
    err = capsys.readouterr().err  # a plugin's options are checked strictly, at their place
    assert f"{conf}:2:18: error[E204]: unknown option 'lables' in output 'tickets'" in err
    assert "did you mean 'labels'?" in err
    conf.write_text(good.replace('repo = "secops/incidents"', 'repo = "incidents"'))
    assert main(["check", "-c", str(conf)]) == 1
    assert "OWNER/NAME" in capsys.readouterr().err  # the option's own validate()
    conf.write_text(good.replace("asset_owner(host)", "asset_owner(severity)"))
    assert main(["check", "-c", str(conf)]) == 1
    assert "asset_owner" in capsys.readouterr().err  # argument types, as for a built-in
    conf.write_text(good)
    assert main(["check", "-c", str(conf)]) == 0
    capsys.readouterr()
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "plugin assets  dsrouter-assets 0.1.0  entry point" in out
    assert "output github_issue" in out
    assert "function asset_owner(string) -> string  (not pure)" in out
    assert main(["plugins", "--json"]) == 0
    [info] = [p for p in json.loads(capsys.readouterr().out)["plugins"] if p["name"] == "assets"]
    assert info["distribution"] == "dsrouter-assets" and info["error"] is None
    assert info["outputs"] == ["github_issue"]
    assert info["functions"] == ["asset_owner", "asset_criticality"]
