"""One page per built-in output in docs/outputs/: it names every option of its type, and its
first example configuration passes `check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsrouter.cli.main import main
from dsrouter.plugin import Plugins

PAGES = Path(__file__).resolve().parents[2] / "docs" / "outputs"
TYPES = Plugins(entry_points=False).outputs


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_page_names_every_option(kind):
    page = PAGES / f"{kind}.md"
    assert page.exists(), f"docs/outputs/{kind}.md is missing"
    text = page.read_text()
    missing = [o.name for o in TYPES[kind].options if f"`{o.name}`" not in text]
    assert not missing, f"{page.name} does not document {missing}"


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_first_example_checks(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAGER_URL", "https://pager.example.com/hook")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/x")
    text = (PAGES / f"{kind}.md").read_text()
    block = next(b for b in re.findall(r"```\w*\n(.*?)```", text, re.S) if "output " in b)
    if "route " not in block:
        name = re.search(r"output (\w+)", block).group(1)
        block += f"\nroute all {{ to {name} }}\n"
    for n, wanted in enumerate(re.findall(r'file\("([^"]+)"\)', block)):
        secret = tmp_path / f"secret{n}"  # the page's secret files, made up here
        secret.write_text("s3cret\n")
        block = block.replace(f'file("{wanted}")', f'file("{secret}")')
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(block)
    conf.chmod(0o600)
    assert main(["check", "-c", str(conf)]) == 0, capsys.readouterr().err
