"""Parse cost at 1x and 8x the size of hostile inputs: every ratio should be near 8 (linear).

    python3 bench/linearity.py [--base 8192] [--runs 5]

Each family is a message shape that once made a backtracking parser slow (RFC 5424 structured
data with '[' and quotes, CEF runs of backslashes, '=' and pipes, LEEF delimiters, octet
counts). For each, the whole parse (``dsrouter.ds.parse_message``) and the TCP framer run on
an input of BASE bytes and of 8 x BASE bytes; the table shows the best CPU time of RUNS and the
ratio. A quadratic parser shows ~64, a cubic one ~512.
"""

from __future__ import annotations

import argparse
import time

from dsrouter.ds import parse_message
from dsrouter.ingest.framing import Framer

HEAD = "<134>1 2026-11-27T23:18:32Z host app - - "
CEF = "<134>Nov 27 23:18:32 web-01 CEF:0|Trend Micro|Deep Security Agent|20.0|1000552|XSS|8|"
LEEF = "<134>Nov 27 23:18:32 web-01 LEEF:2.0|Trend Micro|Deep Security Agent|20.0|1000552|"

FAMILIES = {
    "sd-brackets-in-quotes": lambda n: HEAD + '[ k="' + "[" * n + ' "] x',
    "sd-unterminated-quote": lambda n: HEAD + '[a k="' + "x" * n,
    "sd-many-quotes": lambda n: HEAD + "[a " + '"' * n,
    "sd-many-elements": lambda n: HEAD + "[a]" * (n // 3) + " x",
    "cef-backslashes": lambda n: CEF + "msg=" + "\\" * n,
    "cef-equals-runs": lambda n: CEF + "a=" * (n // 2),
    "cef-pipes": lambda n: "CEF:0" + "|" * n,
    "cef-many-keys": lambda n: CEF + " ".join(f"k{i}=v" for i in range(n // 6)),
    "leef-tabs": lambda n: LEEF + "\t" * n,
    "leef-escaped-tabs": lambda n: LEEF + "a=b#011" * (n // 7),
    "plain-spaces": lambda n: "<13>Nov 27 23:18:32 " + " " * n + "x",
}


def cpu(fn, arg, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.process_time()
        fn(arg)
        best = min(best, time.process_time() - t)
    return best


def framer_feed(data: bytes) -> None:
    f = Framer(max_message=1 << 24)
    f.feed(data)
    f.flush()


FRAMING = {
    "framing-bogus-counts": lambda n: b"5000 <13>x\n" * (n // 11),
    "framing-digit-lines": lambda n: b"1234567890\n" * (n // 11),
    "framing-lf-lt": lambda n: b"99 <" + b"\n<" * (n // 2),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=8192, help="bytes of the 1x input")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    print(f"| input | {a.base} B (ms) | {8 * a.base} B (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    rows = [(k, parse_message, f) for k, f in FAMILIES.items()]
    rows += [(k, framer_feed, f) for k, f in FRAMING.items()]
    for name, fn, make in rows:
        small, big = cpu(fn, make(a.base), a.runs), cpu(fn, make(8 * a.base), a.runs)
        ratio = big / small if small > 0 else float("nan")
        print(f"| {name} | {small * 1e3:.3f} | {big * 1e3:.3f} | {ratio:.1f} |")


if __name__ == "__main__":
    main()
