"""Framer tables: each framing, mixed framings, oversize frames across chunks, flush at EOF."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrouter.ingest.framing import Framer

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def frame_all(chunks: list[bytes], **kw) -> tuple[list[bytes], Framer]:
    framer = Framer(**kw)
    out: list[bytes] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out + framer.flush(), framer


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def chunkings(data: bytes) -> list[list[bytes]]:
    """The whole stream, byte by byte, and every split into two chunks."""
    return [[data], bytewise(data)] + [[data[:i], data[i:]] for i in range(1, len(data))]


CASES = [
    ("lf", b"<13>a\n<13>b\n", [b"<13>a", b"<13>b"]),
    ("crlf", b"<13>a\r\n<13>b\r\n", [b"<13>a", b"<13>b"]),
    ("nul", b"<13>a\x00<13>b\x00", [b"<13>a", b"<13>b"]),
    ("cr-kept-before-nul", b"<13>a\r\x00", [b"<13>a\r"]),
    ("inner-cr-kept", b"<13>a\rb\n", [b"<13>a\rb"]),
    ("octet", b"5 <13>a5 <13>b", [b"<13>a", b"<13>b"]),
    ("octet-with-lf-inside", b"7 <13>a\nb", [b"<13>a\nb"]),
    ("octet-then-lf-trailer", b"5 <13>a\n5 <13>b\n", [b"<13>a", b"<13>b"]),
    (
        "mixed",
        b"5 <13>a<13>b\n<13>c\x007 <13>d\r\n<13>e\r\n",
        [b"<13>a", b"<13>b", b"<13>c", b"<13>d\r\n", b"<13>e"],
    ),
    ("empty-lines", b"\n\r\n\x00\n<13>a\n\n\n<13>b\n", [b"<13>a", b"<13>b"]),
    ("digits-not-count", b"2024-01-01 x\n", [b"2024-01-01 x"]),
    ("eleven-digits-not-count", b"12345678901 x\n", [b"12345678901 x"]),
    ("leading-zero-not-count", b"05 <13>a\n", [b"05 <13>a"]),
    ("unterminated-last", b"<13>a\n<13>b", [b"<13>a", b"<13>b"]),
    ("unterminated-crlf-last", b"<13>a\r", [b"<13>a"]),
    ("partial-octet-at-eof", b"10 <13>a", [b"<13>a"]),
    ("bare-digits-at-eof", b"<13>a\n42", [b"<13>a", b"42"]),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_framing_table(data: bytes, expected: list[bytes]) -> None:
    for chunks in chunkings(data):
        out, _ = frame_all(chunks)
        assert out == expected, chunks


def test_feed_returns_only_complete_messages() -> None:
    framer = Framer()
    assert framer.feed(b"<13>par") == []
    assert framer.feed(b"tial\n<13>next") == [b"<13>partial"]
    assert framer.pending == len(b"<13>next")
    assert framer.flush() == [b"<13>next"]
    assert framer.flush() == []
    assert framer.frames == 2


OVERSIZE = [
    ("octet", b"12 <13>abcdefgh5 <13>a", [b"<13>a"], 1),
    ("lf", b"<13>abcdefgh\n<13>a\n", [b"<13>a"], 1),
    ("crlf-at-limit-ok", b"<13>abcd\r\n", [b"<13>abcd"], 0),
    ("cr-not-before-lf-counts", b"<13>abcd\rx\n<13>b\n", [b"<13>b"], 1),
    ("lf-one-over", b"<13>abcdef\n<13>b\n", [b"<13>b"], 1),
    ("nul", b"<13>abcdefgh\x00<13>a\x00", [b"<13>a"], 1),
    ("unterminated-at-eof", b"<13>a\n<13>abcdefgh", [b"<13>a"], 1),
    ("huge-declared-count", b"9999999999 <13>a", [], 1),
    ("two-in-a-row", b"9 <13>abcdef<13>abcdefgh\n<13>c\n", [b"<13>c"], 2),
]


@pytest.mark.parametrize(
    ("data", "expected", "count"), [c[1:] for c in OVERSIZE], ids=[c[0] for c in OVERSIZE]
)
def test_oversize_skipped_and_framing_resumes(data, expected, count) -> None:
    for chunks in chunkings(data):
        out, framer = frame_all(chunks, max_message=8)
        assert out == expected, chunks
        assert framer.oversize == count, chunks


def test_oversize_octet_frame_spanning_many_chunks() -> None:
    framer = Framer(max_message=100)
    assert framer.feed(b"1000 <" + b"x" * 299) == []
    assert framer.oversize == 0  # counted once the whole frame is skipped
    for _ in range(2):
        assert framer.feed(b"y" * 300) == []
    assert framer.feed(b"z" * 100 + b"5 <13>a<13>b\n") == [b"<13>a", b"<13>b"]
    assert framer.oversize == 1


def test_oversize_line_is_not_buffered() -> None:
    framer = Framer(max_message=100)
    for _ in range(50):
        assert framer.feed(b"x" * 1000) == []
    assert framer.pending == 0
    assert framer.oversize == 1
    assert framer.feed(b"tail\n<13>ok\n") == [b"<13>ok"]


FORCED = [
    ("lf-no-octet", "lf", b"5 <13>a\n", [b"5 <13>a"], 0),
    ("lf-nul-is-data", "lf", b"<13>a\x00b\n", [b"<13>a\x00b"], 0),
    ("octet-ok", "octet-counted", b"5 <13>a\n5 <13>b", [b"<13>a", b"<13>b"], 0),
    ("octet-garbage", "octet-counted", b"<13>junk\n5 <13>b", [b"<13>b"], 1),
    ("octet-zero-count", "octet-counted", b"0 x\n5 <13>b", [b"<13>b"], 1),
    ("octet-bare-count-at-eof", "octet-counted", b"5 <13>b12", [b"<13>b"], 1),
]


@pytest.mark.parametrize(
    ("framing", "data", "expected", "invalid"),
    [c[1:] for c in FORCED],
    ids=[c[0] for c in FORCED],
)
def test_forced_framing(framing: str, data: bytes, expected, invalid: int) -> None:
    for chunks in chunkings(data):
        out, framer = frame_all(chunks, framing=framing)
        assert out == expected
        assert framer.invalid == invalid


def test_unknown_framing_rejected() -> None:
    with pytest.raises(ValueError, match="unknown framing"):
        Framer(framing="xml")


def test_capture_line_octet_count_is_right() -> None:
    """The only octet-counted DS capture: ``194 <86>…`` with exactly 194 bytes after the count."""
    path = CORPUS / "elastic-integrations-trendmicro-sample_logs.log"
    if not path.exists():
        pytest.skip("../shared/corpus not available")
    line = next(x for x in path.read_bytes().splitlines() if x.startswith(b"194 <86>"))
    expected = line[4:]
    assert len(expected) == 194
    for chunks in ([line], bytewise(line), [line + b"\n" + line]):
        out, framer = frame_all(chunks)
        assert out[0] == expected
        assert framer.oversize == 0


def test_own_octet_counted_capture_shape() -> None:
    payload = (
        b"<86>2020-09-21T13:51:11+06:30 dsm CEF:0|Trend Micro|Deep Security Agent|10.2.229|"
        b"5000000|WebReputation|5|cn1=1 msg=Blocked By Admin"
    )
    data = b"%d %s" % (len(payload), payload)
    out, _ = frame_all([data, b"<13>next\n"])
    assert out == [payload, b"<13>next"]


def test_a_huge_count_resynchronises_on_the_next_line() -> None:
    framer = Framer()
    lines = [b"<13>m%d" % i for i in range(11)]
    out = framer.feed(b"999999999 <13>first\n" + b"".join(x + b"\n" for x in lines))
    assert out == [b"<13>first", *lines]
    assert framer.invalid == 1 and framer.oversize == 0


def test_a_bogus_count_does_not_merge_the_next_lines() -> None:
    framer = Framer()
    lines = [b"<13>m%d" % i for i in range(11)]
    out = framer.feed(b"5000 <13>first\n")
    out += framer.feed(b"".join(x + b"\n" for x in lines))
    assert out == [b"<13>first", *lines]
    assert framer.invalid == 1


def test_a_count_must_be_followed_by_a_pri_in_auto_mode() -> None:
    assert Framer().feed(b"12 apples\n<13>b\n") == [b"12 apples", b"<13>b"]
    assert Framer(framing="octet-counted").feed(b"6 apples") == [b"apples"]


def test_octet_frames_with_lf_inside_are_kept_when_forced() -> None:
    framer = Framer(framing="octet-counted")
    assert framer.feed(b"11 <13>a\n<13>b") == [b"<13>a\n<13>b"]
    assert framer.invalid == 0
