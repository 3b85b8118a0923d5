"""docs/errors.md: every "before" example yields its section's code, every "after" passes `check`.

An example is the run of lines in a code block up to a line marked ``# before`` or ``# after``.
Each is checked through ``dsrouter check`` in a folder of its own, with only the context an
excerpt leaves out: the outputs ``archive`` and ``pager`` and the route ``critical`` when it
uses them without defining them, and (but in E301's own examples) a final route when it has
none or its last route has a ``when`` or ``continue``. ``secrets/token`` and ``rules/a.rules`` exist there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsrouter.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SECTION = re.compile(r"^## ([EW]\d{3}) ", re.M)
MARK = re.compile(r"#\s*(before|after)\b")
DIAG = re.compile(r":\d+:\d+: (?:error|warning)\[([EW]\d{3})\]")
#: Examples that are not configuration text, with what the test checks instead.
NOT_CONFIG = ("dsrouter ", "# main.conf", "DSROUTER_")


def examples() -> list[tuple[str, str, str]]:
    """(code, "before" or "after", example text) for every example in docs/errors.md."""
    text = (ROOT / "docs" / "errors.md").read_text()
    found = []
    heads = list(SECTION.finditer(text))
    for head, nxt in zip(heads, [*heads[1:], None], strict=True):
        body = text[head.end() : nxt.start() if nxt else len(text)]
        for block in re.findall(r"^```\n(.*?)^```", body, re.M | re.S):
            pending: list[str] = []
            for line in block.splitlines():
                pending.append(line)
                m = MARK.search(line)
                if m:
                    example = "\n".join(p for p in pending if p.strip())
                    found.append((head.group(1), m.group(1), example))
                    pending = []
    return found


def with_context(example: str, code: str) -> str:
    defined = set(re.findall(r"\b(?:output|route)\s+(\w+)", example))
    used = set(re.findall(r"\bto\s+([\w, ]+)", example))
    names = {n.strip() for group in used for n in group.split(",")}
    pre = [
        f'output {name} {{ type = "stdout" }}'
        for name in ("archive", "pager")
        if name not in defined and (name in names or f'"{name}"' in example)
    ]
    if "critical" not in defined and '"critical"' in example:
        pre.append("route critical { when severity >= 8; to pager; continue }")
        if "pager" not in defined and not any("output pager" in p for p in pre):
            pre.insert(0, 'output pager { type = "stdout" }')
    routes = re.findall(r"^route\s+\w+\s*\{(.*)\}", "\n".join([*pre, example]), re.M)
    outputs = re.findall(r"^output\s+(\w+)", "\n".join([*pre, example]), re.M)
    post = []
    if code in ("E301", "E103"):  # E103: nothing may follow the unfinished block
        pass
    elif not routes:
        if not outputs:
            pre.append('output archive { type = "stdout" }')
        post.append(f"route all {{ to {(outputs or ['archive'])[0]} }}")
    elif routes and ("when" in routes[-1] or "continue" in routes[-1]):
        if "archive" not in outputs:
            pre.append('output archive { type = "stdout" }')
        post.append("route _unmatched { to archive }")
    return "\n".join([*pre, example, *post]) + "\n"


def check(text: str, folder: Path, capsys) -> tuple[int, list[str]]:
    (folder / "secrets").mkdir(exist_ok=True)
    (folder / "secrets" / "token").write_text("s3cret\n")
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "a.rules").write_text("")
    conf = folder / "dsrouter.conf"
    conf.write_text(text)
    capsys.readouterr()
    code = main(["check", "-c", str(conf)])
    return code, DIAG.findall(capsys.readouterr().err)


CASES = [e for e in examples() if not e[2].lstrip().startswith(NOT_CONFIG)]


def test_every_section_has_a_checked_before_and_after():
    codes = set(SECTION.findall((ROOT / "docs" / "errors.md").read_text()))
    sides = {(code, side) for code, side, _ in examples()}
    assert {(c, s) for c in codes for s in ("before", "after")} <= sides
    assert len(CASES) >= 2 * len(codes) - 6  # E214, E220 and W401 are shell/comment examples


@pytest.mark.parametrize(("code", "side", "example"), CASES, ids=[f"{c}-{s}" for c, s, _ in CASES])
def test_documented_example(code, side, example, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PAGER_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    status, codes = check(with_context(example, code), tmp_path, capsys)
    if side == "before":
        assert code in codes, f"{code} example yields {codes or 'no diagnostic'}"
    else:
        assert (status, codes) == (0, []), f"{code} 'after' example does not pass check"
