"""The compiled extension cut (numba) gives the same events as the Python paths, on any input."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsrouter.ds import batch, native
from dsrouter.ds.batch import parse_batch
from dsrouter.ds.catalog import INT_KEYS, RESERVED
from dsrouter.ds.normalize import MAX_KEYS, _front, _slow
from dsrouter.syslog import rfc3164_cache, rfc3164_to_iso

HEAD = "<134>Nov 27 23:18:32 web-07 CEF:0|Trend Micro|Deep Security Agent|20.0|21|Deny|5|"


@pytest.fixture(scope="module", autouse=True)
def kernel() -> Iterator[native.Kernel]:
    # numba is a dependency wherever it has wheels: the kernel must load where the suite runs.
    assert batch.use_native(), "the numba kernel did not load"
    assert batch._kernel is not None
    yield batch._kernel
    batch._kernel = None


def both(lines: list[str]) -> tuple[list[dict], list[dict]]:
    """The events of ``lines`` by the Python path and by the kernel."""
    messages = [line.encode("utf-8", "surrogatepass") for line in lines]
    k = batch._kernel
    try:
        batch._kernel = None
        python = parse_batch(messages, "in", "peer", "at")
    finally:
        batch._kernel = k
    return python, parse_batch(messages, "in", "peer", "at")


def assert_same(lines: list[str]) -> list[dict]:
    python, compiled = both(lines)
    for line, a, b in zip(lines, python, compiled, strict=True):
        assert a == b, line
        assert list(a) == list(b), line  # the same key order: outputs write it
    return compiled


ATOMS = st.sampled_from(
    [" ", "  ", "\t", "=", "\\", "\\\\", "\\=", "\\|", "\\n", "\\r", "\\x", '"', "|", "\x00",
     "\x1f", "\x7f", "\x1c", "é", "€", "😀", "a=", " b=", " spt=", " cn1=", " dpt=", "007",
     "-0", "-", "12", "1234567890123456789", "-123456789012345678", " x.y[0]-_=", " module=",
     " raw=", "dvchost=", " TrendMicroDsTenant=", "C:\\Windows", " =", "=="]
)  # fmt: skip
EXT = st.lists(ATOMS, max_size=30).map("".join)


@settings(max_examples=600, deadline=None)
@given(st.lists(EXT, min_size=1, max_size=5))
def test_the_kernel_and_the_python_path_give_the_same_events(exts: list[str]) -> None:
    assert_same([f"{HEAD}act=Deny {ext}" for ext in exts] + [f"{HEAD}{ext}" for ext in exts])


def _parts(right: str, *wrong: str) -> st.SearchStrategy[str]:
    """A part of a message: mostly ``right``, else one of the ways it can be wrong."""
    return st.sampled_from([right] * (3 * len(wrong)) + list(wrong))


#: DS messages with parts wrong in the ways the fast regex cares about (most parts right).
FRONTS = st.tuples(
    _parts("<134>", "<1>", "<001>", "<191>", "<192>", "<1345>", "<>", "134>", "<٣>", ""),
    _parts("Nov 27 23:18:32", "Nov  7 03:08:02", "Feb 30 01:02:03", "nov 27 23:18:32",
           "Nov 27 23:18:3", "Nov 27 23-18:32", "2026-11-27T23:18:32Z", "1 - - - - -"),
    _parts(" ", "  ", "\t", ""),
    _parts("web-07", "h:", "a:b", "xCEF:y", "aLEEF:b", "LEEF:", "EF:", "é", "h\x1c", "", "h|"),
    _parts(" ", "  ", "\t", ""),
    _parts("CEF:", "CEF: ", "CEF:  ", "cef:", "LEEF:", "CEF"),
    _parts("0|", "10|", "123|", "1234|", "|", "a|", "٣|", "0"),
    _parts("Trend Micro|Deep Security Agent|20.0|21|Deny|5|", "a|b|c|d|e|f|", "||||||",
           "a|b|c|d|e|", "a|b|c|d|e|f|g|", "a|b\\|c|d|e|f|", "é|b|c|d|e|f|", "\x00|b|c|d|e|f|"),
    _parts("act=Deny src=1.2.3.4", "act=Deny", " act=x", "=x", "k", "", "a.b[0]-_=1", "é=1"),
).map("".join)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(FRONTS, min_size=1, max_size=16))
def test_the_kernel_reads_an_envelope_only_where_the_fast_regex_reads_the_same(
    texts: list[str],
) -> None:
    now = time.time()
    for text, row in zip(texts, batch._kernel.fronts(texts), strict=True):
        if row[0]:  # the fast path's _front reads the same, unless the stamp is no real date
            front = _front(text, now, rfc3164_cache(now))
            if rfc3164_to_iso(text[row[2] : row[2] + 15], now) is None:
                assert front is None, text
                continue
            assert front is not None, text
            m = front[0]
            assert m.group(2) is not None, text
            assert row[1:] == [int(m.group(1)), m.start(2), *m.span(4), m.start(11), m.start(18)]
    assert_same(texts)


def test_the_kernel_reads_the_common_ds_envelope() -> None:
    lines = [f"{HEAD}act=Deny", HEAD.replace("<134>", "<9>").replace("27", " 7") + "a=1"]
    assert [row[0] for row in batch._kernel.fronts(lines)] == [1, 1]


def test_a_kernel_that_fails_leaves_its_chunk_to_the_python_path() -> None:
    k = batch._kernel

    def broken(*args: object) -> tuple:
        raise RuntimeError("kernel bug")

    lines = [f"{HEAD}act=Deny src=10.0.0.{i}" for i in range(5)]
    python, _ = both(lines)
    try:
        batch._kernel = native.Kernel(broken, broken)
        assert parse_batch([line.encode() for line in lines], "in", "peer", "at") == python
    finally:
        batch._kernel = k


def escape_value(s: str) -> str:
    return s.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


KEYS = st.from_regex(r"[A-Za-z0-9_.\[\]-]{1,12}", fullmatch=True) | st.sampled_from(
    sorted(INT_KEYS)
)
VALUES = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30) | st.from_regex(
    r"-?0*[0-9]{0,20}", fullmatch=True
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=12))
def test_the_kernel_agrees_with_the_careful_path(pairs: list[tuple[str, str]]) -> None:
    line = HEAD + " ".join(f"{k}={escape_value(v)}" for k, v in pairs)
    (event,) = assert_same([line])
    careful = _slow(line, ("at", "peer", "in", line), time.time())
    assert event == careful


def test_values_are_unescaped_and_typed_as_the_catalogue_says() -> None:
    (ev,) = assert_same(
        [HEAD + 'spt=007 dpt=-0 cnt=-00 cn2=1234567890123456789 msg=a\\=b \\\\\\= "q" C:\\x\\|y'
         + " fname=tab\there\\n\\r end=\x00"]
    )  # fmt: skip
    assert (ev["spt"], ev["dpt"], ev["cnt"]) == (7, 0, 0)
    assert ev["cn2"] == "1234567890123456789"  # 19 digits: kept as text, losslessly
    assert ev["msg"] == 'a=b \\= "q" C:\\x|y'
    assert ev["fname"] == "tab\there\n\r"
    assert ev["end"] == "\x00"


def test_what_the_kernel_declines_goes_the_careful_way() -> None:
    reserved = sorted(RESERVED)[0]
    many = " ".join(f"k{i}={i}" for i in range(MAX_KEYS + 1))
    lines = [
        f"{HEAD}act=Deny {reserved}=shadowed",  # a reserved key: kept aside under ext_shadowed
        f"{HEAD}{many}",  # more keys than kept: capped, with a parse_error
        f"{HEAD}act=Deny  src=1.2.3.4   spt=80",  # multi-space separators: stripped
        f"{HEAD}act=Deny src=1.2.3.4 \x1c\x0b",  # trailing whitespace of any kind
    ]
    events = assert_same(lines)
    assert events[0]["ext_shadowed"] == {reserved: "shadowed"}
    assert "parse_error" in events[1]
    assert (events[2]["act"], events[2]["src"], events[2]["spt"]) == ("Deny", "1.2.3.4", 80)
    assert events[3]["src"] == "1.2.3.4"


def test_batches_longer_than_a_chunk_keep_every_message_in_its_place() -> None:
    rng = random.Random(7)
    shapes = [
        f"{HEAD}act=Deny src=10.0.0.{{i}} spt={{i}}",
        "<134>Nov 27 23:18:32 web-07 LEEF:2.0|Trend Micro|Deep Security Agent|1|4000030|x09|"
        "sev=6\tname=n{i}",
        "not syslog at all {i}",
        f"{HEAD}act=Deny  src=10.0.0.{{i}}",
        f"{HEAD}act=Deny msg=\\\\{{i}}\\=",
    ]
    lines = [rng.choice(shapes).format(i=i) for i in range(3 * batch._CHUNK + 17)]
    events = assert_same(lines)
    assert [ev["raw"] for ev in events] == lines


def test_dsrouter_native_0_keeps_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSROUTER_NATIVE", "0")
    assert native.load(MAX_KEYS) is None


def test_the_output_buffer_holds_the_worst_case_with_bounds_checked(tmp_path) -> None:
    """Compiled with numba's bounds checks on, the kernel takes the inputs that write the
    most bytes per byte in (control characters, quotes, one-character pairs), after heads
    empty and long."""
    script = textwrap.dedent(
        """
        import orjson
        from dsrouter.ds import native
        kernel = native.load(512)
        texts = ["a=" + "\\x01" * 5000, "a=" + '"' * 3000, " ".join(["a=b"] * 600),
                 "a=" + "\\\\" * 999, "a=" + "é\\x00" * 700, "a=", "k=" + "=" * 900]
        heads = [b"{", b'{"h":"' + b"x" * 4000 + b'"'] * 4
        json, ends, status = kernel.extensions(texts, heads[: len(texts)])
        fronts = ["", "<", "<1", "<1>", "<1>Jan  1 00:00:00", "<1>Jan  1 00:00:00 h CEF:",
                  "<1>Jan  1 00:00:00 h CEF:0|a|b|c|d|e|", "<999>Jan  1 00:00:00 h CEF:0||||||a=1",
                  "<1>Jan  1 00:00:00 " + "h" * 5000, "<1>Jan  1 00:00:00 h CEF:0" + "|" * 7]
        assert not any(row[0] for row in kernel.fronts(fronts))
        start = 0
        for text, end in zip(texts, ends):
            orjson.loads(json[start:end])
            start = end
        print("ok", len(json), list(status))
        """
    )
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok "), run.stdout
    assert run.stdout.split()[1] != "0"
