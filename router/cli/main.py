"""The ``dsrouter`` command line: run, check, dry-run, test, plugins, send.

Exit codes: 0 success; 1 invalid configuration or failed rule tests; 2 usage error;
3 the daemon could not start (for example a port already in use).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dsrouter import __version__, logs
from dsrouter.cli.common import EXIT_INVALID, EXIT_OK, EXIT_STARTUP, load, print_diagnostics
from dsrouter.cli.scaffold import add_parser as add_plugin_parser
from dsrouter.errors import ConfigError, DsrouterError, StartupError

DESCRIPTION = """\
dsrouter receives Trend Micro Deep Security events over syslog (CEF or LEEF, UDP or TCP),
parses them into one normalized event, routes them with the rules in your configuration and
delivers them to outputs (files, stdout, and plugins).

Start here:
  dsrouter run                      run with the built-in config (127.0.0.1:5514, ./dsrouter-data)
  dsrouter send --sample            send one sample event of every DS module to it
  dsrouter check -c dsrouter.conf   validate your own configuration
  dsrouter dry-run -c dsrouter.conf capture.log   see where captured events would go
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dsrouter",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"dsrouter {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-json", action="store_true", help="JSON log lines even on a terminal")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cfg_help = "configuration file (default: the embedded default config)"

    run = sub.add_parser("run", help="run the daemon", description="Run the router until stopped.")
    run.add_argument("-c", "--config", metavar="FILE", help=cfg_help)
    run.add_argument(
        "--role",
        choices=["receive", "deliver", "all"],
        default="all",
        help="with settings { cluster_servers }: receive (inputs, publish to the cluster), "
        "deliver (outputs, from the cluster) or all (both; the default)",
    )

    check = sub.add_parser("check", help="validate a configuration and its rules")
    check.add_argument("-c", "--config", metavar="FILE", help=cfg_help)
    check.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    dry = sub.add_parser(
        "dry-run",
        help="route captured syslog lines without delivering anything",
        description="Read syslog lines (one message per line, an RFC 6587 octet count allowed) "
        "from FILEs or stdin ('-') and show the routes and outputs each would take.",
    )
    dry.add_argument("-c", "--config", metavar="FILE", help=cfg_help)
    dry.add_argument("files", nargs="*", metavar="FILE", help="input files; '-' or none for stdin")
    dry.add_argument("--json", action="store_true", help="one JSON object per message")
    dry.add_argument(
        "--explain",
        action="store_true",
        help="show every route's verdict and why (with --json: an 'explain' key)",
    )
    dry.add_argument(
        "--coverage",
        action="store_true",
        help="count the events each route claimed and list the routes that never matched",
    )

    test = sub.add_parser("test", help="run the configuration's test blocks")
    test.add_argument("-c", "--config", metavar="FILE", help=cfg_help)
    test.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")

    plugins = sub.add_parser(
        "plugins",
        help="list installed plugins: distribution, version, types, functions, options, errors",
    )
    plugins.add_argument("-c", "--config", metavar="FILE", help="honour its disable_plugins")
    plugins.add_argument("--json", action="store_true", help="one JSON document, for tools")

    send = sub.add_parser(
        "send",
        help="send syslog lines or built-in sample events to a router",
        description="Send each line of FILE (or stdin '-'), or one sample event of every DS "
        "module (--sample), to HOST:PORT.",
    )
    proto = send.add_mutually_exclusive_group()
    proto.add_argument(
        "--tcp",
        dest="proto",
        action="store_const",
        const="tcp",
        help="TCP, one message per line (the default)",
    )
    proto.add_argument(
        "--udp", dest="proto", action="store_const", const="udp", help="UDP datagrams"
    )
    send.add_argument("--octet-count", action="store_true", help="TCP with RFC 6587 octet counting")
    send.add_argument(
        "target",
        metavar="HOST:PORT",
        nargs="?",
        help="default 127.0.0.1:5514 (the embedded default's listeners); a FILE needs it first",
    )
    what = send.add_mutually_exclusive_group()  # neither: cmd_send says what it needs
    what.add_argument("file", nargs="?", metavar="FILE", help="file of syslog lines; '-' for stdin")
    what.add_argument("--sample", action="store_true", help="send built-in sample DS events")
    _delivery_parsers(sub, cfg_help)
    _tls_parser(sub)
    _windows_parsers(sub, cfg_help)
    add_plugin_parser(sub)  # dsrouter plugin new NAME (router/cli/scaffold.py)
    return p


def _delivery_parsers(sub, cfg_help: str) -> None:
    reload = sub.add_parser(
        "reload",
        help="make the running daemon re-read its configuration (same as SIGHUP)",
        description="Ask the daemon that uses this configuration's data_dir to reload it; "
        "prints whether the new configuration was taken (exit 0) or refused (exit 1, the old "
        "one keeps running); exit 3 when no daemon runs.",
    )
    reload.add_argument("-c", "--config", metavar="FILE", help=cfg_help)

    dlq = sub.add_parser("dlq", help="inspect, replay or purge dead letters")
    dlq.add_argument("action", choices=["list", "show", "replay", "purge"])
    dlq.add_argument("-c", "--config", metavar="FILE", help=cfg_help)
    dlq.add_argument("--output", metavar="NAME", help="only this output's dead letters")
    dlq.add_argument(
        "--id",
        dest="ids",
        action="append",
        metavar="ID",
        help="only this dead letter (repeatable; see 'dlq list')",
    )

    queue = sub.add_parser("queue", help="per-output queue depth, oldest age and last error")
    queue.add_argument("action", choices=["status"])
    queue.add_argument("-c", "--config", metavar="FILE", help=cfg_help)
    queue.add_argument("--json", action="store_true", help="print the status as JSON")


def _tls_parser(sub) -> None:
    tls = sub.add_parser(
        "check-tls",
        help="connect to a TLS syslog receiver as a client would and explain the outcome",
        description="Make the handshake a Deep Security Manager would make with HOST:PORT "
        "(TLS 1.2+, server certificate and name verified) and explain what failed in plain "
        "words: expired, wrong CA, name mismatch, no client certificate, protocol too old.",
    )
    tls.add_argument("target", metavar="HOST:PORT")
    tls.add_argument("--ca", metavar="FILE", help="CA bundle to trust (default: the system's)")
    tls.add_argument("--cert", metavar="FILE", help="client certificate (PEM) to present")
    tls.add_argument("--key", metavar="FILE", help="its private key (default: in --cert)")
    tls.add_argument("--name", metavar="N", help="server name to verify (default: HOST)")
    tls.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="connect and handshake"
    )


def _windows_parsers(sub, cfg_help: str) -> None:
    eventlog = sub.add_parser(
        "eventlog",
        help="register the Windows Event Log source (Windows, needs admin)",
        description="Register the event source that windows_eventlog outputs write as; an "
        "explicit install step, since the daemon never registers it itself.",
    )
    eventlog.add_argument("action", choices=["install-source", "remove-source"])
    eventlog.add_argument("--source", metavar="NAME", default="Deep Security")
    eventlog.add_argument("--log", metavar="LOG", default="Application")

    service = sub.add_parser(
        "service",
        help="run the daemon as a Windows service (Windows, needs admin)",
        description="Install, remove, start or stop dsrouter as a Windows service that runs "
        "'dsrouter run -c FILE'; its data directory defaults to %ProgramData%\\dsrouter.",
    )
    service.add_argument("action", choices=["install", "remove", "start", "stop"])
    service.add_argument("-c", "--config", metavar="FILE", help=cfg_help)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, json=True if args.log_json else None)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print_diagnostics(exc.diagnostics)
        return EXIT_INVALID
    except StartupError as exc:
        print(f"dsrouter: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except DsrouterError as exc:
        print(f"dsrouter: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_run(args) -> int:
    from dsrouter.daemon import run_daemon

    config, plugins, source = load(args)
    print_diagnostics(config.warnings)
    if args.role != "all" and not config.settings.get("cluster_servers"):
        raise DsrouterError(
            f"--role {args.role} needs a cluster: without settings {{ cluster_servers = [...] }}"
            " one process receives and delivers (leave out --role)"
        )

    def reload_config():
        new, _, _ = load(args, plugins)
        return new

    return run_daemon(config, plugins, logs.get_logger(), source, reload_config, args.role)


def cmd_check(args) -> int:
    from dsrouter.cli.commands import check

    return check(args)


def cmd_dry_run(args) -> int:
    from dsrouter.cli.commands import dry_run

    return dry_run(args)


def cmd_test(args) -> int:
    from dsrouter.cli.commands import run_tests

    return run_tests(args)


def cmd_plugins(args) -> int:
    from dsrouter.cli.plugins import list_plugins

    return list_plugins(args)


def cmd_plugin(args) -> int:
    from dsrouter.cli.scaffold import plugin_command

    return plugin_command(args)


def cmd_send(args) -> int:
    from dsrouter.cli.commands import send

    return send(args)


def cmd_reload(args) -> int:
    from dsrouter.cli.delivery import reload

    return reload(args)


def cmd_dlq(args) -> int:
    from dsrouter.cli.delivery import dlq

    return dlq(args)


def cmd_queue(args) -> int:
    from dsrouter.cli.delivery import queue_status

    return queue_status(args)


def cmd_check_tls(args) -> int:
    from dsrouter.cli.tlscheck import check_tls

    return check_tls(args)


def cmd_eventlog(args) -> int:
    from dsrouter.cli.eventlog import eventlog

    return eventlog(args)


def cmd_service(args) -> int:
    from dsrouter.cli.service import service

    return service(args)


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "dry-run": cmd_dry_run,
    "test": cmd_test,
    "plugins": cmd_plugins,
    "plugin": cmd_plugin,
    "send": cmd_send,
    "reload": cmd_reload,
    "dlq": cmd_dlq,
    "queue": cmd_queue,
    "check-tls": cmd_check_tls,
    "eventlog": cmd_eventlog,
    "service": cmd_service,
}
