"""Fixtures that locate the real peers some tests run against.

``.ci/setup-peers`` installs them: rsyslogd (apt), syslog-ng unpacked under ``DSROUTER_PEERS``
(default ``<repo>/.peers``) and the Wine rig with a Windows CPython and pywin32. On a clone
without them those tests skip and say why; with ``DSROUTER_REQUIRE_PEERS=1`` (CI sets it) a
missing peer fails the test instead, so a suite can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("DSROUTER_PEERS") or REPO / ".peers")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_peer(what: str) -> None:
    """Skip (or fail, under ``DSROUTER_REQUIRE_PEERS=1``) a test whose peer is absent."""
    reason = f"{what} is not installed here; run `bash .ci/setup-peers` to install it"
    if os.environ.get("DSROUTER_REQUIRE_PEERS") == "1":
        pytest.fail(f"DSROUTER_REQUIRE_PEERS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class SyslogNg:
    """An unpacked syslog-ng: ``argv(conf, workdir)`` starts it in the foreground."""

    root: Path

    def argv(self, conf: Path, workdir: Path) -> list[str]:
        return [
            str(self.root / "usr/sbin/syslog-ng"),
            "-F",
            "-f",
            str(conf),
            f"--module-path={self.root / 'usr/lib/syslog-ng/3.38'}",
            "-p",
            str(workdir / "syslog-ng.pid"),
            "-c",
            str(workdir / "syslog-ng.ctl"),
            "-R",
            str(workdir / "syslog-ng.persist"),
        ]

    def env(self) -> dict[str, str]:
        libs = [self.root / "usr/lib/syslog-ng", self.root / "usr/lib/x86_64-linux-gnu"]
        return dict(os.environ, LD_LIBRARY_PATH=":".join(str(p) for p in libs))


@dataclass(frozen=True)
class WineRig:
    """The Windows CPython under Wine (``../shared/windows``)."""

    python: Path
    prefix: Path


@pytest.fixture(scope="session")
def rsyslogd() -> str:
    path = shutil.which("rsyslogd") or (
        "/usr/sbin/rsyslogd" if os.access("/usr/sbin/rsyslogd", os.X_OK) else None
    )
    if path is None:
        missing_peer("rsyslog")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def syslog_ng() -> SyslogNg:
    root = PEERS / "syslog-ng"
    if not os.access(root / "usr/sbin/syslog-ng", os.X_OK):
        missing_peer(f"syslog-ng (unpacked under {root})")
    return SyslogNg(root)


@pytest.fixture(scope="session")
def wine_rig() -> WineRig:
    rig = PEERS / "wine"
    python = rig / "winpy/cp312/python.exe"
    if shutil.which("wine") is None or not python.exists() or not (rig / "wineprefix").is_dir():
        missing_peer(f"the Wine rig (Wine 8.0 and a Windows CPython under {rig})")
    return WineRig(python, rig / "wineprefix")
