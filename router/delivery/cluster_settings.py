"""``settings { cluster_* }`` → :class:`~dsrouter.delivery.jetstream_options.ClusterOptions`.

Without ``cluster_servers`` there is no cluster (``None``): every output keeps its local
queue. File names (``cluster_tls_*``, ``cluster_creds``) are relative to the configuration's
directory, like every other file a configuration names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .jetstream_options import ClusterOptions

#: The settings that only matter with ``cluster_servers``, and the ClusterOptions field each sets.
CLUSTER_FIELDS = {
    "cluster_stream": "stream",
    "cluster_replicas": "replicas",
    "cluster_tls_ca": "tls_ca",
    "cluster_tls_cert": "tls_cert",
    "cluster_tls_key": "tls_key",
    "cluster_creds": "creds",
    "cluster_user": "user",
    "cluster_password": "password",
    "cluster_token": "token",
    "cluster_ack_wait": "ack_wait",
}
_FILES = ("cluster_tls_ca", "cluster_tls_cert", "cluster_tls_key", "cluster_creds")


def cluster_options(settings: Mapping[str, Any], base_dir: Path) -> ClusterOptions | None:
    """The cluster the settings name, or None; ``ValueError`` (in words) when they are wrong."""
    servers = settings.get("cluster_servers")
    if not servers:
        return None
    kwargs: dict[str, Any] = {}
    for key, name in CLUSTER_FIELDS.items():
        value = settings.get(key)
        if value is None or value == "":
            continue
        if key in _FILES:
            value = str(base_dir / Path(str(value)).expanduser())
        elif key == "cluster_ack_wait":
            value = float(value)
        kwargs[name] = value
    return ClusterOptions(servers=tuple(servers), **kwargs)


def connect_cluster(config: Any, log: Any) -> Any:
    """The process's started :class:`JetStreamClient` for ``config``, or None without a
    cluster. It connects in the background: a router may start before the cluster is up."""
    options = cluster_options(config.settings, config.base_dir)
    if options is None:
        return None
    from .jetstream_conn import shared_client

    client = shared_client(options, log)
    if not client.wait_connected(options.connect_timeout):
        log.warning(
            "cluster_not_connected",
            servers=options.display_servers,
            error=client.last_error,
            help="events are held (receivers paused) until the cluster answers",
        )
    return client


def release_cluster(client: Any) -> None:
    """Give back the daemon's reference (the last one closes the connection)."""
    from .jetstream_conn import release_client

    release_client(client)
