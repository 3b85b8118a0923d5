"""Lifecycle hooks and plugin problems through the real daemon and a real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dsrouter.samples import sample_lines

from ..plugin.fakedist import make_distribution
from .conftest import wait_for_lines

HOOKS = """\
import json, pathlib
from dsrouter.api import hookimpl

LOG = pathlib.Path({log!r})

def _note(what, context):
    with LOG.open("a") as f:
        f.write(json.dumps([what, str(context.data_dir), str(context.config_dir)]) + "\\n")

@hookimpl
def dsrouter_startup(context):
    _note("startup", context)

@hookimpl
def dsrouter_shutdown(context):
    _note("shutdown", context)
"""

RAISES = """\
from dsrouter.api import hookimpl

@hookimpl
def dsrouter_startup(context):
    raise RuntimeError("cannot reach the asset database")
"""


def test_startup_and_shutdown_hooks_run_once_each_and_a_raising_one_is_contained(
    start_daemon, tmp_path, monkeypatch
):
    log = tmp_path / "hooks.log"
    root = make_distribution(
        tmp_path / "site",
        "dsrouter-hooks",
        {"dsr_hooks": HOOKS.format(log=str(log)), "dsr_raises": RAISES, "dsr_broken": "1/0\n"},
        {"hooks": "dsr_hooks", "raises": "dsr_raises", "broken": "dsr_broken"},
    )
    monkeypatch.setenv("PYTHONPATH", str(root))
    conf = (
        'input t { type = "tcp", listen = "127.0.0.1:0" }\n'
        'output a { type = "file", path = "a.jsonl" }\nroute all { to a }\n'
    )
    daemon = start_daemon(conf)
    assert [json.loads(x)[0] for x in log.read_text().splitlines()] == ["startup"]
    port = daemon.ports["t"]
    sent = subprocess.run(
        [sys.executable, "-m", "dsrouter", "send", f"127.0.0.1:{port}", "--sample"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert b"sent" in sent.stdout
    wait_for_lines("dsrouter-data/a.jsonl", len(sample_lines()), tmp_path)

    # A changed disable_plugins is refused on reload: plugins are imported once.
    (tmp_path / "dsrouter.conf").write_text('settings { disable_plugins = ["hooks"] }\n' + conf)
    reload = subprocess.run(
        [sys.executable, "-m", "dsrouter", "reload", "-c", str(tmp_path / "dsrouter.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert reload.returncode == 1, reload
    assert "disable_plugins cannot change on reload; restart the daemon" in (
        reload.stdout + reload.stderr
    )

    code, err = daemon.stop()
    assert code == 0, err
    notes = [json.loads(x) for x in log.read_text().splitlines()]
    assert [n[0] for n in notes] == ["startup", "shutdown"]
    assert notes[0][1] == str(tmp_path / "dsrouter-data") and notes[0][2] == str(tmp_path)
    assert "plugin_hook_failed" in err and "cannot reach the asset database" in err
    assert "dsrouter-hooks 0.1.0" in err  # the failing plugin's distribution is named
    assert "plugin_load_failed" in err and "ZeroDivisionError" in err


BAD_INPUT = """\
from dsrouter.api import InputType, Option, hookimpl

class Listener:
    def __init__(self, name, options, sink):
        self.address = ("127.0.0.1", 0)
        self.stats = {}
    async def start(self):
        raise KeyError("listen")
    def close(self):
        pass

@hookimpl
def dsrouter_register_inputs(register):
    register(InputType("flaky", Listener, (Option("listen", "address"),)))
"""


def test_an_input_plugin_that_raises_in_start_is_a_one_line_startup_error(tmp_path):
    root = make_distribution(
        tmp_path / "site", "dsrouter-flaky", {"dsr_flaky": BAD_INPUT}, {"flaky": "dsr_flaky"}
    )
    conf = tmp_path / "c.conf"
    conf.write_text(
        'input f { type = "flaky", listen = "127.0.0.1:0" }\n'
        'output a { type = "file", path = "a.jsonl" }\nroute all { to a }\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dsrouter", "run", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert (
        "dsrouter: cannot start: input 'f' (flaky, plugin 'flaky' (dsrouter-flaky 0.1.0)) "
        "failed to start: KeyError: 'listen'"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr
