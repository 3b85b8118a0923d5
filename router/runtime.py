"""Process-wide set-up: tuning for the batch path (the daemon and the benchmarks call it) and,
on Windows, the console control handler that lets closing the console drain the daemon."""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable

#: Console control events (``wincon.h``).
CTRL_C, CTRL_BREAK, CTRL_CLOSE, CTRL_LOGOFF, CTRL_SHUTDOWN = 0, 1, 2, 5, 6
_HANDLERS: list[object] = []  # the ctypes callbacks must live as long as they are registered


def _tune_malloc() -> None:
    """Keep glibc from returning freed batch memory to the kernel after every batch: the next
    batch would fault it back in page by page (measured: ~8 µs per event in page faults)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, Windows, musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 256 * 1024 * 1024)
    libc.mallopt(m_mmap_threshold, 64 * 1024 * 1024)


def _tune_gc() -> None:
    """Events are acyclic and short-lived: move start-up objects out of the collector's way and
    collect the young generation rarely, so big batches are not rescanned again and again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def tune_runtime() -> None:
    """Apply the gc and malloc settings."""
    _tune_gc()
    _tune_malloc()


def console_action(event: int, service: bool = False) -> str:
    """What a console control event means to the daemon.

    ``"signal"``: Ctrl-C and Ctrl-Break pass on to the C runtime, which turns them into SIGINT
    and SIGBREAK for Python's handlers. ``"drain"``: the close, logoff and shutdown events end
    the process as soon as a handler returns, so the handler drains first. ``"ignore"``: a
    service's process (``service=True``) outlives logoffs, and the service control manager
    sends its own stop and shutdown requests.
    """
    if service:
        return "ignore"
    if event in (CTRL_C, CTRL_BREAK):
        return "signal"
    return "drain"


def install_console_handler(on_close: Callable[[int], bool], service: bool = False) -> bool:
    """Windows: register a console control handler (called before the C runtime's) that runs
    ``on_close(event)`` for the events :func:`console_action` says to drain. False elsewhere,
    or when Windows refuses it."""
    if sys.platform != "win32":
        return False

    def handler(event: int) -> bool:
        action = console_action(event, service)
        if action == "signal":
            return False
        return True if action == "ignore" else bool(on_close(event))

    from ctypes import wintypes

    callback = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)(handler)
    if not ctypes.windll.kernel32.SetConsoleCtrlHandler(callback, True):
        return False
    _HANDLERS.append(callback)
    return True
