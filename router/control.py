"""How commands reach the running daemon: a pid file, a lock, and a local control channel.

The daemon holds an exclusive lock on ``<data_dir>/dsrouter.lock`` (so two daemons never
share queues), writes its pid to ``<data_dir>/dsrouter.pid`` and answers control requests:

* on POSIX on a Unix socket, ``<data_dir>/control.sock`` (mode 0600: only its own user can talk
  to it; a data_dir path too long for a socket name uses a hashed name in the temp directory);
* on Windows (no Unix sockets in CPython there) on a loopback TCP port chosen by the system,
  published with a random token in ``<data_dir>/control.json``: a request must carry that
  token, so only who can read the data_dir (the daemon's user, administrators) can use it.

A request is one JSON object on one line (``{"cmd": "reload"}``); the answer is one JSON object
on one line. ``dsrouter reload``, ``queue status`` and ``dlq replay|purge`` use it, and work on
the files directly when no daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from dsrouter.errors import DsrouterError, StartupError

_MAX_REQUEST = 1 << 20
_SUN_PATH_MAX = 100

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class NoDaemon(DsrouterError):
    """No daemon answers on this data_dir's control socket."""


def socket_path(data_dir: Path) -> Path:
    """The control socket of the daemon that uses ``data_dir``."""
    path = Path(data_dir).resolve() / "control.sock"
    if len(str(path)) <= _SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"dsrouter-{digest}.sock"


class DaemonLock:
    """The exclusive lock on a data_dir, with the pid file beside it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "dsrouter.lock"
        self.pid_path = data_dir / "dsrouter.pid"
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StartupError naming the other daemon."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            pid = _read_pid(self.pid_path)
            who = f" (pid {pid})" if pid else ""
            raise StartupError(f"another dsrouter{who} is running with data_dir {self.path.parent}")
        self.fd = fd
        self.pid_path.write_text(f"{os.getpid()}\n")

    def held_elsewhere(self) -> bool:
        """True when another process holds the lock (a daemon is running)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if _try_lock(fd):
                _unlock(fd)
                return False
            return True
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        _unlock(self.fd)
        os.close(self.fd)
        self.fd = None


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


#: Which channel this platform's daemon serves: a Unix socket where CPython has them.
UNIX = hasattr(socket, "AF_UNIX") and hasattr(asyncio, "start_unix_server")
_LOOPBACK = "127.0.0.1"


def endpoint_path(data_dir: Path) -> Path:
    """Where a daemon serving the TCP channel publishes its port and token."""
    return Path(data_dir).resolve() / "control.json"


class ControlServer:
    """Answers control requests with ``handler(request) -> answer`` on the event loop.

    ``transport`` is ``"unix"`` or ``"tcp"``; by default the platform's (:data:`UNIX`).
    """

    def __init__(self, data_dir: Path, handler: Handler, transport: str | None = None) -> None:
        self.transport = transport or ("unix" if UNIX else "tcp")
        self.path = socket_path(data_dir) if self.transport == "unix" else endpoint_path(data_dir)
        self.handler = handler
        self.token = ""
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen; raise StartupError when the channel cannot be created."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket or endpoint of a crashed daemon (we hold the lock)
        if self.transport == "unix":
            await self._start_unix()
        else:
            await self._start_tcp()

    async def _start_unix(self) -> None:
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        except OSError as exc:
            raise StartupError(f"cannot create the control socket {self.path}: {exc}") from exc
        finally:
            os.umask(old)

    async def _start_tcp(self) -> None:
        self.token = secrets.token_urlsafe(32)
        try:
            self.server = await asyncio.start_server(self._serve, _LOOPBACK, 0)
            port = self.server.sockets[0].getsockname()[1]
            _write_private(
                self.path, orjson.dumps({"port": port, "token": self.token, "pid": os.getpid()})
            )
        except OSError as exc:
            self.close()
            raise StartupError(f"cannot open the control channel {self.path}: {exc}") from exc

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10.0)
            try:
                request = orjson.loads(line[:_MAX_REQUEST])
                answer = await self._answer(request if isinstance(request, dict) else {})
            except orjson.JSONDecodeError:
                answer = {"ok": False, "error": "bad request"}
            writer.write(orjson.dumps(answer, default=str) + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.token:
            token = request.pop("token", None)
            if not isinstance(token, str) or not hmac.compare_digest(token, self.token):
                return {"ok": False, "error": "not authorized (wrong or missing token)"}
        return await self.handler(request)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
            with contextlib.suppress(OSError):
                self.path.unlink()


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file only its owner may read (POSIX;
    on Windows the file inherits the data_dir's access list)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def request(data_dir: Path, req: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send one request to the daemon of ``data_dir``; raise NoDaemon when none answers."""
    endpoint = endpoint_path(data_dir)
    if endpoint.exists():
        return _request_tcp(data_dir, endpoint, req, timeout)
    path = socket_path(data_dir)
    if not UNIX or not path.exists():
        raise NoDaemon(f"no dsrouter daemon is running with data_dir {data_dir}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    return _exchange(sock, str(path), req, timeout, data_dir, path)


def _request_tcp(
    data_dir: Path, endpoint: Path, req: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """The TCP channel: only to a daemon that holds the lock (a stale endpoint file's port
    may belong to another program by now, which must not receive the token)."""
    gone = NoDaemon(f"no dsrouter daemon is running with data_dir {data_dir}")
    try:
        info = orjson.loads(endpoint.read_bytes())
        port, token = int(info["port"]), str(info["token"])
    except (OSError, ValueError, KeyError, TypeError):
        raise gone from None
    if not DaemonLock(Path(data_dir)).held_elsewhere():
        raise gone
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    return _exchange(sock, (_LOOPBACK, port), {**req, "token": token}, timeout, data_dir, endpoint)


def _exchange(
    sock: socket.socket,
    address: Any,
    req: dict[str, Any],
    timeout: float,
    data_dir: Path,
    where: Path,
) -> dict[str, Any]:
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        sock.sendall(orjson.dumps(req) + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        raise NoDaemon(f"no dsrouter daemon is running with data_dir {data_dir}") from exc
    except OSError as exc:
        raise DsrouterError(f"the daemon did not answer on {where}: {exc}") from exc
    finally:
        sock.close()
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DsrouterError(f"the daemon sent an unreadable answer on {where}") from exc
    return answer if isinstance(answer, dict) else {}
