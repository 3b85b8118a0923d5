"""The README's configuration example is a valid configuration whose test block passes."""

from __future__ import annotations

import re
from pathlib import Path

from dsrouter.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _config_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def test_readme_configuration_checks_and_its_test_passes(tmp_path, capsys):
    conf = tmp_path / "readme.conf"
    conf.write_text(_config_example())
    assert main(["check", "-c", str(conf)]) == 0
    assert main(["test", "-c", str(conf)]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_language_reference_example_checks(tmp_path):
    text = (ROOT / "docs" / "language.md").read_text()
    example = re.search(r"```\n(.*?)```", text, re.S).group(1)
    conf = tmp_path / "language.conf"
    conf.write_text(example)
    assert main(["check", "-c", str(conf)]) == 0
