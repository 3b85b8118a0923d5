"""RFC 5424 structured data shaped to make a backtracking parser cubic parses in one pass.

A 1.1 KB datagram of ``[ k="[[[…[ "]`` once held the event loop for ~9 s (2.1 KB: 87 s). These
inputs are 64 KiB, the default maximum message: they run in a child process with a watchdog so
a regression fails with a message instead of hanging the suite. (bench/linearity.py compares
the cost at 1x and 8x sizes.)
"""

from __future__ import annotations

import subprocess
import sys

from dsrouter.syslog import parse_envelope, parse_structured_data

HEAD = "<134>1 2026-11-27T23:18:32Z host app - - "
SHAPES = {
    "brackets-in-quotes": '[ k="' + "[" * 65_000 + ' "]',
    "unterminated-quote": '[a k="' + "x" * 65_000,
    "quotes": "[a " + '"' * 65_000,
    "elements": "[a]" * 21_000,
}


def test_hostile_shapes_parse_to_a_bounded_result_quickly():
    code = (
        "import sys\n"
        "from dsrouter.syslog import parse_envelope\n"
        "for sd in sys.stdin.read().split('\\0'):\n"
        f"    parse_envelope({HEAD!r} + sd + ' body')\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input="\0".join(SHAPES.values()),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_element_with_an_invalid_id_is_skipped_not_misread():
    env, body, error = parse_envelope(HEAD + SHAPES["brackets-in-quotes"] + " body")
    assert error is None and body == "body"
    assert env.get("structured_data", {}) == {}


def test_unterminated_structured_data_is_an_error_with_the_text_kept():
    env, body, error = parse_envelope(HEAD + SHAPES["unterminated-quote"])
    assert error == "invalid RFC 5424 structured data"
    assert body.startswith('[a k="x')


def test_many_elements_merge_their_parameters():
    assert parse_structured_data("[a]" * 21_000) == {"a": {}}
    sd = '[a x="1"][b y="2" z="3\\]"][a w="4"]'
    assert parse_structured_data(sd) == {"a": {"x": "1", "w": "4"}, "b": {"y": "2", "z": "3]"}}


def test_names_longer_than_32_characters_are_not_sd_ids():
    assert parse_structured_data("[" + "n" * 33 + ' k="v"]') == {}
    assert parse_structured_data("[" + "n" * 32 + ' k="v"]') == {"n" * 32: {"k": "v"}}
