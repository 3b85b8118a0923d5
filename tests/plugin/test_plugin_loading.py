"""Third-party plugins found through real entry points, each failing on its own.

Every test installs distributions the way pip leaves them for discovery (modules plus a
``.dist-info`` folder on ``sys.path``, :mod:`fakedist`), then goes through ``Plugins`` or the
real CLI: an import error, a taken name, a raising hook, a misspelled hook or a too-new API
version disables only that plugin's part, and says which plugin and distribution it was.
"""

from __future__ import annotations

import importlib
import json
import uuid

import pytest

from dsrouter import __version__
from dsrouter.api import API_VERSION
from dsrouter.cli.main import main
from dsrouter.plugin import Plugins
from dsrouter.plugin_load import api_problem

from .fakedist import make_distribution

OUTPUT = """\
from dsrouter.api import Output, OutputType, hookimpl

class Sink(Output):
    def send(self, events):
        pass

@hookimpl
def dsrouter_register_outputs(register):
    register(OutputType({name!r}, Sink, help="test output"))
"""


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(dist, source, ep=None) -> module name``: a distribution with one module."""
    monkeypatch.delenv("DSROUTER_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("DSROUTER_DISABLE_PLUGIN_AUTOLOAD", raising=False)

    def install(dist: str, source: str, ep: str | None = None, version: str = "1.2.3") -> str:
        module = f"dsr_{dist.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        root = make_distribution(
            tmp_path / module, dist, {module: source}, {ep or dist: module}, version
        )
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        return module

    return install


def test_an_import_error_disables_only_that_plugin(install, tmp_path, capsys):
    install("dsrouter-good", OUTPUT.format(name="good"), ep="good")
    install("dsrouter-broken", "import no_such_module_anywhere\n", ep="broken")
    plugins = Plugins()
    assert "good" in plugins.outputs and plugins.outputs["good"].distribution == (
        "dsrouter-good 1.2.3"
    )
    [problem] = plugins.problems
    assert problem.startswith("plugin 'broken' (dsrouter-broken 1.2.3): cannot import dsr_")
    assert "ModuleNotFoundError: No module named 'no_such_module_anywhere'" in problem

    conf = tmp_path / "ok.conf"
    conf.write_text('output o { type = "good" }\nroute all { to o }\n')
    assert main(["check", "-c", str(conf)]) == 0
    err = capsys.readouterr().err
    assert "warning[W401]: plugin 'broken' (dsrouter-broken 1.2.3): cannot import" in err

    conf.write_text('output o { type = "ticket" }\nroute all { to o }\n')
    assert main(["check", "-c", str(conf)]) == 1
    err = capsys.readouterr().err
    assert 'error[E202]: unknown output type "ticket"' in err
    assert "a plugin failed to load, see the W401 warnings" in err


def test_a_taken_name_is_refused_and_the_rest_of_the_plugin_loads(install):
    two = OUTPUT.format(name="file") + (
        "\n@hookimpl\ndef dsrouter_register_functions(register):\n"
        "    from dsrouter.api import Function\n"
        "    register(Function('shout', str.upper, params=('string',), returns='string'))\n"
    )
    install("dsrouter-clash", two, ep="clash")
    plugins = Plugins()
    assert plugins.outputs["file"].plugin == "file"  # the built-in keeps its name
    assert plugins.functions["shout"].distribution == "dsrouter-clash 1.2.3"
    assert plugins.problems == [
        "plugin 'clash' (dsrouter-clash 1.2.3): output type 'file' is already registered by "
        f"plugin 'file' (dsrouter {__version__})"
    ]


def test_a_hook_that_raises_registers_nothing(install):
    source = (
        "from dsrouter.api import Function, hookimpl\n"
        "@hookimpl\ndef dsrouter_register_functions(register):\n"
        "    register(Function('half', str.lower, params=('string',), returns='string'))\n"
        "    raise RuntimeError('config file missing')\n"
    )
    install("dsrouter-raiser", source, ep="raiser")
    plugins = Plugins()
    assert "half" not in plugins.functions
    assert plugins.problems == [
        "plugin 'raiser' (dsrouter-raiser 1.2.3): dsrouter_register_functions raised "
        "RuntimeError: config file missing"
    ]


def test_an_unknown_hook_unregisters_the_plugin(install):
    source = OUTPUT.format(name="typo").replace(
        "def dsrouter_register_outputs", "def dsrouter_register_output"
    )
    install("dsrouter-typo", source, ep="typo")
    plugins = Plugins()
    assert "typo" not in plugins.outputs
    assert "implements unknown hook dsrouter_register_output " in plugins.problems[0]


@pytest.mark.parametrize(
    ("wanted", "loads"),
    [(1, True), ("1.0", True), ("1", True), (2, False), ("1.99", False), ("one", False)],
)
def test_api_version_a_plugin_requires(install, wanted, loads):
    install("dsrouter-versioned", f"dsrouter_api_version = {wanted!r}\n" + OUTPUT.format(name="v"))
    plugins = Plugins()
    assert ("v" in plugins.outputs) is loads
    if not loads:
        [problem] = plugins.problems
        assert "dsrouter-versioned 1.2.3" in problem
        assert api_problem(wanted) in problem
    assert API_VERSION == "1.0"


SIDE_EFFECT = "import pathlib\npathlib.Path({marker!r}).write_text('imported')\n"


@pytest.mark.parametrize(
    ("how", "env"),
    [
        ('["loud"]', {}),
        ('["dsrouter-loud"]', {}),
        ('["*"]', {}),
        ("[]", {"DSROUTER_DISABLE_PLUGINS": "other, loud"}),
        ("[]", {"DSROUTER_DISABLE_PLUGIN_AUTOLOAD": "1"}),
    ],
)
def test_a_disabled_plugin_is_never_imported(install, tmp_path, monkeypatch, capsys, how, env):
    marker = tmp_path / "imported"
    install("dsrouter-loud", SIDE_EFFECT.format(marker=str(marker)), ep="loud")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    conf = tmp_path / "c.conf"
    conf.write_text(
        f"settings {{ disable_plugins = {how} }}\n"
        'output o { type = "stdout" }\nroute all { to o }\n'
    )
    assert main(["check", "-c", str(conf)]) == 0
    assert "W40" not in capsys.readouterr().err
    assert main(["plugins", "-c", str(conf), "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert not marker.exists()
    if "DSROUTER_DISABLE_PLUGIN_AUTOLOAD" in env:
        assert "loud" not in listed
    else:
        assert listed["loud"]["disabled"]


def test_disabling_a_name_nothing_has_is_a_warning_at_its_position(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text(
        'settings { disable_plugins = ["webhok"] }\noutput o { type = "stdout" }\n'
        "route all { to o }\n"
    )
    assert main(["check", "-c", str(conf)]) == 0
    err = capsys.readouterr().err
    assert "c.conf:1:31: warning[W402]: no installed plugin is named 'webhok'" in err
    assert "did you mean 'webhook'" in err


def test_a_disabled_builtin_takes_its_types_with_it(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text(
        'settings { disable_plugins = ["webhook"] }\n'
        'output o { type = "webhook", url = "https://example.com/" }\nroute all { to o }\n'
    )
    assert main(["check", "-c", str(conf)]) == 1
    assert 'unknown output type "webhook"' in capsys.readouterr().err


def test_plugins_lists_distributions_registrations_errors_and_human_units(install, capsys):
    install("dsrouter-good", OUTPUT.format(name="good"), ep="good")
    install("dsrouter-broken", "raise SystemExit(3)\n", ep="broken")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert f"dsrouter plugin API {API_VERSION}" in out
    assert "plugin good  dsrouter-good 1.2.3  entry point\n  output good — test output" in out
    assert "plugin broken  dsrouter-broken 1.2.3  entry point\n  ERROR: cannot import" in out
    tcp = out[out.index("  input tcp") : out.index("  input tls")]
    assert " 64KiB " in tcp and " 5m " in tcp and "65536" not in tcp and "300.0" not in tcp
    assert '"auto"|"octet-counted"|"lf"' in tcp  # choices shown

    assert main(["plugins", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["api_version"] == API_VERSION
    plugins = {p["name"]: p for p in doc["plugins"]}
    assert plugins["good"] | {"module": None} == {
        "name": "good",
        "distribution": "dsrouter-good",
        "version": "1.2.3",
        "module": None,
        "builtin": False,
        "outputs": ["good"],
        "inputs": [],
        "functions": [],
        "disabled": None,
        "error": None,
    }
    assert plugins["broken"]["error"].endswith("SystemExit: 3")
    assert plugins["webhook"]["builtin"] and plugins["webhook"]["outputs"] == ["webhook"]
    timeout = next(o for o in doc["outputs"]["webhook"]["options"] if o["name"] == "timeout")
    assert timeout == {
        "name": "timeout",
        "kind": "duration",
        "required": False,
        "default": "10s",
        "choices": [],
        "secret": False,
        "help": timeout["help"],
    }
    statuses = next(
        o for o in doc["outputs"]["webhook"]["options"] if o["name"] == "retry_statuses"
    )
    assert statuses["default"] == "[408, 429, 500, 502, 503, 504]"
    url = next(o for o in doc["outputs"]["webhook"]["options"] if o["name"] == "url")
    assert url["required"] and url["secret"]
    batch = next(o for o in doc["delivery_options"] if o["name"] == "queue_max_bytes")
    assert batch["default"] == "256MiB"
