"""Fixtures of the cluster tests: real nats-server processes on loopback (see natsrig.py).

* ``nats_node`` — one JetStream server for the session (no cluster: streams get one replica);
* ``nats_cluster`` — a 3-node JetStream cluster for the session, healthy: tests that kill a
  node use ``fresh_cluster``, their own;
* ``clients`` — ``clients(rig, **options)`` makes a started, connected
  :class:`JetStreamClient` (one per simulated process) on a stream of its own unless told,
  closed at teardown, its streams deleted.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dsrouter.delivery.jetstream_conn import ApiError, ClusterOptions, JetStreamClient

from .natsrig import Rig, nats_server_path

_streams = itertools.count(1)


@pytest.fixture(scope="session")
def nats_binary() -> str:
    return nats_server_path()


def _running(binary: str, root: Path, size: int) -> Iterator[Rig]:
    rig = Rig(binary, root, size)
    try:
        rig.start()
        yield rig
    finally:
        rig.close()


@pytest.fixture(scope="session")
def nats_node(nats_binary: str, tmp_path_factory) -> Iterator[Rig]:
    yield from _running(nats_binary, tmp_path_factory.mktemp("node"), 1)


@pytest.fixture(scope="session")
def nats_cluster(nats_binary: str, tmp_path_factory) -> Iterator[Rig]:
    yield from _running(nats_binary, tmp_path_factory.mktemp("cluster"), 3)


@pytest.fixture
def fresh_cluster(nats_binary: str, tmp_path: Path) -> Iterator[Rig]:
    yield from _running(nats_binary, tmp_path / "cluster", 3)


Clients = Callable[..., JetStreamClient]


@pytest.fixture
def clients() -> Iterator[Clients]:
    made: list[JetStreamClient] = []

    def make(rig: Rig, **options: Any) -> JetStreamClient:
        options.setdefault("stream", f"t{next(_streams):04d}")
        options.setdefault("replicas", 3 if len(rig.nodes) >= 3 else 1)
        # creating a 3-replica stream on the session's cluster, which holds every earlier
        # test's streams, once took more than the 5 s default on a slow CI machine
        options.setdefault("request_timeout", 15.0)
        client = JetStreamClient(ClusterOptions(tuple(rig.urls), **options)).start()
        made.append(client)
        assert client.wait_connected(10), client.last_error
        return client

    yield make
    done: set[str] = set()
    for client in made:
        if client.options.stream not in done and client.connected:
            _delete_streams(client, client.options.stream)
            done.add(client.options.stream)
    for client in made:
        client.close()


def _delete_streams(client: JetStreamClient, stream: str) -> None:
    for name in (stream, f"{stream}_dlq"):
        try:
            client.call(client.api(f"STREAM.DELETE.{name}"), 10)
        except ApiError as exc:
            assert exc.not_found
        except OSError:  # a killed cluster may not answer: its files go with tmp_path
            pass
