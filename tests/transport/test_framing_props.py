"""Property tests: framing never depends on where the stream was cut into chunks."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dsrouter.ingest.framing import FRAMINGS, Framer

LIMIT = 24

_text = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"_").replace(b"\x00", b"_"))
_framings = st.sampled_from(["lf", "crlf", "nul", "octet"])
_separator = st.sampled_from([b"", b"", b"", b"\n", b"\r\n", b"\x00"])


@st.composite
def streams(draw) -> tuple[list[bytes], bytes]:
    """Random syslog-like messages, each framed its own way, with stray empty lines."""
    payloads: list[bytes] = []
    wire: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        framing = draw(_framings)
        if framing == "octet":  # auto mode: a frame starts with "<" and holds no "LF <"
            payload = b"<" + draw(st.binary(max_size=40)).replace(b"\n<", b"\n_")
            if payload.endswith(b"\n"):
                payload += b"_"  # "...LF" + the next frame's "<" would read as a line break
            wire.append(b"%d %s" % (len(payload), payload))
        else:
            payload = b"<" + draw(_text)
            if framing == "lf":
                payload = payload.rstrip(b"\r") or b"<"
            wire.append(payload + {"lf": b"\n", "crlf": b"\r\n", "nul": b"\x00"}[framing])
        payloads.append(payload)
        wire.append(draw(_separator))
    return payloads, b"".join(wire)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *bounds, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def run(chunks: list[bytes], **kw) -> tuple[list[bytes], int, int, int]:
    framer = Framer(**kw)
    out: list[bytes] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    out += framer.flush()
    return out, framer.oversize, framer.invalid, framer.frames


_points = st.lists(st.integers(0, 10_000), max_size=30)


@settings(max_examples=300, deadline=None)
@given(streams(), _points)
def test_random_framing_and_chunking_gives_the_messages(stream, points) -> None:
    payloads, data = stream
    out, oversize, _, frames = run(cut(data, points))
    assert out == payloads
    assert oversize == 0
    assert frames == len(payloads)


@settings(max_examples=300, deadline=None)
@given(streams(), _points)
def test_oversize_frames_dropped_whatever_the_chunking(stream, points) -> None:
    payloads, data = stream
    out, oversize, _, _ = run(cut(data, points), max_message=LIMIT)
    assert out == [p for p in payloads if len(p) <= LIMIT]
    assert oversize == sum(len(p) > LIMIT for p in payloads)


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=120).map(lambda b: b.replace(b"\xff", b"\n").replace(b"\xfe", b"1")),
    _points,
    st.sampled_from(FRAMINGS),
    st.integers(1, 30),
)
# an empty chunk while an oversize frame is skipped (raised IndexError once)
@example(b"\x00" * 8 + b"5 <\x00\x00\x00", [14], "auto", 1)
def test_any_bytes_chunking_invariant(data: bytes, points, framing: str, limit: int) -> None:
    whole = run([data], max_message=limit, framing=framing)
    assert run(cut(data, points), max_message=limit, framing=framing) == whole
    assert all(0 < len(m) <= limit for m in whole[0])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_text.map(lambda t: b"<" + t.replace(b"\r", b"_")), min_size=2, max_size=12),
    st.integers(0, 11),
    st.integers(1, 10**9),
    _points,
)
def test_a_bogus_count_never_swallows_the_lines_after_it(lines, at, count, points) -> None:
    at %= len(lines) - 1
    wire = b"".join(
        (b"%d " % count if i == at else b"") + line + b"\n" for i, line in enumerate(lines)
    )
    out, _, _, _ = run(cut(wire, points), max_message=64)
    later = [x for x in lines[at + 1 :] if len(x) <= 64]
    assert out[len(out) - len(later) :] == later
