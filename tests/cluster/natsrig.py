"""Real nats-server processes on loopback for the cluster tests: one node or a 3-node cluster.

Every node listens on 127.0.0.1 only, on free ports picked at start, keeps its JetStream
storage under the test's own directory, logs to a file there, and is killed at teardown
(SIGKILL, then waited for). :func:`nats_server_path` skips the test when nats-server is not
installed, or fails it under ``DSROUTER_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import nats
from nats.errors import Error as NatsError

from ..conftest import missing_peer

READY_TIMEOUT = 20.0  # a 3-node cluster elects its meta leader in 2-5 s


def nats_server_path() -> str:
    """The nats-server binary, or skip/fail the test (see the module docstring)."""
    path = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None
    )
    if path is None:
        missing_peer("nats-server")
    assert path is not None
    return path


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Node:
    """One nats-server with JetStream; ``routes`` are the other nodes' cluster ports."""

    def __init__(
        self,
        binary: str,
        name: str,
        root: Path,
        port: int,
        cluster: tuple[int, list[int]] | None,
        extra: str = "",
    ) -> None:
        self.binary, self.name, self.port = binary, name, port
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "server.conf"
        self.log = self.dir / "server.log"
        self.conf.write_text(self._config(cluster) + extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _config(self, cluster: tuple[int, list[int]] | None) -> str:
        store = self.dir / "jetstream"
        text = (
            f'server_name: "{self.name}"\nlisten: "127.0.0.1:{self.port}"\n'
            f'jetstream {{\n  store_dir: "{store}"\n  max_memory_store: 64MB\n'
            f"  max_file_store: 16GB\n}}\n"
        )
        if cluster is not None:
            own, others = cluster
            routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in others)
            text += (
                f'cluster {{\n  name: "dsrouter-test"\n  listen: "127.0.0.1:{own}"\n'
                f"  routes: [{routes}]\n}}\n"
            )
        return text

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Rig:
    """A node set: ``urls`` of the live nodes for clients, ``node(name)``, ``restart``.

    ``extra`` is appended to every node's configuration (``tls {...}``, ``authorization``);
    ``ready_with`` are ``nats.connect`` options :meth:`wait_ready` needs for that.
    """

    def __init__(
        self,
        binary: str,
        root: Path,
        size: int,
        extra: str = "",
        ready_with: dict[str, Any] | None = None,
    ) -> None:
        ports = free_ports(2 * size)
        client, routes = ports[:size], ports[size:]
        self.ready_with = ready_with or {}
        self.nodes = []
        for i in range(size):
            cluster = (routes[i], routes[:i] + routes[i + 1 :]) if size > 1 else None
            self.nodes.append(Node(binary, f"n{i + 1}", root, client[i], cluster, extra))

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes if n.alive]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> None:
        for n in self.nodes:
            n.start()
        self.wait_ready()

    def restart(self, node: Node) -> None:
        node.start()
        self.wait_ready([node])

    def wait_ready(self, nodes: list[Node] | None = None, timeout: float = READY_TIMEOUT) -> None:
        """Until every node answers the JetStream API (so the meta leader is elected)."""
        deadline = time.monotonic() + timeout
        for n in nodes or self.nodes:
            asyncio.run(_wait_js(n, deadline, self.ready_with))

    def close(self) -> None:
        for n in self.nodes:
            n.kill()


async def _wait_js(node: Node, deadline: float, options: dict[str, Any]) -> None:
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if not node.alive:
            raise RuntimeError(f"{node.name} exited: {node.log.read_text()[-2000:]}")
        if not _listening(node.port):
            await asyncio.sleep(0.02)
            continue
        try:
            nc = await nats.connect(
                node.url,
                connect_timeout=1,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=_quiet,
                **options,
            )
        except (TimeoutError, OSError, NatsError) as exc:
            last = exc
            await asyncio.sleep(0.05)
            continue
        try:
            await nc.jetstream().account_info()
            return
        except (TimeoutError, NatsError) as exc:
            last = exc
            await asyncio.sleep(0.1)
        finally:
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await nc.close()
    raise TimeoutError(f"{node.name}: JetStream not ready: {last!r}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _quiet(exc: Exception) -> None:
    """nats-py prints every connection error with a traceback unless given a callback."""
