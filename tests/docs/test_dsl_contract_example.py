"""The example configuration of the contract (../shared/DSL.md) passes `check`, and its test
block passes `dsrouter test`: every type and option it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsrouter.cli.main import main

DSL = Path(__file__).resolve().parents[3] / "shared" / "DSL.md"


@pytest.fixture
def example(tmp_path, monkeypatch):
    if not DSL.exists():
        pytest.skip("../shared/DSL.md is not beside the repository")
    text = re.search(r"```\n(settings \{.*?)```", DSL.read_text(), re.S).group(1)
    (tmp_path / "rules" / "deep-security").mkdir(parents=True)
    (tmp_path / "rules" / "deep-security" / "none.rules").write_text("")
    conf = tmp_path / "conf" / "dsrouter.conf"  # its include is "../rules/..."
    conf.parent.mkdir()
    conf.write_text(text)
    monkeypatch.setenv("PAGER_URL", "https://pager.example.com/hook")
    return conf


def test_contract_example_checks(example, capsys):
    assert main(["check", "-c", str(example)]) == 0, capsys.readouterr().err


def test_contract_example_test_block_passes(example, capsys):
    assert main(["test", "-c", str(example)]) == 0, capsys.readouterr()
