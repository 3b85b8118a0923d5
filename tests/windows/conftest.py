"""Run the code under test on a real Windows CPython (with pywin32) under Wine.

``win`` stages this checkout's ``dsrouter`` (``router/`` and ``plugins/``) into a folder of its
own once per session and returns a :class:`WinPython` whose ``run`` / ``popen`` start
``python.exe`` with that folder first on ``sys.path`` (the embeddable build ignores
``PYTHONPATH``). Standard streams are always pipes: under Wine 8.0 a regular file or a closed
stdin aborts the interpreter's start-up (``../shared/windows/README.md``, gotchas).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Wine's Event Log trace channels (``../shared/windows/README.md``).
EVENTLOG_TRACE = "-all,fixme+advapi,trace+eventlog,warn+eventlog,err+eventlog"

BOOT = """\
import runpy, sys
sys.path.insert(0, {stage!r})
args = sys.argv[1:]
if args[:1] == ["-m"]:
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
"""


def winpath(path: Path | str) -> str:
    """The Windows name of a Linux path under Wine's ``Z:`` drive."""
    return "Z:" + str(Path(path).resolve()).replace("/", "\\")


class WinPython:
    """The Windows interpreter with this checkout's dsrouter importable."""

    def __init__(self, python: Path, prefix: Path, stage: Path) -> None:
        self.python, self.prefix, self.stage = python, prefix, stage
        self.boot = stage / "boot.py"

    def env(self, winedebug: str = "-all", **extra: str) -> dict[str, str]:
        return dict(
            os.environ,
            WINEPREFIX=str(self.prefix),
            WINEDEBUG=winedebug,
            WINEDLLOVERRIDES="mscoree,mshtml=",
            PYTHONUTF8="1",
            **extra,
        )

    def argv(self, *args: str) -> list[str]:
        """``wine python.exe -X utf8 boot.py ARGS``: ARGS is ``-m MODULE ...`` or ``SCRIPT ...``."""
        return ["wine", str(self.python), "-X", "utf8", winpath(self.boot), *args]

    def run(
        self, *args: str, timeout: float = 120, winedebug: str = "-all", cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            stdin=subprocess.PIPE,
            text=True,
            errors="replace",
            timeout=timeout,
            env=self.env(winedebug),
            cwd=cwd,
            check=False,
        )

    def popen(
        self, *args: str, winedebug: str = "-all", cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(winedebug),
            cwd=cwd,
        )


def stage_dsrouter(stage: Path) -> None:
    """Lay this checkout out as the installed package: ``dsrouter`` and ``dsrouter.plugins``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "router", stage / "dsrouter", ignore=ignore)
    shutil.copytree(REPO / "plugins", stage / "dsrouter" / "plugins", ignore=ignore)


@pytest.fixture(scope="session")
def win(wine_rig, tmp_path_factory) -> WinPython:
    stage = tmp_path_factory.mktemp("winstage")
    stage_dsrouter(stage)
    (stage / "boot.py").write_text(BOOT.format(stage=winpath(stage)))
    py = WinPython(wine_rig.python, wine_rig.prefix, stage)
    probe = py.run("-m", "dsrouter", "--version", timeout=180)
    assert probe.returncode == 0, (
        f"dsrouter does not start on Windows CPython: {probe.stderr[-2000:]}"
    )
    return py
