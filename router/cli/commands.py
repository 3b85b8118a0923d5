"""The bodies of the non-daemon CLI commands: check, dry-run, test, send."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson

from dsrouter.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, load, print_json
from dsrouter.errors import ConfigError


def check(args) -> int:
    """Validate the configuration; print a summary (or JSON) on stdout."""
    try:
        config, _, source = load(args)
    except ConfigError as exc:
        if not args.json:
            raise
        print_json({"valid": False, "diagnostics": [d.to_json() for d in exc.diagnostics]})
        return EXIT_INVALID
    if args.json:
        print_json({"valid": True, "diagnostics": [d.to_json() for d in config.warnings]})
        return EXIT_OK
    for d in config.warnings:
        print(d.render(), file=sys.stderr)
    print(
        f"{source}: OK — {len(config.inputs)} input(s), {len(config.outputs)} output(s), "
        f"{len(config.routes)} route(s), {len(config.tests)} test(s), "
        f"{len(config.warnings)} warning(s)"
    )
    return EXIT_OK


class InputError(Exception):
    """An input file named on the command line cannot be read (one line, no traceback)."""


def _read_inputs(files: list[str]) -> Iterator[tuple[str | None, int, bytes]]:
    """Yield ``(file name or None, 1-based line number, message)``; empty lines skipped."""
    named = len(files) > 1
    for name in files or ["-"]:
        data = sys.stdin.buffer.read() if name == "-" else read_input(name)
        label = ("<stdin>" if name == "-" else name) if named else None
        for n, line in enumerate(data.split(b"\n"), 1):
            line = line.rstrip(b"\r")
            if line.strip():
                yield label, n, line


def read_input(name: str) -> bytes:
    """The bytes of a regular file or a pipe (``<(zcat capture.gz)``); raises InputError.

    Directories and devices are refused: ``dry-run /dev/zero`` would never end.
    """
    try:
        mode = os.stat(name).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            what = "it is a directory" if stat.S_ISDIR(mode) else "not a regular file or a pipe"
            raise InputError(f"cannot read '{name}': {what}")
        with open(name, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read '{name}': {exc.strerror or exc}") from None


def read_all(files: list[str], command: str) -> list[tuple[str | None, int, bytes]] | None:
    """Every input line, or None after printing the one-line reason on stderr."""
    try:
        return list(_read_inputs(files))
    except InputError as exc:
        print(f"dsrouter {command}: {exc}", file=sys.stderr)
        return None


BATCH = 1024  # lines parsed and routed at a time; the progress bar advances per batch


def dry_run(args) -> int:
    """Route captured lines without delivering; JSON lines or a readable listing.

    ``--explain`` adds each route's verdict and why; ``--coverage`` lists how many events each
    route claimed and the routes that never matched. A summary table closes the human output
    (with ``--json`` it goes to stderr, and only with ``--coverage``: stdout stays JSON lines).
    """
    from dsrouter.dsl import compile_routes
    from dsrouter.report import Tally, progress_for

    config, _, _ = load(args)
    items = read_all(args.files, "dry-run")
    if items is None:
        return EXIT_USAGE
    items = _whole_json_files(items)
    table = compile_routes(config)
    tally = Tally(table.route_names)
    progress = progress_for(len(items), sys.stderr)
    emit = _json_line if args.json else _human_line
    route = table.explain if args.explain else table.decide
    out = sys.stdout.buffer
    received_at = datetime.now(UTC).isoformat(timespec="microseconds")
    try:
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            _route_batch(chunk, received_at, route, emit, tally, out, args.explain)
            if progress is not None:
                progress.update(len(chunk))
        if progress is not None:
            progress.close()
        _finish(args, tally, table.counters(), [b.name for b in config.outputs], out)
    except BrokenPipeError:  # `dsrouter dry-run capture.log | head`: stop quietly
        _silence_stdout()
        return EXIT_INVALID
    return EXIT_OK


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at the null device so the exit flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _whole_json_files(items: list) -> list:
    """A file that is one (pretty-printed) SNS JSON document becomes one item."""
    from dsrouter.ds.sns import parse_sns_document

    out, i = [], 0
    while i < len(items):
        label, n, first = items[i]
        j = i
        while j < len(items) and items[j][0] == label:
            j += 1
        if j - i > 1 and first.lstrip()[:1] in (b"{", b"["):
            text = b"\n".join(m for _, _, m in items[i:j])
            if parse_sns_document(text.decode("utf-8", "replace")) is not None:
                out.append((label, n, text))
                i = j
                continue
        out.extend(items[i:j])
        i = j
    return out


def _parse_chunk(chunk, received_at) -> list:
    """``(label, n, event)`` for every item: SNS JSON documents give their events, the rest
    is parsed as syslog."""
    from dsrouter.ds import parse_batch
    from dsrouter.ds.sns import parse_sns_document

    parsed: list = [None] * len(chunk)
    for k, (_, _, m) in enumerate(chunk):
        if m.lstrip()[:1] in (b"{", b"["):
            parsed[k] = parse_sns_document(m.decode("utf-8", "replace"), "dry-run", received_at)
    plain = [k for k, p in enumerate(parsed) if p is None]
    events = parse_batch([chunk[k][2] for k in plain], "dry-run", "", received_at)
    for k, ev in zip(plain, events, strict=True):
        parsed[k] = [ev]
    return [(label, n, ev) for (label, n, _), evs in zip(chunk, parsed, strict=True) for ev in evs]


def _route_batch(chunk, received_at, route, emit, tally, out, explain: bool) -> None:
    add = tally.add
    for label, n, ev in _parse_chunk(chunk, received_at):
        result = route(ev)
        decision = result.decision if explain else result
        add(decision)
        out.write(emit(label, n, ev, decision, result if explain else None))


def _finish(args, tally, counters: dict, output_names: list[str], out) -> None:
    """The closing summary (and coverage): stdout for humans, stderr beside ``--json``."""
    text = tally.summary(counters, output_names)
    if args.coverage:
        text += tally.coverage()
    if not args.json:
        out.write(text.encode())
        out.flush()
        return
    out.flush()
    if args.coverage:
        sys.stderr.write(text)
        sys.stderr.flush()


def _json_line(label, n, ev, d, explanation) -> bytes:
    """The ``dry-run --json`` record; contract keys first, ``explain`` appended when asked."""
    from dsrouter.report import explain_json

    rec = {
        "line": n,
        "event": ev,
        "routes": list(d.routes),
        "outputs": list(d.outputs),
        "dropped": d.dropped,
    }
    if label is not None:
        rec = {"file": label, **rec}
    if explanation is not None:
        rec["explain"] = explain_json(explanation)
    return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE, default=str)


def _human_line(label, n, ev, d, explanation) -> bytes:
    from dsrouter.report import render_explain

    where = f"{label}:{n}" if label else f"line {n}"
    what = (
        f"{ev.get('module')} sev={ev.get('severity')} host={ev.get('host')} name={ev.get('name')!r}"
    )
    if ev.get("parse_error"):
        what += f" parse_error={ev['parse_error']!r}"
    if explanation is not None:
        return f"{where}: {what}\n{render_explain(explanation)}".encode()
    verdict = "DROPPED" if d.dropped else "outputs: " + (", ".join(d.outputs) or "(none)")
    return f"{where}: {what}\n    routes: {', '.join(d.routes) or '(none)'}  {verdict}\n".encode()


def send(args) -> int:
    """Send lines from a file, stdin or the built-in samples."""
    from dsrouter.defaults import DEFAULT_SEND_TARGET
    from dsrouter.ingest.transport import send_tcp, send_udp
    from dsrouter.options import parse_address
    from dsrouter.samples import sample_lines

    if not args.sample and args.file is None:
        need = "give HOST:PORT then FILE ('-' for stdin), or --sample"
        print(f"dsrouter send: {need}", file=sys.stderr)
        return EXIT_USAGE
    if args.octet_count and args.proto == "udp":
        print("dsrouter send: --octet-count frames TCP; it cannot go with --udp", file=sys.stderr)
        return EXIT_USAGE
    try:
        host, port = parse_address(args.target or DEFAULT_SEND_TARGET)
    except ValueError as exc:
        print(f"dsrouter send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.sample:
        messages = [line.encode() for line in sample_lines()]
    else:
        found = read_all([args.file], "send")
        if found is None:
            return EXIT_USAGE
        messages = [m for _, _, m in found]
    proto = args.proto or "tcp"
    try:
        if proto == "udp":
            sent = send_udp(host, port, messages)
        else:
            sent = send_tcp(host, port, messages, framing="octet" if args.octet_count else "lf")
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = f"{host}:{port} over {proto}"
        print(f"dsrouter send: cannot send to {where}: {reason}", file=sys.stderr)
        return EXIT_INVALID
    print(f"sent {sent} message(s) to {host}:{port} over {proto}")
    return EXIT_OK


def run_tests(args) -> int:
    """Run the configuration's test blocks (see dsrouter.ruletest); ``--junit FILE`` too."""
    from dsrouter.ruletest import run

    config, _, source = load(args)
    try:
        return run(config, sys.stdout, junit=args.junit, name=source)
    except OSError as exc:
        print(f"dsrouter test: cannot write {args.junit}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
