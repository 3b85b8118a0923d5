"""The ``windows_eventlog`` output: each event written to a Windows Event Log through pywin32.

``output eventlog { type = "windows_eventlog", source = "Deep Security", log = "Application" }``
writes every event with ``ReportEventW`` as that event source (the mapping is in
:mod:`dsrouter.plugins.eventlog_format`). The output never registers its source: an
administrator does it once with ``dsrouter eventlog install-source``, and ``open()`` refuses to
start while the source is missing from
``HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\<log>\\<source>`` (Windows would
otherwise write the events to the Application log under a source it cannot render). Off
Windows, or without pywin32 (``pip install "dsrouter[windows]"``), ``open()`` refuses too, so
the daemon does not start; ``dsrouter check`` validates the options on every platform.

Outcomes, per event and in batch order: an error that no retry can fix for that event
(:data:`PERMANENT_ERRORS`: an invalid parameter, a record too large) dead-letters that event
alone and the batch goes on; any other failure (the Event Log service stopped or restarting, a
stale handle, low memory, access denied by a log's ACL) retries that event and every later one,
with the handle registered afresh before the retry. Earlier events count as delivered.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from dsrouter.api import (
    Event,
    Option,
    Output,
    OutputContext,
    OutputType,
    PartialFailure,
    PermanentFailure,
    RetryLater,
    Size,
    hookimpl,
)

from .eventlog_format import (
    Layout,
    Record,
    check_event_id_base,
    check_log,
    check_max_message,
    check_max_raw_data,
    check_name,
    check_severity,
    render,
)

EVENTLOG_KEY = r"SYSTEM\CurrentControlSet\Services\EventLog"
#: The message file ``install-source`` registers: .NET Framework 4's, whose entries 0-65535
#: are all ``%1`` (what .NET's EventLog.CreateEventSource and PowerShell's New-EventLog use).
MESSAGE_FILES = (
    r"%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll",
    r"%SystemRoot%\Microsoft.NET\Framework\v4.0.30319\EventLogMessages.dll",
)
NEEDS_PYWIN32 = 'needs pywin32: pip install "dsrouter[windows]"'

#: Win32 errors of ReportEvent that concern the event itself: retrying it cannot help.
PERMANENT_ERRORS = {
    87: "ERROR_INVALID_PARAMETER",
    534: "ERROR_ARITHMETIC_OVERFLOW",  # the event is larger than the log accepts
    1734: "RPC_S_INVALID_BOUND",  # raw data or strings too large (Windows Vista and later)
    1783: "RPC_X_BAD_STUB_DATA",  # too large (Windows XP)
}


def source_key(log: str, source: str) -> str:
    return f"{EVENTLOG_KEY}\\{log}\\{source}"


def install_hint(source: str, log: str) -> str:
    cmd = f'dsrouter eventlog install-source --source "{source}" --log "{log}"'
    return f"run `{cmd}` as administrator"


# ---- the registry (Windows only) ---------------------------------------------------------


def registered_log(source: str) -> str | None:
    """The log whose key holds ``source`` (Windows routes a source to that log), or None."""
    if sys.platform != "win32":
        return None
    import winreg

    hklm = winreg.HKEY_LOCAL_MACHINE
    with winreg.OpenKey(hklm, EVENTLOG_KEY) as logs:
        n = 0
        while True:
            try:
                log = winreg.EnumKey(logs, n)
            except OSError:
                return None
            n += 1
            try:
                winreg.OpenKey(logs, f"{log}\\{source}").Close()
            except OSError:
                continue
            return log


def source_problem(source: str, log: str) -> str | None:
    """Why ``source`` cannot write to ``log`` as registered, with the fix; None when it can."""
    where = registered_log(source)
    if where is not None and where.lower() == log.lower():
        return None
    if where is not None:
        remove = f'dsrouter eventlog remove-source --source "{source}" --log "{where}"'
        return (
            f'event source "{source}" is registered for the "{where}" log, not "{log}" '
            f'(Windows would write to "{where}"): set log = "{where}", or run `{remove}` and '
            f"then {install_hint(source, log)}"
        )
    return (
        f'event source "{source}" is not registered in the "{log}" event log: '
        f"{install_hint(source, log)}"
    )


def message_file() -> tuple[str, bool]:
    """The message file to register (unexpanded) and whether it exists on this machine."""
    for path in MESSAGE_FILES:
        if os.path.exists(os.path.expandvars(path)):
            return path, True
    return MESSAGE_FILES[0], False


class Win32EventLog:
    """The pywin32 calls the output makes; built on Windows only."""

    def __init__(self) -> None:
        try:
            self.evtlog = importlib.import_module("win32evtlog")
            self.error = importlib.import_module("pywintypes").error
        except ImportError:
            raise RuntimeError(f"the windows_eventlog output {NEEDS_PYWIN32}") from None

    def register(self, source: str) -> Any:
        return self.evtlog.RegisterEventSource(None, source)

    def report(self, handle: Any, rec: Record) -> None:
        self.evtlog.ReportEvent(
            handle, rec.type, rec.category, rec.event_id, None, list(rec.strings), rec.data
        )

    def deregister(self, handle: Any) -> None:
        self.evtlog.DeregisterEventSource(handle)

    def error_code(self, exc: BaseException) -> int | None:
        return exc.winerror if isinstance(exc, self.error) else None


# ---- the output --------------------------------------------------------------------------


class EventLogOutput(Output):
    """Write each event with ReportEventW through one registered source handle."""

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        super().__init__(name, options, context)
        self.source: str = options.get("source", "Deep Security")
        self.log: str = options.get("log", "Application")
        problem = check_name(self.source) or check_log(self.log)
        if problem:
            raise ValueError(f"source/log: {problem}")
        self.layout = Layout.from_options(options)
        self.api: Any = None
        self.handle: Any = None

    def describe(self) -> str:
        return f'Windows Event Log "{self.log}", source "{self.source}"'

    def open(self) -> None:
        """Refuse to start off Windows, without pywin32, or while the source is missing.

        Each refusal is a PermanentFailure: retrying cannot help, so the daemon does not
        start (any other exception from open() would let it start and retry the open)."""
        if sys.platform != "win32":
            raise PermanentFailure(
                "the windows_eventlog output writes to the Windows Event Log and runs on Windows "
                f"only (this system is {sys.platform}): remove it from this configuration or "
                "route these events to another output"
            )
        try:
            api = Win32EventLog()
        except RuntimeError as exc:  # no pywin32
            raise PermanentFailure(str(exc)) from None
        problem = source_problem(self.source, self.log)
        if problem:
            raise PermanentFailure(problem)
        self.api = api
        self.handle = api.register(self.source)

    def reopen(self) -> None:
        """Register the source afresh (after a reload, or an Event Log service restart)."""
        self._drop_handle()

    def close(self) -> None:
        self._drop_handle()
        self.api = None

    def send(self, events: Sequence[Event]) -> None:
        if not events:
            return
        handle = self._handle()
        rejected: dict[int, PermanentFailure] = {}
        for i, event in enumerate(events):
            try:
                rec = render(event, self.layout)
            except Exception as exc:  # a value no str() can show: never retried
                rejected[i] = PermanentFailure(f"cannot render event: {exc!r}")
                continue
            try:
                self.api.report(handle, rec)
            except Exception as exc:
                failure = self._permanent(exc)
                if failure is None:
                    self._drop_handle()
                    self._transient(i, len(events), rejected, self._reason(exc))
                rejected[i] = failure
        if rejected:
            if len(events) == 1:
                raise rejected[0]
            raise PartialFailure(f"{len(rejected)} of {len(events)} rejected", rejected=rejected)

    # -- helpers --------------------------------------------------------------------------
    def _handle(self) -> Any:
        if self.api is None:
            raise RetryLater("windows_eventlog output is not open")
        if self.handle is None:
            try:
                self.handle = self.api.register(self.source)
            except Exception as exc:
                raise RetryLater(f"RegisterEventSource failed: {self._reason(exc)}") from None
        return self.handle

    def _drop_handle(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None and self.api is not None:
            try:
                self.api.deregister(handle)
            except Exception:  # a stale handle: nothing left to release
                pass

    def _permanent(self, exc: BaseException) -> PermanentFailure | None:
        """The dead letter for an error that concerns this event only, else None (retry)."""
        code = self.api.error_code(exc)
        if code in PERMANENT_ERRORS:
            return PermanentFailure(
                f"ReportEvent refused the event: {self._reason(exc)}",
                response={"winerror": code, "error": PERMANENT_ERRORS[code]},
            )
        if code is None and isinstance(exc, TypeError | ValueError | OverflowError):
            return PermanentFailure(f"ReportEvent refused the event: {exc!r}")
        return None

    def _reason(self, exc: BaseException) -> str:
        code = self.api.error_code(exc) if self.api is not None else None
        if code is None:
            return repr(exc)
        return f"[WinError {code}] {getattr(exc, 'strerror', '') or exc}"

    @staticmethod
    def _transient(at: int, n: int, rejected: dict[int, PermanentFailure], reason: str) -> NoReturn:
        """Retry events ``at`` and later; those before were written (or are in ``rejected``)."""
        if at == 0:
            raise RetryLater(reason)
        raise PartialFailure(reason, rejected=rejected, retry=range(at, n))


OPTIONS = (
    Option(
        "source",
        "string",
        "Deep Security",
        help="event source name (register it with: dsrouter eventlog install-source)",
        validate=check_name,
    ),
    Option("log", "string", "Application", help="event log to write to", validate=check_log),
    Option(
        "event_id_base",
        "int",
        0,
        help="added to every event ID (base + 1000 x category + signature ID mod 1000)",
        validate=check_event_id_base,
    ),
    Option(
        "error_severity",
        "int",
        8,
        help="DS severity (0-10) from which an event is an Error",
        validate=check_severity,
    ),
    Option(
        "warning_severity",
        "int",
        4,
        help="DS severity (0-10) from which an event is a Warning",
        validate=check_severity,
    ),
    Option(
        "max_message",
        "int",
        8192,
        help="characters of the description (%1) kept; longer ones are cut with a marker",
        validate=check_max_message,
    ),
    Option("raw_data", "bool", False, help="attach the message as received as binary data"),
    Option(
        "max_raw_data",
        "size",
        Size(4096),
        help="bytes of raw data kept (at most 61440)",
        validate=check_max_raw_data,
    ),
)


def _create(name: str, options: Mapping[str, Any], context: OutputContext) -> EventLogOutput:
    return EventLogOutput(name, options, context)


@hookimpl
def dsrouter_register_outputs(register) -> None:
    """Register the ``windows_eventlog`` output type."""
    register(
        OutputType(
            "windows_eventlog",
            _create,
            OPTIONS,
            help="Windows Event Log through ReportEvent (Windows, pywin32)",
        )
    )
