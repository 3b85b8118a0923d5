"""CEF header and extension parsing: the quirks of FORMATS §4, escaping, hostile input."""

from __future__ import annotations

import pytest

from dsrouter.ds.cef import parse_cef, parse_extension, unescape_value

HEAD = "CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1001251|Rule|6|"

EXTENSIONS = [
    ("simple", "a=1 b=2", {"a": "1", "b": "2"}),
    (
        "value with spaces",
        "msg=User signed in from 1.2.3.4 x=1",
        {"msg": "User signed in from 1.2.3.4", "x": "1"},
    ),
    (
        "parens and brackets",
        "target=10.10.10.10 (thex-higs-prd) [i-0e2def270ea5ed44d] msg=D",
        {"target": "10.10.10.10 (thex-higs-prd) [i-0e2def270ea5ed44d]", "msg": "D"},
    ),
    (
        "quotes kept",
        'cs1="CVE-2022-30522" cs1Label=DPI Note',
        {"cs1": '"CVE-2022-30522"', "cs1Label": "DPI Note"},
    ),
    (
        "raw pipes in a value",
        "cs6=Image | Name | ID cs6Label=Container",
        {"cs6": "Image | Name | ID", "cs6Label": "Container"},
    ),
    (
        "empty value",
        "cs3= cs3Label=Fragmentation Bits",
        {"cs3": "", "cs3Label": "Fragmentation Bits"},
    ),
    ("empty last value", "a=1 TrendMicroDsTenantId=", {"a": "1", "TrendMicroDsTenantId": ""}),
    (
        "double space between pairs",
        "cs5Label=DPI Stream Position  cs1=x",
        {"cs5Label": "DPI Stream Position", "cs1": "x"},
    ),
    (
        "double space inside a value",
        "target=rule (ATT&CK  T1112) a=1",
        {"target": "rule (ATT&CK  T1112)", "a": "1"},
    ),
    ("trailing space", "a=1 msg=Suspicious ", {"a": "1", "msg": "Suspicious"}),
    ("trailing CRLF", "a=1\r\n", {"a": "1"}),
    (
        "escaped equals",
        "TrendMicroDsPacketData=AAB\\=\\= x=q\\=1",
        {"TrendMicroDsPacketData": "AAB==", "x": "q=1"},
    ),
    (
        "escaped backslashes",
        "filePath=C:\\\\Users\\\\eicar.exe",
        {"filePath": "C:\\Users\\eicar.exe"},
    ),
    (
        "unknown escapes keep the backslash",
        "filePath=c:\\windows\\message.dll",
        {"filePath": "c:\\windows\\message.dll"},
    ),
    (
        "DS double-escaped newline stays literal",
        "msg=Alert\\\\nSubject: x",
        {"msg": "Alert\\nSubject: x"},
    ),
    ("escaped newline and CR", "msg=a\\nb\\rc", {"msg": "a\nb\rc"}),
    ("escaped pipe", "msg=a\\|b", {"msg": "a|b"}),
    ("key charset", "ad.x-y[0]_z=1", {"ad.x-y[0]_z": "1"}),
    (
        "escaped equals does not start a key",
        "cs1=param q\\=1 detected",
        {"cs1": "param q=1 detected"},
    ),
    ("leading spaces", "  a=1", {"a": "1"}),
    ("empty extension", "", {}),
    ("later duplicate wins", "a=1 a=2", {"a": "2"}),
    ("base64 padding", "p=R0VU\\=", {"p": "R0VU="}),
]


@pytest.mark.parametrize(
    ("ext", "pairs"), [c[1:] for c in EXTENSIONS], ids=[c[0] for c in EXTENSIONS]
)
def test_extension_quirks(ext: str, pairs: dict[str, str]) -> None:
    assert parse_extension(ext) == (pairs, None)
    head, got, error = parse_cef(HEAD + ext)
    assert head is not None and error is None
    assert got == pairs


HEADERS = [
    ("plain", "CEF:0|V|P|1.0|100|Name|5|a=b", ["0", "V", "P", "1.0", "100", "Name", "5"]),
    ("space after colon", "CEF: 0|V|P|1.0|100|Name|5|", ["0", "V", "P", "1.0", "100", "Name", "5"]),
    ("escaped pipe in name", "CEF:0|V|P|1|2|a\\|b|3|", ["0", "V", "P", "1", "2", "a|b", "3"]),
    ("escaped backslash", "CEF:0|V|P|1|2|a\\\\|3|", ["0", "V", "P", "1", "2", "a\\", "3"]),
    ("other backslash kept", "CEF:0|V|P|1|2|c:\\x|3|", ["0", "V", "P", "1", "2", "c:\\x", "3"]),
    ("empty fields", "CEF:0||||||| ", ["0", "", "", "", "", "", ""]),
    (
        "placeholder version",
        "CEF:0|Trend Micro|DSA|<DSA version>|20|n|0|",
        ["0", "Trend Micro", "DSA", "<DSA version>", "20", "n", "0"],
    ),
]


@pytest.mark.parametrize(("line", "head"), [c[1:] for c in HEADERS], ids=[c[0] for c in HEADERS])
def test_header_fields(line: str, head: list[str]) -> None:
    got, _, error = parse_cef(line)
    assert error is None
    assert got == head


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("CEF:0|V|P|1|2", "incomplete"),
        ("CEF:|V|P|1|2|n|3|", "version"),
        ("CEF:0|V|P|1|2|n|3|junk before a=1", "junk"),
        ("CEF:0|V|P|1|2|n|3|no pairs here", "no key=value"),
    ],
    ids=["too few fields", "no version", "junk before the first key", "no pairs"],
)
def test_header_and_extension_problems(line: str, reason: str) -> None:
    _, _, error = parse_cef(line)
    assert error is not None and reason in error


def test_junk_before_the_first_key_keeps_the_pairs() -> None:
    _, pairs, _ = parse_cef("CEF:0|V|P|1|2|n|3|junk a=1 b=2")
    assert pairs == {"a": "1", "b": "2"}


UNESCAPES = [
    ("nothing", "abc", "abc"),
    ("backslash pair then equals", "\\\\\\=", "\\="),
    ("escaped backslash before n", "x\\\\\\n", "x\\\n"),
    ("lone trailing backslash", "a\\\\\\", "a\\\\"),
    ("escaped backslash then letter n", "\\\\n", "\\n"),
    ("four backslashes", "\\\\\\\\", "\\\\"),
]


@pytest.mark.parametrize(
    ("raw", "value"), [c[1:] for c in UNESCAPES], ids=[c[0] for c in UNESCAPES]
)
def test_unescape_value(raw: str, value: str) -> None:
    assert unescape_value(raw) == value


# Adversarial input: the regexes are linear by construction; these sizes would take minutes
# if any of them backtracked, and they finish in milliseconds.
HOSTILE = {
    "backslashes in the header": "CEF:0|" + "\\" * 100_001,
    "backslashes in a value": HEAD + "a=" + "\\" * 100_001,
    "a= runs": HEAD + "a=" * 50_000,
    "pipes": "CEF:0|" + "|" * 100_000,
    "spaces then no key": HEAD + "a=1" + " " * 100_000 + "x",
    "key chars without equals": HEAD + "a=1 " + "k" * 100_000,
    "many short keys": HEAD + " ".join(f"k{i}=v" for i in range(20_000)),
}


@pytest.mark.parametrize("line", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_lines_parse(line: str) -> None:
    head, pairs, _ = parse_cef(line)
    assert head is None or len(head) == 7
    assert isinstance(pairs, dict)
