"""docs/cluster.md: its configuration example checks, and its settings table is complete."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from dsrouter.dsl.checker import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docs" / "cluster.md").read_text()


def test_the_settings_table_names_every_cluster_setting_and_nothing_else():
    table = TEXT.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(cluster_\w+)` \|", table, re.M))
    assert documented == {k for k in SETTINGS if k.startswith("cluster_")}


def test_the_example_configuration_checks(tmp_path, monkeypatch):
    example = TEXT.split("```\nsettings {", 1)[1].split("```", 1)[0]
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(
        "settings {"
        + example
        + 'input tcp { type = "tcp"  listen = "127.0.0.1:6514" }\n'
        + 'output archive { type = "file"  path = "archive.jsonl" }\n'
        + "route all { to archive }\n"
    )
    (tmp_path / "nats-ca.pem").write_text("")
    env = {"DSROUTER_NATS_CREDS": str(tmp_path / "x.creds"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "dsrouter", "check", "-c", str(conf)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 warning(s)" in run.stdout
