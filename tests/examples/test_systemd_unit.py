"""examples/systemd: the unit passes `systemd-analyze verify` (where systemd is installed) with the
hardening the security docs promise, and its config passes `dsrouter check`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dsrouter.cli import main

UNIT = Path(__file__).resolve().parents[2] / "examples" / "systemd" / "dsrouter.service"


def settings() -> dict[str, str]:
    out = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_unit_keeps_the_promised_hardening():
    s = settings()
    assert s["User"] == "dsrouter" and s["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert s["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict"
    assert s["ReadWritePaths"] == "/var/lib/dsrouter" and s["KillSignal"] == "SIGTERM"


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    launcher = tmp_path / "dsrouter"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m dsrouter "$@"\n')
    launcher.chmod(0o755)
    unit = tmp_path / "dsrouter.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/dsrouter", str(launcher)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [x for x in done.stderr.splitlines() if "dsrouter.service" in x]
    assert done.returncode == 0 and not problems, done.stderr


def test_its_config_checks(capsys):
    assert main(["check", "-c", str(UNIT.with_name("dsrouter.conf"))]) == 0, capsys.readouterr()
