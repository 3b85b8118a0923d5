"""LEEF 1.0 / 2.0: delimiter forms, the omitted delimiter field, attribute quirks."""

from __future__ import annotations

import pytest

from dsrouter.ds.leef import decode_delimiter, parse_leef

HEAD = ["2.0", "Trend Micro", "Deep Security Manager", "11.0.221", "851"]
BASE = "LEEF:2.0|Trend Micro|Deep Security Manager|11.0.221|851|"

LINES = [
    (
        "omitted delimiter (what DS sends)",
        BASE + "cat=System\tname=Recon\tsev=6",
        {"cat": "System", "name": "Recon", "sev": "6"},
    ),
    ("explicit caret", BASE + "^|cat=System^name=Recon", {"cat": "System", "name": "Recon"}),
    ("hex x09", BASE + "x09|cat=System\tname=Recon", {"cat": "System", "name": "Recon"}),
    ("hex 0x09", BASE + "0x09|cat=System\tname=Recon", {"cat": "System", "name": "Recon"}),
    ("hex x08", BASE + "x08|cat=A\bname=B", {"cat": "A", "name": "B"}),
    ("backslash t", BASE + "\\t|cat=A\tname=B", {"cat": "A", "name": "B"}),
    ("empty delimiter field means tab", BASE + "|cat=A\tname=B", {"cat": "A", "name": "B"}),
    ("value with spaces and pipes", BASE + "desc=a b | c\tx=1", {"desc": "a b | c", "x": "1"}),
    (
        "piece without a key joins the value",
        BASE + "cn1Label=Host\tID dvc=1\tx=2",
        {"cn1Label": "Host\tID dvc=1", "x": "2"},
    ),
    (
        "escaped backslashes",
        BASE + "filePath=C:\\\\Windows\\\\virus.exe",
        {"filePath": "C:\\Windows\\virus.exe"},
    ),
    ("empty value", BASE + "a=\tb=2", {"a": "", "b": "2"}),
    ("trailing whitespace", BASE + "a=1\tb=2 \r\n", {"a": "1", "b": "2"}),
    (
        "space after colon",
        "LEEF: 2.0|Trend Micro|Deep Security Manager|11.0.221|851|a=1",
        {"a": "1"},
    ),
]


@pytest.mark.parametrize(("line", "attrs"), [c[1:] for c in LINES], ids=[c[0] for c in LINES])
def test_leef_2(line: str, attrs: dict[str, str]) -> None:
    head, got, error = parse_leef(line)
    assert error is None
    assert head == HEAD
    assert got == attrs


def test_leef_1_has_no_delimiter_field() -> None:
    head, attrs, error = parse_leef("LEEF:1.0|V|P|1|20|src=1.2.3.4\tsrcPort=80")
    assert error is None
    assert head == ["1.0", "V", "P", "1", "20"]
    assert attrs == {"src": "1.2.3.4", "srcPort": "80"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [("LEEF:2.0|V|P|1", "incomplete"), ("LEEF:2.0|V|P|1|2|nonsense|a=1", "delimiter")],
    ids=["too few fields", "bad delimiter"],
)
def test_leef_problems(line: str, reason: str) -> None:
    _, _, error = parse_leef(line)
    assert error is not None and reason in error


@pytest.mark.parametrize(
    ("spec", "char"),
    [
        ("^", "^"),
        ("x09", "\t"),
        ("0x09", "\t"),
        ("X7C", "|"),
        ("\\x5e", "^"),
        ("\\t", "\t"),
        ("abc", None),
        ("0xZZ", None),
    ],
)
def test_decode_delimiter(spec: str, char: str | None) -> None:
    assert decode_delimiter(spec) == char


def test_many_keyless_pieces_stay_linear() -> None:
    _, attrs, _ = parse_leef(BASE + "a=1" + "\tx" * 100_000)
    assert len(attrs["a"]) == 1 + 2 * 100_000
