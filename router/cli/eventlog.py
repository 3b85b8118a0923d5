"""``dsrouter eventlog install-source|remove-source``: the Event Log source, registered by hand.

The ``windows_eventlog`` output never registers its source (that needs administrator rights,
which the daemon should not hold). ``install-source`` writes
``HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\<log>\\<source>`` through pywin32's
``win32evtlogutil.AddSourceToRegistry``, with the .NET Framework 4 message file whose entries
are all ``%1`` (so Event Viewer shows the description dsrouter wrote) and the error, warning
and information types; ``remove-source`` deletes that key. Both are idempotent. Exit codes: 0
done (or nothing to do), 1 failed (not Windows, no pywin32, access denied, the source belongs
to another log), 2 an unusable name.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from dsrouter.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE

ACCESS_DENIED = 5


def eventlog(args) -> int:
    """Dispatch ``args.action`` (``install-source`` or ``remove-source``)."""
    if sys.platform != "win32":
        return _fail(
            f"'eventlog {args.action}' registers a Windows Event Log source and runs on Windows "
            f"only (this system is {sys.platform})"
        )
    fmt = _plugin("eventlog_format")
    for what, problem in (
        ("--source", fmt.check_name(args.source)),
        ("--log", fmt.check_log(args.log)),
    ):
        if problem:
            print(f"dsrouter: {what}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    try:
        util = importlib.import_module("win32evtlogutil")
        error = importlib.import_module("pywintypes").error
    except ImportError:
        return _fail(f"'eventlog {args.action}' {_plugin('eventlog').NEEDS_PYWIN32}")
    action = install_source if args.action == "install-source" else remove_source
    try:
        return action(util, args.source, args.log)
    except (error, OSError) as exc:
        return _fail(_explain(exc, args))


def install_source(util: Any, source: str, log: str) -> int:
    plugin, fmt = _plugin("eventlog"), _plugin("eventlog_format")
    where = plugin.registered_log(source)
    if where is not None and where.lower() != log.lower():
        return _fail(
            f'event source "{source}" is already registered for the "{where}" log (a source '
            f'belongs to one log): run `dsrouter eventlog remove-source --source "{source}" '
            f'--log "{where}"` first'
        )
    path, present = plugin.message_file()
    types = fmt.ERROR | fmt.WARNING | fmt.INFORMATION
    util.AddSourceToRegistry(source, path, eventLogType=log, eventLogFlags=types)
    key = plugin.source_key(log, source)
    print(f'registered event source "{source}" in the "{log}" log (HKLM\\{key})')
    print(f"messages: {path}")
    if not present:
        print(
            f"dsrouter: warning: {path} is not on this machine (it comes with .NET Framework 4): "
            "Event Viewer will say the description cannot be found and list the strings below it",
            file=sys.stderr,
        )
    return EXIT_OK


def remove_source(util: Any, source: str, log: str) -> int:
    where = _plugin("eventlog").registered_log(source)
    if where is None:
        print(f'event source "{source}" is not registered: nothing to remove')
        return EXIT_OK
    if where.lower() != log.lower():
        return _fail(f'event source "{source}" is registered for the "{where}" log, not "{log}"')
    util.RemoveSourceFromRegistry(source, eventLogType=where)
    print(f'removed event source "{source}" from the "{where}" log')
    return EXIT_OK


def _plugin(name: str) -> Any:
    """The output's module (``dsrouter.plugins`` is loaded by name, as plugin.py does)."""
    return importlib.import_module(f"dsrouter.plugins.{name}")


def _explain(exc: BaseException, args) -> str:
    code = getattr(exc, "winerror", None)
    text = getattr(exc, "strerror", None) or str(exc)
    if code == ACCESS_DENIED:
        return (
            f"'eventlog {args.action}': access denied writing the registry "
            "(HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog): run it from an elevated "
            "prompt (Run as administrator)"
        )
    return f"'eventlog {args.action}' failed: [WinError {code}] {text}"


def _fail(message: str) -> int:
    print(f"dsrouter: {message}", file=sys.stderr)
    return EXIT_INVALID
