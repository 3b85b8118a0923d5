"""Fuzz targets for dsrouter's parsers: each takes bytes and raises only on a finding.

A finding is an exception the code under test must never raise, an event that lost its raw
text or does not serialize, a framing result that depends on where the stream was cut, or a
fast-path event that differs from the careful path's. The same functions serve the atheris
harness (``fuzz/run.py``) and the seed-corpus test (``tests/fuzz/test_seed_corpus.py``).

Targets: ``framing``, ``syslog`` (envelope), ``cef``, ``leef``, ``parse`` (parse_message and
parse_batch) and ``config`` (load_config_text, then compile_routes and decide).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from dsrouter.ds.batch import parse_batch
from dsrouter.ds.catalog import MODULES
from dsrouter.ds.cef import parse_cef
from dsrouter.ds.leef import parse_leef
from dsrouter.ds.normalize import _fast, _slow, parse_message
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.errors import ConfigError
from dsrouter.ingest.framing import FRAMINGS, Framer
from dsrouter.plugin import Plugins
from dsrouter.samples import sample_lines
from dsrouter.syslog import parse_envelope, parse_structured_data

CORPUS = Path(__file__).resolve().parent / "corpus"
LIMITS = (16, 300, 65536)  # max_message values: tiny ones reach the oversize paths


class Finding(AssertionError):
    """The code under test broke its contract on this input."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Finding(what)


# ---- framing --------------------------------------------------------------------------------


def frame(chunks: list[bytes], framing: str, limit: int) -> tuple[list[bytes], dict[str, int]]:
    """Feed ``chunks`` to one Framer, then flush: the messages and the counters."""
    framer = Framer(max_message=limit, framing=framing)
    out: list[bytes] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    out += framer.flush()
    return out, framer.counters


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` in chunks of the given sizes, cycled (sizes of 0 count as 1)."""
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(data)
        chunks.append(data[pos : pos + size])
        pos, i = pos + size, i + 1
    return chunks


def framing_consistent(stream: bytes, framing: str, limit: int, sizes: list[int]) -> list[bytes]:
    """Frame ``stream`` whole and in chunks; the results must be the same. Returns messages."""
    whole, counters = frame([stream], framing, limit)
    check(all(0 < len(m) <= limit for m in whole), "a message is empty or over max_message")
    if framing == "lf":
        check(not any(b"\n" in m for m in whole), "an LF-framed message holds an LF")
    chunked = frame(cut(stream, sizes), framing, limit)
    check(chunked == (whole, counters), f"chunking {sizes} changed the result ({framing})")
    if len(stream) <= 512:  # byte by byte: every cut at once (kept short: it is slow)
        check(frame(cut(stream, [1]), framing, limit) == (whole, counters), "byte by byte differs")
    return whole


def fuzz_framing(data: bytes) -> None:
    """Byte 0 picks the framing, byte 1 max_message, bytes 2..9 the chunk sizes."""
    if len(data) < 2:
        return
    framing = FRAMINGS[data[0] % len(FRAMINGS)]
    limit = LIMITS[data[1] % len(LIMITS)]
    n = data[2] % 8 if len(data) > 2 else 0
    framing_consistent(data[3 + n :], framing, limit, list(data[3 : 3 + n]))


# ---- envelope, CEF, LEEF --------------------------------------------------------------------


def texts(data: bytes) -> Iterator[str]:
    """The two ways the daemon and tools decode bytes: replacement and surrogate escapes."""
    yield data.decode("utf-8", "replace")
    if not data.isascii():
        yield data.decode("utf-8", "surrogateescape")


def fuzz_syslog(data: bytes) -> None:
    for text in texts(data):
        env, body, error = parse_envelope(text, now=1_764_285_512.0)
        check(isinstance(env, dict) and isinstance(body, str), "envelope types")
        check(error is None or isinstance(error, str), "envelope error type")
        check(text.endswith(body) or text.rstrip().endswith(body), "body is not the text's end")
        sd = parse_structured_data(text)
        check(all(isinstance(v, dict) for v in sd.values()), "structured data types")


def _pairs_ok(pairs: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items())


def fuzz_cef(data: bytes) -> None:
    for text in texts(data):
        for body in (text, "CEF:" + text, "CEF:0|" + text):
            head, pairs, error = parse_cef(body)
            check(head is None or len(head) == 7, "CEF header is not 7 fields")
            check(_pairs_ok(pairs) and (error is None or isinstance(error, str)), "CEF types")


def fuzz_leef(data: bytes) -> None:
    for text in texts(data):
        for body in (text, "LEEF:" + text, "LEEF:2.0|" + text, "LEEF:1.0|a|b|c|d|" + text):
            head, attrs, error = parse_leef(body)
            check(head is None or len(head) == 5, "LEEF header is not 5 fields")
            check(_pairs_ok(attrs) and (error is None or isinstance(error, str)), "LEEF types")


# ---- whole messages -------------------------------------------------------------------------


def event_ok(event: dict, raw: str) -> None:
    """The contract of every event: raw kept, a module, no parser failure, serializable."""
    check(event.get("raw") == raw, "raw text not kept")
    check(event.get("module") in MODULES, f"module {event.get('module')!r}")
    error = event.get("parse_error") or ""
    check(not error.startswith("parser failure"), f"parser raised: {error}")
    orjson.dumps(event)  # the archive and every output serialize it


def writable(text: str) -> str:
    """``text`` with lone surrogates replaced: what an event may hold (orjson refuses them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def fuzz_parse(data: bytes) -> None:
    for text in texts(data):
        event = parse_message(text, "in", "127.0.0.1:1", "t")
        text = writable(text)  # what parse_message hands its two paths
        event_ok(event, text)
        receipt = ("t", "127.0.0.1:1", "in", text)
        now = time.time()
        fast = _fast(text, receipt, now, {})  # may raise: parse_message would hide it
        if fast is not None:
            check(orjson.dumps(fast) == orjson.dumps(_slow(text, receipt, now)), "fast != slow")
    (event,) = parse_batch([data], "in", "127.0.0.1:1", "t")
    event_ok(event, data.decode("utf-8", "replace"))


# ---- configuration --------------------------------------------------------------------------

_SPECS = Plugins(entry_points=False).option_specs()
_EVENTS = [parse_message(x) for x in sample_lines(1_764_285_512.0)] + [parse_message("\xff|=")]
_BASE: list[Path] = []  # an empty folder that relative includes and file() resolve in


def config_ok(text: str, base: Path) -> None:
    """Load ``text``: a Config or a ConfigError with diagnostics; anything else is a finding.
    A loaded configuration compiles and routes every sample event."""
    try:
        config = load_config_text(text, "<fuzz>", _SPECS, base_dir=base, environ={})
    except ConfigError as exc:
        check(bool(exc.diagnostics), "ConfigError without a diagnostic")
        str(exc)  # every diagnostic renders
        return
    table = compile_routes(config)
    for event in _EVENTS:
        table.decide(event)


#: ``include "/**/x"`` or ``"../../**"``: a recursive glob over the whole file system is
#: slow (minutes), not wrong, so the fuzzer skips such inputs rather than time out on them.
_WALKS_THE_DISK = re.compile(r'include\s+"(?:/|[^"]*\.\.)[^"]*\*\*')


def fuzz_config(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    if _WALKS_THE_DISK.search(text):
        return
    if not _BASE:
        _BASE.append(Path(tempfile.mkdtemp(prefix="dsrouter-fuzz-config-")))
    config_ok(text, _BASE[0])


TARGETS: dict[str, Callable[[bytes], None]] = {
    "framing": fuzz_framing,
    "syslog": fuzz_syslog,
    "cef": fuzz_cef,
    "leef": fuzz_leef,
    "parse": fuzz_parse,
    "config": fuzz_config,
}
