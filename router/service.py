"""dsrouter as a Windows service: pywin32's service framework, hosted by ``python.exe``.

``dsrouter service install`` (:mod:`dsrouter.cli.service`) registers the service ``dsrouter``
with the command line ``"<python.exe>" -m dsrouter.service -c "<config>"``, and this module is
what that command runs. :func:`main` hands :class:`DsrouterService` to pywin32's
``servicemanager``, which connects to the service control manager and calls ``SvcRun`` on a
thread of its own: it loads the configuration, runs the :class:`~dsrouter.daemon.Daemon` with
``console=False`` and reports RUNNING once every input listens. A stop request (or the
system's shutdown) calls ``SvcStop``, which starts the daemon's ordinary drain: held batches
are committed, workers finish within ``shutdown_timeout``, then the service reports STOPPED.

Logs (JSON lines, and the start-up banner) go to ``%ProgramData%\\dsrouter\\dsrouter.log``,
renamed to ``.1`` .. ``.3`` past 10 MiB; start, stop and start-up failures also go to the
Application event log under the source ``dsrouter``. A failed start leaves its reason in
``service-error.txt`` beside the log for ``dsrouter service start`` to print.

``python.exe`` rather than pywin32's ``pythonservice.exe`` hosts the service: the interpreter
that installed dsrouter runs it, with its own ``sys.path`` (a venv's, the embeddable build's
``._pth``), and nothing is moved or copied into the Python installation (``docs/windows.md``).
pywin32 is imported inside Windows-only functions only, so this module imports anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

from dsrouter.defaults import DEFAULT_CONFIG

SERVICE_NAME = "dsrouter"
DISPLAY_NAME = "dsrouter (Deep Security event router)"
DESCRIPTION = (
    "Receives Trend Micro Deep Security events over syslog, routes them with the rules of its "
    "configuration and delivers them to its outputs."
)
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
_DEFAULT_DATA_LINE = 'data_dir = "./dsrouter-data"'


def home() -> Path:
    """``%ProgramData%\\dsrouter``: the service's default config, its data and its log."""
    return _program_data() / SERVICE_NAME


def _program_data() -> Path:
    """The all-users application data folder, asked of the shell on Windows: a service's
    environment need not name it as a user's does (Wine gives services C:\\users\\Public)."""
    if sys.platform == "win32":
        import ctypes

        buf = ctypes.create_unicode_buffer(260)
        csidl_common_appdata = 0x23
        if ctypes.windll.shell32.SHGetFolderPathW(None, csidl_common_appdata, None, 0, buf) == 0:
            return Path(buf.value)
    return Path(os.environ.get("ProgramData") or "C:\\ProgramData")


def log_path() -> Path:
    return home() / "dsrouter.log"


def error_path() -> Path:
    """Why the last start failed (removed when a start succeeds)."""
    return home() / "service-error.txt"


def dsl_string(text: str) -> str:
    """``text`` as a configuration string literal (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_text(data_dir: str) -> str:
    """The embedded default configuration with ``data_dir`` set to ``data_dir``."""
    assert _DEFAULT_DATA_LINE in DEFAULT_CONFIG
    body = DEFAULT_CONFIG.replace(_DEFAULT_DATA_LINE, f"data_dir = {dsl_string(data_dir)}")
    head = (
        "# Written by `dsrouter service install` for the Windows service: edit it, then run\n"
        "# `dsrouter check -c` on it and `dsrouter service stop` and `start`.\n"
    )
    return head + body.split("\n", 1)[1]


def host_args(config: Path) -> list[str]:
    """The arguments after ``python.exe`` in the service's command line."""
    return ["-m", "dsrouter.service", "-c", str(config)]


class LogFile:
    """A text stream for a service's stdout and stderr: appends to ``path``, flushes every
    write and, past ``max_bytes``, shifts ``path`` to ``path.1`` (``.1`` to ``.2`` ...)."""

    encoding = "utf-8"

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS):
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8", errors="replace")
        self.size = self._fh.tell()

    def write(self, text: str) -> int:
        with self._lock:
            n = self._fh.write(text)
            self._fh.flush()
            self.size += len(text.encode("utf-8", "replace"))
            if self.size >= self.max_bytes:
                self._rotate()
            return n

    def _rotate(self) -> None:
        self._fh.close()
        with contextlib.suppress(OSError):  # a reader holding a file open on Windows: next time
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._fh = open(self.path, "a", encoding="utf-8", errors="replace")
        self.size = self._fh.tell()

    def flush(self) -> None:
        with self._lock:
            self._fh.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def serve(config: Path, host: Any) -> str | None:
    """Load ``config`` and run the daemon until ``host`` stops it; the reason it could not
    start, or None. ``host`` has ``stop_requested``, ``daemon`` and ``started()``."""
    from dsrouter import logs
    from dsrouter.cli.common import load, print_diagnostics
    from dsrouter.daemon import Daemon
    from dsrouter.errors import ConfigError, DsrouterError

    args = argparse.Namespace(config=str(config))
    try:
        cfg, plugins, source = load(args)
    except ConfigError as exc:
        print_diagnostics(exc.diagnostics)
        errors = [d.render().splitlines()[0] for d in exc.diagnostics if d.is_error]
        return f"invalid configuration {config}: " + "; ".join(errors or [str(exc)])
    except DsrouterError as exc:
        return str(exc)
    print_diagnostics(cfg.warnings)

    def reload_config():
        return load(args, plugins)[0]

    daemon = Daemon(cfg, plugins, logs.get_logger(), source, reload_config, console=False)
    daemon.on_started = host.started
    host.daemon = daemon
    if host.stop_requested:
        daemon.request_stop()
    try:
        asyncio.run(daemon.run())
    except DsrouterError as exc:  # StartupError: a port in use, a bad data_dir
        return str(exc)
    return None


def service_class(config: Path) -> type:
    """The ServiceFramework subclass that runs ``config`` (Windows, with pywin32)."""
    framework: Any = importlib.import_module("win32serviceutil").ServiceFramework
    win32service = importlib.import_module("win32service")
    servicemanager = importlib.import_module("servicemanager")

    class DsrouterService(framework):
        """Runs the daemon on the service thread; SvcStop starts its drain."""

        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.daemon: Any = None
            self.stop_requested = False

        def SvcRun(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_START_PENDING, waitHint=30000)
            failure = _run_logged(config, self, servicemanager)
            if failure is not None:  # pywin32 then reports STOPPED with a service error code
                raise ServiceStartError(failure) from None

        def started(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)
            with contextlib.suppress(OSError):
                error_path().unlink()
            servicemanager.LogInfoMsg(f"dsrouter is running with {config}; log: {log_path()}")

        def SvcStop(self) -> None:
            daemon = self.daemon
            timeout = daemon.shutdown_timeout if daemon is not None else 10.0
            hint = int((2 * timeout + 5) * 1000)  # the drain, then the workers' join
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=hint)
            self.stop_requested = True
            if daemon is not None:
                daemon.request_stop()

        SvcShutdown = SvcStop  # the system shuts down: the same drain

    return DsrouterService


class ServiceStartError(Exception):
    """The service could not start (the message is in the event log and the log file)."""


def _run_logged(config: Path, host: Any, servicemanager: Any) -> str | None:
    """:func:`serve` with stdout and stderr on the log file, failures in the event log."""
    from dsrouter import logs
    from dsrouter.runtime import install_console_handler

    stream = LogFile(log_path())
    sys.stdout = sys.stderr = stream  # type: ignore[assignment]
    logs.configure("info", json=True)
    install_console_handler(lambda _: True, service=True)  # outlive user logoffs
    try:
        failure = serve(config, host)
    except Exception as exc:  # a bug: keep the traceback in the log, name it in the event log
        import traceback

        traceback.print_exc()
        failure = f"unexpected error: {exc!r} (traceback in {log_path()})"
    if failure is not None:
        print(f"dsrouter: cannot start: {failure}", file=stream)
        with contextlib.suppress(OSError):
            error_path().write_text(failure + "\n", encoding="utf-8")
        servicemanager.LogErrorMsg(f"dsrouter cannot start: {failure}")
    else:
        servicemanager.LogInfoMsg("dsrouter has stopped")
    stream.flush()
    return failure


def main(argv: list[str] | None = None) -> int:
    """``python -m dsrouter.service -c FILE``: what the service control manager starts."""
    parser = argparse.ArgumentParser(prog="python -m dsrouter.service")
    parser.add_argument("-c", "--config", metavar="FILE", required=True)
    args = parser.parse_args(argv)
    if sys.platform != "win32":
        print(
            "dsrouter: dsrouter.service hosts the Windows service (Windows only)", file=sys.stderr
        )
        return 1
    servicemanager = importlib.import_module("servicemanager")
    error = importlib.import_module("pywintypes").error
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(service_class(Path(args.config)))
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except error as exc:
        if exc.winerror != 1063:  # ERROR_FAILED_SERVICE_CONTROLLER_CONNECT
            raise
        print(
            "dsrouter: this is the service's own command, started by Windows: use "
            "`dsrouter service start` (or `dsrouter run -c FILE` in a console)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
