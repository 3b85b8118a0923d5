"""``dsrouter service install|remove|start|stop [-c FILE]``: the daemon as a Windows service.

``install`` checks the configuration, then registers the service ``dsrouter`` (automatic start)
whose command line is ``"<this python.exe>" -m dsrouter.service -c "<absolute config path>"``:
nothing is copied, the service reads the file where it is. Without ``-c`` it uses
``%ProgramData%\\dsrouter\\dsrouter.conf``, written with the embedded defaults (inputs on
127.0.0.1:5514, ``data_dir`` ``%ProgramData%\\dsrouter\\data``) unless it exists. Installing
again updates the command line. ``%ProgramData%\\dsrouter`` (config, data, log, and the control
channel's token) is limited to SYSTEM and Administrators. ``remove`` stops the service first and
leaves the files. ``start`` and ``stop`` wait until the service runs or has drained and stopped.
Exit codes: 0 done (or nothing to do); 1 failed (not Windows, no pywin32, access denied, an
invalid configuration); 3 the service stopped during start-up (its reason is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dsrouter.cli.common import EXIT_INVALID, EXIT_OK, EXIT_STARTUP, load

ACCESS_DENIED, SERVICE_EXISTS, NOT_ACTIVE, ALREADY_RUNNING, NO_SERVICE = 5, 1073, 1062, 1056, 1060
NOT_YET = (1061, 1052)  # cannot accept controls now (Windows); invalid control (Wine)
START_WAIT, STOP_WAIT = 60.0, 120.0
NEEDS_PYWIN32 = "needs pywin32: pip install 'dsrouter[windows]'"


def service(args) -> int:
    """Dispatch ``args.action``."""
    if sys.platform != "win32":
        return _fail(
            f"'service {args.action}' manages a Windows service and runs on Windows only (this "
            f"system is {sys.platform}); elsewhere run `dsrouter run` under the system's "
            "service manager (systemd, launchd)"
        )
    try:
        win = _Win32()
    except ImportError:
        return _fail(f"'service {args.action}' {NEEDS_PYWIN32}")
    action = {"install": install, "remove": remove, "start": start, "stop": stop}[args.action]
    try:
        return action(args, win)
    except win.error as exc:
        return _fail(_explain(exc, args.action))


class _Win32:
    """The pywin32 modules the commands use (imported on Windows only)."""

    win32serviceutil: Any
    win32service: Any
    win32evtlogutil: Any
    servicemanager: Any
    error: Any

    def __init__(self) -> None:
        names = ("win32serviceutil", "win32service", "win32evtlogutil", "servicemanager")
        for name in names:
            setattr(self, name, importlib.import_module(name))
        self.error = importlib.import_module("pywintypes").error

    def status(self) -> int:
        """The service's current state (``win32service.SERVICE_*``)."""
        return self.win32serviceutil.QueryServiceStatus(_name())[1]


def _name() -> str:
    from dsrouter.service import SERVICE_NAME

    return SERVICE_NAME


# ---- install / remove ---------------------------------------------------------------------


def install(args, win: Any) -> int:
    from dsrouter import service as svc

    config, note = _config_for(args)
    load(argparse.Namespace(config=str(config)))  # an invalid one: diagnostics, exit 1
    problem = _host_problem()
    if problem:
        return _fail(problem)
    exe_args = subprocess.list2cmdline(svc.host_args(config))
    common = dict(
        startType=win.win32service.SERVICE_AUTO_START,
        exeName=sys.executable,
        exeArgs=exe_args,
        description=svc.DESCRIPTION,
    )
    try:
        win.win32serviceutil.InstallService(None, svc.SERVICE_NAME, svc.DISPLAY_NAME, **common)
        verb = "installed"
    except win.error as exc:
        if exc.winerror != SERVICE_EXISTS:
            raise
        win.win32serviceutil.ChangeServiceConfig(
            None, svc.SERVICE_NAME, displayName=svc.DISPLAY_NAME, **common
        )
        verb = "updated"
    win.win32evtlogutil.AddSourceToRegistry(svc.SERVICE_NAME, win.servicemanager.__file__)
    warning = _restrict(svc.home())
    print(f'{verb} service "{svc.SERVICE_NAME}" (starts automatically with Windows)')
    print(f'  command  "{sys.executable}" {exe_args}')
    print(f"  config   {config}{note}")
    print(f"  log      {svc.log_path()}")
    if warning:
        print(f"  warning  {warning}", file=sys.stderr)
    print("start it with: dsrouter service start")
    return EXIT_OK


def _config_for(args) -> tuple[Path, str]:
    """The absolute config path; without ``-c`` the default one, written when missing."""
    from dsrouter import service as svc

    if args.config:
        return Path(args.config).resolve(), ""
    path = svc.home() / "dsrouter.conf"
    if path.exists():
        return path, " (kept: it was there already)"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svc.default_config_text(str(svc.home() / "data")), encoding="utf-8")
    return path, " (written with the defaults: 127.0.0.1:5514 UDP and TCP, a file archive)"


def _host_problem() -> str | None:
    """Why this interpreter could not run the service's command, or None."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import dsrouter.service"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {sys.executable} to check it can host the service: {exc}"
    if probe.returncode == 0:
        return None
    return (
        f"the service would run `{sys.executable} -m dsrouter.service`, but that interpreter "
        "cannot import dsrouter on its own: install dsrouter into it with pip "
        "(pip install 'dsrouter[windows]') rather than through PYTHONPATH or a script folder"
    )


def _restrict(folder: Path) -> str | None:
    """Limit ``folder`` (and what it holds) to SYSTEM and Administrators; a warning or None."""
    try:
        sec = importlib.import_module("win32security")
        con = importlib.import_module("ntsecuritycon")
        folder.mkdir(parents=True, exist_ok=True)
        dacl = sec.ACL()
        inherit = con.OBJECT_INHERIT_ACE | con.CONTAINER_INHERIT_ACE
        for sid in ("S-1-5-18", "S-1-5-32-544"):  # LocalSystem, BUILTIN\Administrators
            dacl.AddAccessAllowedAceEx(
                sec.ACL_REVISION, inherit, con.FILE_ALL_ACCESS, sec.ConvertStringSidToSid(sid)
            )
        sec.SetNamedSecurityInfo(
            str(folder),
            sec.SE_FILE_OBJECT,
            sec.DACL_SECURITY_INFORMATION | sec.PROTECTED_DACL_SECURITY_INFORMATION,
            None,
            None,
            dacl,
            None,
        )
    except Exception as exc:  # pywintypes.error, OSError: the service works, the folder is open
        return f"could not limit {folder} to SYSTEM and Administrators: {exc}"
    return None


def remove(args, win: Any) -> int:
    from dsrouter import service as svc

    try:
        state = win.status()
    except win.error as exc:
        if exc.winerror != NO_SERVICE:
            raise
        print(f'service "{svc.SERVICE_NAME}" is not installed: nothing to remove')
        return EXIT_OK
    if state != win.win32service.SERVICE_STOPPED:
        code = stop(args, win)
        if code != EXIT_OK:
            return code
    win.win32serviceutil.RemoveService(svc.SERVICE_NAME)  # also removes its event source
    print(f'removed service "{svc.SERVICE_NAME}"; its configuration and data stay in {svc.home()}')
    return EXIT_OK


# ---- start / stop -------------------------------------------------------------------------


def start(args, win: Any) -> int:
    from dsrouter import service as svc

    with contextlib.suppress(OSError):
        svc.error_path().unlink()  # a reason left by an earlier failed start
    try:
        win.win32serviceutil.StartService(svc.SERVICE_NAME)
    except win.error as exc:
        if exc.winerror != ALREADY_RUNNING:
            raise
        print(f'service "{svc.SERVICE_NAME}" is already running')
        return EXIT_OK
    ss = win.win32service
    state = _wait(win, {ss.SERVICE_RUNNING, ss.SERVICE_STOPPED}, START_WAIT)
    if state == ss.SERVICE_RUNNING:
        print(f'service "{svc.SERVICE_NAME}" is running (log: {svc.log_path()})')
        return EXIT_OK
    if state == ss.SERVICE_STOPPED:
        reason = _read(svc.error_path()) or "see the Application event log"
        print(f"dsrouter: the service stopped during start-up: {reason}", file=sys.stderr)
        print(f"dsrouter: its log: {svc.log_path()}", file=sys.stderr)
        return EXIT_STARTUP
    return _fail(f"the service is still starting after {START_WAIT:.0f}s (log: {svc.log_path()})")


def stop(args, win: Any) -> int:
    from dsrouter import service as svc

    ss = win.win32service
    if not _request_stop(win):
        print(f'service "{svc.SERVICE_NAME}" is not running')
        return EXIT_OK
    stopped = ss.SERVICE_STOPPED
    if _wait(win, {stopped}, STOP_WAIT) != stopped:
        return _fail(f"the service is still stopping after {STOP_WAIT:.0f}s")
    print(f'service "{svc.SERVICE_NAME}" has drained and stopped')
    return EXIT_OK


def _request_stop(win: Any) -> bool:
    """Send the stop control; False when the service is not running. A service still starting
    refuses controls (Windows: 1061, Wine: 1052): wait until it runs, then ask again."""
    ss = win.win32service
    for attempt in range(2):
        try:
            win.win32serviceutil.StopService(_name())
            return True
        except win.error as exc:
            if exc.winerror == NOT_ACTIVE:
                return False
            if exc.winerror not in NOT_YET or attempt:
                raise
        if _wait(win, {ss.SERVICE_RUNNING, ss.SERVICE_STOPPED}, START_WAIT) == ss.SERVICE_STOPPED:
            return False
    return True


def _wait(win: Any, states: set[int], timeout: float) -> int:
    """Poll the service's state until it is one of ``states`` (bounded); the last state."""
    deadline = time.monotonic() + timeout
    state = win.status()
    while state not in states and time.monotonic() < deadline:
        time.sleep(0.25)
        state = win.status()
    return state


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _explain(exc: Any, action: str) -> str:
    code = getattr(exc, "winerror", None)
    if code == ACCESS_DENIED:
        return (
            f"'service {action}': access denied: run it from an elevated prompt (as administrator)"
        )
    if code == NO_SERVICE:
        return f"'service {action}': the service is not installed: run `dsrouter service install`"
    return f"'service {action}' failed: {getattr(exc, 'strerror', exc)} (Windows error {code})"


def _fail(message: str) -> int:
    print(f"dsrouter: {message}", file=sys.stderr)
    return EXIT_INVALID
