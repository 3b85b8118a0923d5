"""dsrouter as a contender of the shared harness's ``custom`` hook (full-parse shape).

    python bench/dsrouter_contender.py --port P --all OUT --sev SEV

Writes ``dsrouter.conf`` next to OUT (tcp input on 127.0.0.1:P, every event to OUT, severity >= 6
also to SEV, both JSON lines) and replaces itself (``os.execv``, same PID, so the harness's
SIGTERM reaches the daemon) with ``PY -m dsrouter run -c dsrouter.conf``. PY is
``$DSROUTER_PYTHON`` when set, else the interpreter running this script: the harness's ``{py}``
is its own venv, which has no dsrouter, so ``peers.sh`` passes the right one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import benchlib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--all", type=Path, required=True, help="every event, JSON lines")
    ap.add_argument("--sev", type=Path, required=True, help="severity >= 6 events, JSON lines")
    ap.add_argument("--framing", default="auto", help="the tcp input's framing option")
    ap.add_argument("--queue", default="disk", choices=list(benchlib.QUEUES))
    ap.add_argument("--workers", type=int, default=None, help="settings.workers (default: auto)")
    ap.add_argument("--udp", action="store_true", help="a UDP input instead of TCP")
    ap.add_argument("--no-raw", action="store_true", help="raw = false on both outputs")
    a = ap.parse_args()
    outdir = a.all.resolve().parent
    conf = outdir / "dsrouter.conf"
    text = benchlib.config_text(
        outdir / "dsrouter-data",
        a.all.resolve(),
        a.sev.resolve(),
        a.port,
        a.framing,
        a.queue,
        a.workers,
        a.udp,
        not a.no_raw,
    )
    conf.write_text(text)
    python = os.environ.get("DSROUTER_PYTHON") or sys.executable
    os.execv(python, [python, "-m", "dsrouter", "--log-json", "run", "-c", str(conf)])


if __name__ == "__main__":
    main()
