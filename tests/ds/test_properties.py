"""Property tests: the parser never raises, output is JSON-safe, CEF escaping round-trips."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from dsrouter.ds import parse_batch, parse_message
from dsrouter.ds.catalog import INT_KEYS, MODULES, RESERVED
from dsrouter.ds.normalize import _fast, _slow

FORMATS = {"cef", "leef", "syslog", "unknown"}
PIECES = st.sampled_from(
    [
        "<134>",
        "<13>1 ",
        "Nov 27 23:18:32 ",
        "2021-10-06T01:29:43-07:00 ",
        "host ",
        "tag: ",
        "CEF:0|",
        "CEF: 0|",
        "LEEF:2.0|",
        "LEEF:1.0|",
        "|",
        "\\",
        "\\|",
        "\\=",
        "=",
        " ",
        "  ",
        "a=",
        "cn1=",
        "spt=",
        "dvc=",
        "module=",
        "\t",
        "x09|",
        "[",
        "]",
        '"',
        "-",
        "12",
        "\ufeff",
        "Deep Security Agent|",
        "Deep Security Manager|",
        "4000000|",
        "Trend Micro|",
        "é",
    ]
)


def check(ev: dict) -> None:
    assert ev["format"] in FORMATS
    assert ev["module"] in MODULES
    assert isinstance(ev["syslog"], dict)
    assert "parser failure" not in ev.get("parse_error", "")  # no internal exception
    orjson.dumps(ev)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_an_event(text: str) -> None:
    check(parse_message(text))


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=40).map("".join))
def test_syslog_and_cef_shaped_text_gives_an_event(text: str) -> None:
    ev = parse_message(text)
    check(ev)
    assert ev["raw"] == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_any_bytes_give_events(messages: list[bytes]) -> None:
    events = parse_batch(messages, "in", "peer", "now")
    assert len(events) == len(messages)
    for ev in events:
        check(ev)


def escape_header(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|")


def escape_value(s: str) -> str:
    return s.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


KEYS = st.from_regex(r"[a-z][A-Za-z0-9_.\-]{0,11}", fullmatch=True).filter(
    lambda k: k not in RESERVED and k not in INT_KEYS
)
VALUES = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30).filter(
    lambda v: v == v.rstrip()  # trailing whitespace before a separator is not kept (§4.7)
)
HEADER = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=20
).filter(lambda v: v == v.strip())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=8), HEADER, st.booleans())
def test_cef_escape_round_trip(pairs: dict[str, str], name: str, envelope: bool) -> None:
    ext = " ".join(f"{k}={escape_value(v)}" for k, v in pairs.items())
    line = f"CEF:0|Trend Micro|Deep Security Agent|20.0|4000000|{escape_header(name)}|6|{ext}"
    if envelope:
        line = "<134>Nov 27 23:18:32 web-07 " + line
    ev = parse_message(line)
    assert "parse_error" not in ev
    assert ev["name"] == name
    assert ev["module"] == "anti_malware"
    assert {k: ev[k] for k in pairs} == pairs


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(KEYS | st.sampled_from(sorted(INT_KEYS)), VALUES, min_size=1, max_size=8))
def test_fast_and_careful_paths_agree(pairs: dict[str, str]) -> None:
    ext = " ".join(f"{k}={escape_value(v)}" for k, v in pairs.items())
    line = f"<134>Nov 27 23:18:32 web-07 CEF:0|Trend Micro|Deep Security Agent|1|21|n|5|{ext}"
    receipt = ("r", "p", "i", line)
    fast = _fast(line, receipt, 1_764_285_512.0, {})
    careful = _slow(line, receipt, 1_764_285_512.0)
    assert fast is None or fast == careful


#: Header field texts with the whitespace and control characters real senders add.
HEADER_FIELD = st.lists(
    st.sampled_from(
        ["8", "10", "0", "21", "Trend Micro", "high", " ", "\t", "\x00", "\x7f", "é", "-"]
    ),
    max_size=4,
).map("".join)
EXT_TEXT = st.lists(
    st.sampled_from(["cn1=12", "dvchost=web-01", "spt=80", "a=b", " ", "  ", "\t", "\\", "x=\\="]),
    max_size=6,
).map(" ".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(HEADER_FIELD, min_size=6, max_size=6), EXT_TEXT, st.sampled_from(["0", "1"]))
def test_fast_and_careful_paths_agree_on_header_whitespace(fields, ext, version) -> None:
    line = "<134>Nov 27 23:18:32 web-07 CEF:" + version + "|" + "|".join(fields) + "|" + ext
    receipt = ("r", "p", "i", line)
    fast = _fast(line, receipt, 1_764_285_512.0, {})
    careful = _slow(line, receipt, 1_764_285_512.0)
    assert fast is None or fast == careful


def test_severity_with_a_trailing_space_is_read_on_both_paths() -> None:
    line = "<134>Nov 27 23:18:32 web-07 CEF:0|Trend Micro|Deep Security Agent|1|1000552|XSS|8 |src=1.2.3.4"
    careful_line = line + " msg=a\\=b"  # a backslash sends the event down the careful path
    assert parse_message(line)["severity"] == 8
    assert parse_message(careful_line)["severity"] == 8


def test_extension_keys_are_capped_on_both_paths() -> None:
    from dsrouter.ds.normalize import MAX_KEYS

    head = "<134>Nov 27 23:18:32 web-07 CEF:0|Trend Micro|Deep Security Agent|1|21|n|5|"
    for count in (MAX_KEYS, MAX_KEYS + 1, 5000):
        line = head + " ".join(f"k{i}=v{i}" for i in range(count))
        ev = parse_message(line)
        kept = [k for k in ev if k.startswith("k") and k[1:].isdigit()]
        assert len(kept) == min(count, MAX_KEYS)
        assert ("parse_error" in ev) is (count > MAX_KEYS)
        assert ev["raw"] == line
        receipt = ("r", "p", "i", line)
        fast = _fast(line, receipt, 1_764_285_512.0, {})
        assert fast is None or fast == _slow(line, receipt, 1_764_285_512.0)


def test_the_key_sequence_cache_is_bounded_and_types_ints_either_way() -> None:
    from dsrouter.ds import normalize

    head = "<134>Nov 27 23:18:32 web-07 CEF:0|Trend Micro|Deep Security Agent|1|21|n|5|"
    for i in range(3 * normalize._SHAPES):  # distinct key sequences, as a hostile sender sends
        ev = parse_message(f"{head}spt={i} k{i}=v dpt=7")
        assert (ev["spt"], ev["dpt"], ev[f"k{i}"]) == (i, 7, "v")
        assert len(normalize._shapes) <= normalize._SHAPES
    line = f"{head}cnt=3 big={'x' * normalize._SHAPE_TEXT}"
    for _ in range(2):  # too long to be remembered: typed all the same, twice
        assert parse_message(line)["cnt"] == 3
    assert ("cnt", "big") not in normalize._shapes


#: The envelopes the fast path takes: RFC 3164 and ISO stamps, RFC 5424 with or without
#: structured data and BOM (each ends with the space before ``CEF:``).
ENVELOPES = st.sampled_from(
    [
        "<134>Nov 27 23:18:32 web-07 ",
        "<86>Feb  3 01:02:03 10.0.0.7 ",
        "<0>2021-10-06T01:29:43-07:00 dsm.example.com ",
        "<191>2026-11-27T23:18:32.123456+00:00 WIN-AD-01 ",
        "<134>1 2026-11-27T23:18:32Z web-07 CEF - - - ",
        '<134>1 2026-11-27T23:18:32Z web-07 app 42 ID7 [ds@1 a="1" b="x\\"y"] \ufeff',
        "<14>1 - - - - - - ",
    ]
)
#: (product, signature id) pairs, one or more per module, so every alias table is used.
SOURCES = st.sampled_from(
    [
        ("Deep Security Agent", "20"),
        ("Deep Security Agent", "123"),
        ("Deep Security Agent", "1005402"),
        ("Deep Security Agent", "2002779"),
        ("Deep Security Agent", "3003005"),
        ("Deep Security Agent", "4000000"),
        ("Deep Security Agent", "5000000"),
        ("Deep Security Agent", "6001100"),
        ("Deep Security Agent", "7000000"),
        ("Deep Security Manager", "600"),
        ("Workload Security Agent", "abc"),
    ]
)
#: Alias slots and derived-field sources, with numbers, words and escapes as values (not
#: ``vendor``: a reserved name, which only the careful path keeps, under ``ext_shadowed``).
SLOT_KEYS = st.sampled_from(
    ["cs1", "cs2", "cs3", "cs4", "cs5", "cs6", "cn1", "cn2", "cn3", "dvchost", "dvc"]
)
EXT_VALUES = st.lists(
    st.sampled_from(["12", "-3", "007", "x", "a b", "0x00 ACK", "c:\\windows", "\\", "=", "é"]),
    max_size=3,
).map("".join)


@settings(max_examples=600, deadline=None)
@given(
    ENVELOPES,
    SOURCES,
    st.dictionaries(KEYS | SLOT_KEYS | st.sampled_from(sorted(INT_KEYS)), EXT_VALUES, max_size=8),
    st.sampled_from([" ", "  "]),
    st.booleans(),
)
def test_the_fast_path_takes_every_plain_line_and_agrees_with_the_careful_path(
    envelope, source, pairs, separator, tenant
) -> None:
    """The fast path must not just step aside: every line it is built for goes through it,
    with the same event the careful path builds (module, aliases, ints, escapes, host)."""
    if tenant:
        pairs = {**pairs, "TrendMicroDsTenant": "Acme", "TrendMicroDsTenantId": "3"}
    ext = separator.join(f"{k}={escape_value(v)}" for k, v in pairs.items()) or "a="
    product, sig = source
    line = f"{envelope}CEF:0|Trend Micro|{product}|20.0.1|{sig}|Some name|6|{ext}"
    receipt = ("r", "p", "i", line)
    fast = _fast(line, receipt, 1_764_285_512.0, {})
    careful = _slow(line, receipt, 1_764_285_512.0)
    assert fast is not None, line
    assert fast == careful
    assert "parse_error" not in fast
