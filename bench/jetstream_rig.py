"""Throwaway nats-server processes for the JetStream benchmarks: 1 node or a 3-node cluster.

Loopback only, free ports, storage in a temporary directory removed afterwards. Not imported
by the product; the tests have their own rig (``tests/cluster/natsrig.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nats


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _config(name: str, root: Path, port: int, own: int | None, others: list[int]) -> str:
    text = (
        f'server_name: "{name}"\nlisten: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{root / name}", max_file_store: 16GB }}\n'
    )
    if own is not None:
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in others)
        text += f'cluster {{ name: "bench", listen: "127.0.0.1:{own}", routes: [{routes}] }}\n'
    return text


async def _ready(url: str, deadline: float) -> None:
    async def quiet(exc: Exception) -> None:
        pass

    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(url, allow_reconnect=False, error_cb=quiet, connect_timeout=1)
        except Exception:  # not listening yet
            await asyncio.sleep(0.05)
            continue
        try:
            await nc.jetstream().account_info()
            return
        except Exception:  # no meta leader yet
            await asyncio.sleep(0.1)
        finally:
            await nc.close()
    raise TimeoutError(f"{url}: JetStream not ready")


@contextlib.contextmanager
def servers(size: int, binary: str = "nats-server") -> Iterator[list[str]]:
    """Start ``size`` nodes (a cluster when more than one); yield their client URLs."""
    root = Path(tempfile.mkdtemp(prefix="dsrouter-bench-nats-"))
    ports = _ports(2 * size)
    procs, logs = [], []
    try:
        for i in range(size):
            conf = root / f"n{i}.conf"
            own = ports[size + i] if size > 1 else None
            others = [p for j, p in enumerate(ports[size:]) if j != i]
            conf.write_text(_config(f"n{i}", root, ports[i], own, others))
            logs.append(open(root / f"n{i}.log", "wb"))
            procs.append(
                subprocess.Popen([binary, "-c", str(conf)], stdout=logs[-1], stderr=logs[-1])
            )
        urls = [f"nats://127.0.0.1:{p}" for p in ports[:size]]
        deadline = time.monotonic() + 30
        for url in urls:
            asyncio.run(_ready(url, deadline))
        yield urls
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for f in logs:
            f.close()
        shutil.rmtree(root, ignore_errors=True)
