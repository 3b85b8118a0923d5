"""Seed cases too large to commit, made on the fly: ``GENERATED`` maps a name to its bytes.

They are the big siblings of files in ``fuzz/corpus/``: a 10 MB line, thousands of extension
keys, RFC 5424 structured data opened 100,000 times, a megabyte of backslashes, octet counts
whose frames never arrive; ``GENERATED_CONFIGS`` holds configurations nested or repeated
thousands of times. The harness runs each through its target once before fuzzing (they
are far past libFuzzer's ``-max_len``); the seed-corpus test runs them too.
"""

from __future__ import annotations

from collections.abc import Callable

_CEF = b"<134>Dec  2 07:35:20 web-01 CEF:0|Trend Micro|Deep Security Agent|20.0|3002795|LI|8|"
_RFC5424 = b"<134>1 2026-12-02T07:35:20Z relay CEF - - "
MB = 1 << 20


def _ten_mb_line() -> bytes:
    return _CEF + b"cn1=12 msg=" + b"A" * (10 * MB) + b"\n"


def _many_keys() -> bytes:
    return _CEF + b" ".join(b"k%d=v%d" % (i, i) for i in range(20_000)) + b"\n"


def _one_key_many_times() -> bytes:
    return _CEF + b"src=1 " * 20_000 + b"\n"


def _nested_sd() -> bytes:
    return _RFC5424 + b"[a " * 100_000 + b"0|Trend Micro|Deep Security Agent|20.0|1|x|1|a=b\n"


def _quoted_sd() -> bytes:
    return _RFC5424 + b'[x@1 a="' + b'\\"]' * 100_000 + b'"] 0|Trend|DSA|1|2|n|3|a=b\n'


def _backslashes() -> bytes:
    return _CEF + b"msg=" + b"\\" * MB + b"\n"


def _equals_run() -> bytes:
    return _CEF + b"a=" * 500_000 + b"\n"


def _pipes() -> bytes:
    return b"<134>Dec  2 07:35:20 web-01 CEF:0" + b"|" * MB + b"\n"


def _leef_delimiters() -> bytes:
    return b"<134>Dec  2 07:35:20 web-01 LEEF:2.0|T|D|1|2|" + b"#011a=" * 200_000 + b"\n"


def _counts_never_arrive() -> bytes:
    return b"".join(b"%d <13>x" % (999_999_999 - i) for i in range(50_000))


def _huge_count_then_lines() -> bytes:
    lines = b"".join(b"<13>Dec  2 07:35:20 h line %d\n" % i for i in range(20_000))
    return b"999999999 <13>" + lines


_OUT = b'output a { type = "stdout" }\nroute rest { to a }\n'


def _nested_parens() -> bytes:
    return b"route r { when " + b"(" * 5000 + b"severity > 1" + b")" * 5000 + b" to a }\n" + _OUT


def _long_and_chain() -> bytes:
    return b"route r { when " + b" and ".join([b"severity > 1"] * 2000) + b" to a }\n" + _OUT


def _thousands_of_routes() -> bytes:
    routes = b"".join(b'route r%d { when name == "n%d" to a }\n' % (i, i) for i in range(1500))
    return routes + _OUT


def _long_string() -> bytes:
    return b'output a { type = "file", path = "' + b"\\" * 300_000 + b'" }\n' + _OUT


GENERATED_CONFIGS: dict[str, Callable[[], bytes]] = {
    "nested_parens_5000": _nested_parens,
    "and_chain_2000": _long_and_chain,
    "routes_1500": _thousands_of_routes,
    "string_of_backslashes": _long_string,
}

GENERATED: dict[str, Callable[[], bytes]] = {
    "ten_mb_line": _ten_mb_line,
    "twenty_thousand_keys": _many_keys,
    "one_key_twenty_thousand_times": _one_key_many_times,
    "nested_sd_100k": _nested_sd,
    "quoted_sd_escapes_100k": _quoted_sd,
    "backslashes_1mb": _backslashes,
    "equals_run_1mb": _equals_run,
    "pipes_1mb": _pipes,
    "leef_escaped_tabs_200k": _leef_delimiters,
    "octet_counts_never_arrive": _counts_never_arrive,
    "huge_count_then_lines": _huge_count_then_lines,
}
