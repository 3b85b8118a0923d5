"""Every seed of the fuzz corpus (``fuzz/corpus/`` and the generated big ones) through framing,
parse_message and, for configurations, the loader: no exception, and every message, however
bad, becomes an event that keeps its raw text. The oracles are the fuzz targets' own
(``fuzz/targets.py``), so the suite and the fuzzer judge alike."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsrouter.ingest.framing import FRAMINGS

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"dsrouter_fuzz_{name}", FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load("targets")
generated = _load("generated")

SEEDS = sorted(targets.CORPUS.iterdir())
CONFIGS = [p for p in SEEDS if p.suffix == ".conf"]
#: Known issues found by the fuzzer (a minimal test of each fixed one is below): seeds
#: whose framing depends on the chunking, whose fast path differs from the careful path, and
#: configurations that raise something other than ConfigError. Empty them as they are fixed.
KNOWN_CHUNKING: set[str] = set()
KNOWN_PARSE: set[str] = set()
KNOWN_CONFIG: set[str] = set()
FIXED_CUTS = ([1], [2, 3, 5], [7], [64], [4096])
_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _ids(paths):
    return [p.name for p in paths]


def _marked(paths, known: set[str], reason: str) -> list:
    """``paths`` as parameters, the known ones expected to fail (strict: a fix shows up)."""
    xfail = pytest.mark.xfail(strict=True, reason=reason)
    return [pytest.param(p, marks=xfail if p.name in known else (), id=p.name) for p in paths]


def test_the_corpus_covers_every_kind_of_nasty_input():
    names = {p.name.split("_")[0] for p in SEEDS}
    assert {"truncated", "utf8", "nul", "keys", "sd", "bait", "octet", "bad", "ok"} <= names
    assert len(SEEDS) >= 80 and len(CONFIGS) >= 10


@pytest.mark.parametrize("seed", _marked(SEEDS, KNOWN_PARSE, "fast path differs"))
def test_every_framed_message_becomes_an_event_with_its_raw_text(seed):
    data = seed.read_bytes()
    for framing in FRAMINGS:
        for message in targets.frame([data], framing, 65536)[0]:
            targets.fuzz_parse(message)  # parse_message, parse_batch, fast == slow path
    targets.fuzz_parse(data)  # the whole file as one datagram
    for name in ("syslog", "cef", "leef"):
        targets.TARGETS[name](data)


@pytest.mark.parametrize("seed", _marked(SEEDS, KNOWN_CHUNKING, "line lost in a chunked skip"))
def test_framing_does_not_depend_on_fixed_chunkings(seed):
    data = seed.read_bytes()
    for framing in FRAMINGS:
        for limit in targets.LIMITS:
            for cuts in FIXED_CUTS:
                targets.framing_consistent(data, framing, limit, cuts)


RANDOM_SEEDS = [p for p in SEEDS if p.name not in KNOWN_CHUNKING]


@pytest.mark.parametrize("seed", RANDOM_SEEDS, ids=_ids(RANDOM_SEEDS))
@_SETTINGS
@given(
    framing=st.sampled_from(FRAMINGS),
    limit=st.sampled_from(targets.LIMITS),
    cuts=st.lists(st.integers(1, 80), min_size=1, max_size=12),
)
def test_framing_does_not_depend_on_random_chunkings(seed, framing, limit, cuts):
    targets.framing_consistent(seed.read_bytes(), framing, limit, cuts)


def test_an_oversize_count_that_was_a_line_keeps_the_line_when_chunked():
    """In auto mode ``5000 <13>a LF <13>b`` with max_message below 5000 yields the line
    ``<13>a`` when the stream arrives whole, but loses it when the frame's first bytes came in
    an earlier chunk: the skip of the "oversize frame" discards them before the ``LF <`` shows
    the count was a line's digits. When this passes, drop the xfail and KNOWN_CHUNKING."""
    stream = b"5000 <13>a\n<13>b\n"
    whole = targets.frame([stream], "auto", 300)
    assert whole[0] == [b"<13>a", b"<13>b"]
    assert targets.frame(targets.cut(stream, [8]), "auto", 300) == whole


def test_a_host_that_starts_with_a_cef_header_parses_alike_on_both_paths():
    """The fast regex takes ``CEF:0|x`` as the host (``\\S*``) and parses the second header;
    the careful path starts the body at the first ``CEF:`` mark. When this passes, drop the
    xfail and KNOWN_PARSE."""
    text = "<134>Dec  2 07:35:20 CEF:0|x CEF:0|Trend Micro|Deep Security Agent|20.0|1|XSS|8|a=b"
    receipt = ("t", "127.0.0.1:1", "in", text)
    fast = targets._fast(text, receipt, 0.0, {})
    assert fast is None or fast == targets._slow(text, receipt, 0.0)


def test_trailing_odd_whitespace_is_stripped_alike_on_both_paths():
    """The fast path strips the extension's end only when it ends in space, TAB, CR or LF;
    the careful path's ``rstrip()`` also drops FF, VT, \\x1c-\\x1f: ``cn1Label`` differs."""
    text = "<134>Dec  2 07:35:20 web-01 CEF:0|Trend Micro|DSA|20.0|1|XSS|8|cn1Label=Host t\x0c"
    receipt = ("t", "127.0.0.1:1", "in", text)
    fast = targets._fast(text, receipt, 0.0, {})
    assert fast is not None and fast == targets._slow(text, receipt, 0.0)


def test_a_nul_in_an_include_glob_is_a_config_error(tmp_path):
    """``include "rules<NUL>/*.rules"``: glob's scandir raises ValueError (embedded null
    byte) out of the loader. When this passes, drop the xfail and KNOWN_CONFIG."""
    text = 'output out { type = "stdout" }\nroute all { to out }\ninclude "a\x00/*.rules"\n'
    targets.config_ok(text, tmp_path)


@pytest.mark.parametrize("name", sorted(generated.GENERATED))
def test_generated_big_seeds_frame_and_parse(name):
    data = generated.GENERATED[name]()
    for framing in FRAMINGS:
        targets.framing_consistent(data, framing, 65536, [65536, 4093])
    text = data.decode("utf-8", "replace")
    targets.event_ok(targets.parse_message(text), text)


@pytest.mark.parametrize("seed", _marked(CONFIGS, KNOWN_CONFIG, "ValueError from glob"))
def test_config_seeds_load_or_fail_with_a_config_error(seed, tmp_path):
    targets.config_ok(seed.read_text("utf-8", "replace"), tmp_path)


CUT_CONFIGS = [p for p in CONFIGS if p.name not in KNOWN_CONFIG]


@pytest.mark.parametrize("seed", CUT_CONFIGS, ids=_ids(CUT_CONFIGS))
@_SETTINGS
@given(cut=st.integers(0, 1 << 16), drop=st.integers(0, 64))
def test_config_seeds_cut_or_gapped_still_fail_cleanly(seed, tmp_path, cut, drop):
    text = seed.read_text("utf-8", "replace")
    at = cut % (len(text) + 1)
    targets.config_ok(text[:at], tmp_path)  # truncated
    targets.config_ok(text[:at] + text[at + drop :], tmp_path)  # a piece taken out


@pytest.mark.parametrize("name", sorted(generated.GENERATED_CONFIGS))
def test_generated_big_configs_load_or_fail_with_a_config_error(name, tmp_path):
    targets.config_ok(generated.GENERATED_CONFIGS[name]().decode(), tmp_path)
