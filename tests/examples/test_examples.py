"""Shipped example configurations stay valid and their own test blocks pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrouter.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "examples").glob("*.conf"))


def test_there_are_examples():
    assert CONFIGS


@pytest.mark.parametrize("conf", CONFIGS, ids=[c.name for c in CONFIGS])
def test_example_checks_and_its_tests_pass(conf, capsys):
    assert main(["check", "-c", str(conf)]) == 0
    assert main(["test", "-c", str(conf)]) == 0
    assert " 0 failed" in capsys.readouterr().out
