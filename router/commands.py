"""The bodies of the non-daemon CLI commands: check, dry-run, test, plugins, send."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson

from dsrouter.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, load
from dsrouter.errors import ConfigError


def check(args) -> int:
    """Validate the configuration; print a summary (or JSON) on stdout."""
    try:
        config, _, source = load(args)
    except ConfigError as exc:
        if not args.json:
            raise
        _print_json({"valid": False, "diagnostics": [d.to_json() for d in exc.diagnostics]})
        return EXIT_INVALID
    if args.json:
        _print_json({"valid": True, "diagnostics": [d.to_json() for d in config.warnings]})
        return EXIT_OK
    for d in config.warnings:
        print(d.render(), file=sys.stderr)
    print(
        f"{source}: OK — {len(config.inputs)} input(s), {len(config.outputs)} output(s), "
        f"{len(config.routes)} route(s), {len(config.tests)} test(s), "
        f"{len(config.warnings)} warning(s)"
    )
    return EXIT_OK


def _print_json(obj) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


def _read_inputs(files: list[str]) -> Iterator[tuple[str | None, int, bytes]]:
    """Yield ``(file name or None, 1-based line number, message)``; empty lines skipped."""
    named = len(files) > 1
    for name in files or ["-"]:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        label = ("<stdin>" if name == "-" else name) if named else None
        for n, line in enumerate(data.split(b"\n"), 1):
            line = line.rstrip(b"\r")
            if line.strip():
                yield label, n, line


def dry_run(args) -> int:
    """Route captured lines without delivering; JSON lines or a readable listing."""
    from dsrouter.ds import parse_batch
    from dsrouter.dsl import compile_routes

    config, _, _ = load(args)
    decide = compile_routes(config).decide
    items = list(_read_inputs(args.files))
    received_at = datetime.now(UTC).isoformat(timespec="microseconds")
    events = parse_batch([m for _, _, m in items], "dry-run", "", received_at)
    totals: Counter = Counter()
    out = sys.stdout.buffer
    for (label, n, _), ev in zip(items, events, strict=True):
        d = decide(ev)
        totals.update(d.routes)
        totals.update("output:" + o for o in d.outputs)
        totals["dropped"] += d.dropped
        if args.json:
            rec = {
                "line": n,
                "event": ev,
                "routes": list(d.routes),
                "outputs": list(d.outputs),
                "dropped": d.dropped,
            }
            if label is not None:
                rec = {"file": label, **rec}
            out.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        else:
            out.write(_describe(label, n, ev, d).encode())
    if not args.json:
        out.write(_summary(len(events), totals).encode())
    out.flush()
    return EXIT_OK


def _describe(label, n, ev, d) -> str:
    where = f"{label}:{n}" if label else f"line {n}"
    what = (
        f"{ev.get('module')} sev={ev.get('severity')} host={ev.get('host')} name={ev.get('name')!r}"
    )
    if ev.get("parse_error"):
        what += f" parse_error={ev['parse_error']!r}"
    verdict = "DROPPED" if d.dropped else "outputs: " + (", ".join(d.outputs) or "(none)")
    return f"{where}: {what}\n    routes: {', '.join(d.routes) or '(none)'}  {verdict}\n"


def _summary(count: int, totals: Counter) -> str:
    lines = [f"\n{count} event(s); {totals['dropped']} dropped"]
    for key, n in sorted(totals.items()):
        if key != "dropped":
            kind, _, name = key.rpartition(":")
            lines.append(f"  {'output' if kind else 'route '} {name:<30} {n}")
    return "\n".join(lines) + "\n"


def list_plugins(args) -> int:
    """Print every registered input and output type with its plugin and options."""
    from dsrouter.plugin import Plugins

    plugins = Plugins()
    for what, table in (("input", plugins.inputs), ("output", plugins.outputs)):
        for name, kind in sorted(table.items()):
            print(f"{what} {name}  (plugin {kind.plugin}) — {kind.help}")
            for opt in kind.options:
                default = "required" if opt.required else f"default {opt.default!r}"
                print(f"    {opt.name:<18} {opt.kind:<9} {default:<22} {opt.help}")
    return EXIT_OK


def send(args) -> int:
    """Send lines from a file, stdin or the built-in samples."""
    from dsrouter.options import parse_address
    from dsrouter.samples import sample_lines
    from dsrouter.transport import send_tcp, send_udp

    try:
        host, port = parse_address(args.target)
    except ValueError as exc:
        print(f"dsrouter send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.sample:
        messages = [line.encode() for line in sample_lines()]
    else:
        messages = [m for _, _, m in _read_inputs([args.file])]
    try:
        if args.proto == "udp":
            sent = send_udp(host, port, messages)
        else:
            sent = send_tcp(host, port, messages, framing="octet" if args.octet_count else "lf")
    except OSError as exc:
        print(
            f"dsrouter send: cannot send to {host}:{port}: {exc.strerror or exc}", file=sys.stderr
        )
        return EXIT_INVALID
    print(f"sent {sent} message(s) to {host}:{port} over {args.proto or 'tcp'}")
    return EXIT_OK


def run_tests(args) -> int:
    """Run the configuration's test blocks (see dsrouter.ruletest)."""
    from dsrouter.ruletest import run

    config, _, _ = load(args)
    return run(config)
