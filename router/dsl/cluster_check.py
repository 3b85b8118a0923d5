"""``settings { cluster_* }``: the options, and the checks across them.

Each option is first checked on its own (kind, ``E206``), like every option. Then, with
``cluster_servers`` given: every server must be ``nats://HOST:PORT`` or ``tls://HOST:PORT``
(``E226``), and whatever :meth:`ClusterOptions.problems` finds in the settings together is an
error at the setting concerned (``E227``, in its words). Without ``cluster_servers`` the other
``cluster_*`` settings do nothing (``W403``). Values from ``env()`` and ``file()`` and secret
options are never quoted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from dsrouter.delivery.cluster_settings import CLUSTER_FIELDS
from dsrouter.delivery.jetstream_options import ClusterOptions
from dsrouter.dsl import ast
from dsrouter.dsl.diagnostics import Reporter
from dsrouter.dsl.values import uses_call
from dsrouter.options import Duration, Option

_FILE = "a file name, relative to the configuration's directory"

CLUSTER_SETTINGS: dict[str, Option] = {
    "cluster_servers": Option(
        "cluster_servers",
        "list",
        None,
        'NATS servers, ["nats://HOST:PORT", ...] (tls:// for TLS); none: no cluster',
    ),
    "cluster_stream": Option(
        "cluster_stream", "string", "dsrouter", "the JetStream stream (and S_dlq for dead letters)"
    ),
    "cluster_replicas": Option(
        "cluster_replicas", "int", 3, "copies of each event the stream keeps (1 to 5)"
    ),
    "cluster_tls_ca": Option(
        "cluster_tls_ca", "string", None, f"CA bundle to verify the servers: {_FILE}"
    ),
    "cluster_tls_cert": Option(
        "cluster_tls_cert", "string", None, f"client certificate (with cluster_tls_key): {_FILE}"
    ),
    "cluster_tls_key": Option(
        "cluster_tls_key", "string", None, f"the client certificate's key: {_FILE}"
    ),
    "cluster_creds": Option(
        "cluster_creds", "string", None, f"NATS credentials (.creds: JWT and NKey seed): {_FILE}"
    ),
    "cluster_user": Option("cluster_user", "string", None, "user name (with cluster_password)"),
    "cluster_password": Option(
        "cluster_password", "string", None, "the user's password", secret=True
    ),
    "cluster_token": Option(
        "cluster_token", "string", None, "authentication token (instead of a user)", secret=True
    ),
    "cluster_ack_wait": Option(
        "cluster_ack_wait",
        "duration",
        Duration(30.0),
        "how long a dead delivery process keeps its events leased (at least 1.5s)",
    ),
}

#: ClusterOptions.problems() words → the settings they concern (the last one given is shown)
#: and whether the diagnostic points at the value (True) or at the setting's name.
_PROBLEMS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("cluster_stream", ("cluster_stream",), True),
    ("cluster_replicas", ("cluster_replicas",), True),
    ("cluster ack_wait", ("cluster_ack_wait",), True),
    ("cluster TLS", ("cluster_tls_cert", "cluster_tls_key"), False),
    ("cluster credentials: user", ("cluster_user", "cluster_password"), False),
    ("cluster credentials", ("cluster_creds", "cluster_user", "cluster_token"), False),
)
_HELP = {
    "cluster_stream": "a stream name is 1 to 64 letters, digits, '_' and '-'",
    "cluster_replicas": "a stream cannot have more copies than JetStream nodes: 3 or 5 are usual",
    "cluster_ack_wait": "leases are renewed every ack_wait / 3; the default is 30s",
    "cluster_tls_cert": "set both cluster_tls_cert and cluster_tls_key, or neither",
    "cluster_tls_key": "set both cluster_tls_cert and cluster_tls_key, or neither",
    "cluster_user": "set both cluster_user and cluster_password, or neither",
    "cluster_password": "set both cluster_user and cluster_password, or neither",
    "cluster_creds": "authenticate with cluster_creds, cluster_user + cluster_password, or "
    "cluster_token: only one of them",
}
_HELP["cluster_token"] = _HELP["cluster_creds"]
_SERVER_HELP = 'write "nats://HOST:PORT" (or "tls://HOST:PORT" for TLS), e.g. "nats://nats-1:4222"'
_QUOTED_VALUE = re.compile(r"^(cluster[_ ]\w+) [^:]*:")


def check_cluster(
    opts: Sequence[ast.Option], values: Mapping[str, Any], given: set[str], rep: Reporter
) -> set[str]:
    """E226, E227 and W403 for the ``cluster_*`` settings (``values``: those valid on their own).

    Returns the cluster settings ``Config.settings`` leaves out: without ``cluster_servers``
    those not given (a configuration without a cluster has no ``cluster_*`` keys), else none.
    """
    first = {o.key.text: o for o in reversed(opts)}
    if "cluster_servers" not in given:
        for key in sorted(given & CLUSTER_FIELDS.keys(), key=lambda k: _order(first[k])):
            help = 'the cluster is off: add cluster_servers = ["nats://HOST:PORT", ...]'
            msg = f"setting '{key}' has no effect without cluster_servers"
            rep.warning("W403", msg, first[key].key.span, help)
        return set(CLUSTER_SETTINGS) - given
    if isinstance(values.get("cluster_servers"), list):
        _servers(first["cluster_servers"], values["cluster_servers"], rep)
    fields: dict[str, Any] = {
        f.name: f.default for f in dataclasses.fields(ClusterOptions) if f.default is not MISSING
    }
    fields["servers"] = ("nats://checked-apart:4222",)  # E226 is about the servers
    for key, name in CLUSTER_FIELDS.items():
        default = CLUSTER_SETTINGS[key].default
        if key in values:
            fields[name] = values[key]
        elif key in given:  # invalid on its own (E206): given, but its value unknown
            fields[name] = default if default is not None else "<given>"
        else:
            fields[name] = default
    # problems() of the options these settings make, without building them (that raises)
    for problem in ClusterOptions.problems(SimpleNamespace(**fields)):  # type: ignore[arg-type]
        _problem(problem, first, given, rep)
    return set()


def _order(opt: ast.Option) -> tuple[str, int, int]:
    return opt.span.path, opt.span.line, opt.span.column


def _problem(problem: str, first: Mapping[str, ast.Option], given: set[str], rep: Reporter) -> None:
    """One problem of ClusterOptions as E227 at the (last given) setting it concerns."""
    if problem.startswith("cluster_servers"):
        return  # the servers are checked by _servers (E226)
    opt, at_value = _concerned(problem, first, given)
    key = opt.key.text
    if at_value and uses_call(opt.value):
        problem = _QUOTED_VALUE.sub(r"\1:", problem)  # the value came from env() or file()
    span = opt.value.span if at_value else opt.key.span
    rep.error("E227", problem, span, _HELP.get(key))


def _concerned(
    problem: str, first: Mapping[str, ast.Option], given: set[str]
) -> tuple[ast.Option, bool]:
    """The setting a problem is about (the last given of those it names), and whether the
    diagnostic points at its value; words this module does not know: at cluster_servers."""
    for prefix, keys, at_value in _PROBLEMS:
        concerned = [first[k] for k in keys if k in given and k in first]
        if problem.startswith(prefix) and concerned:
            return max(concerned, key=_order), at_value
    return first["cluster_servers"], False


def _servers(opt: ast.Option, servers: list[Any], rep: Reporter) -> None:
    """E226 for an empty list and for each item that is not nats:// or tls:// HOST:PORT."""
    if not servers:
        rep.error("E226", "cluster_servers lists no server", opt.value.span, _SERVER_HELP)
        return
    nodes = opt.value.items if isinstance(opt.value, ast.ListValue) else ()
    for i, server in enumerate(servers):
        node = nodes[i] if i < len(nodes) else opt.value
        problem = _server_problem(server)
        if problem is None:
            continue
        if isinstance(server, str) and not uses_call(node) and "@" not in server:
            shown = f'"{server}"'
        else:  # from env()/file(), or it holds user information: never quoted
            shown = f"number {i + 1}"
            if isinstance(node, ast.Literal):
                rep.redact(node.span)
        rep.error("E226", f"cluster server {shown} {problem}", node.span, _SERVER_HELP)


def _server_problem(server: Any) -> str | None:
    """What is wrong with one ``cluster_servers`` item, or None."""
    if not isinstance(server, str):
        return "is not a string"
    try:
        url = urlsplit(server.strip())
        port = url.port
    except ValueError:
        return "has an invalid port (1 to 65535)"
    if url.scheme not in ("nats", "tls"):
        return "must start with nats:// or tls://"
    if "@" in url.netloc:
        return "holds user information: use cluster_user + cluster_password or cluster_token"
    if not url.hostname:
        return "has no host"
    if port is None or not 0 < port:
        return "has no port (nats://HOST:PORT)"
    if url.path not in ("", "/") or url.query or url.fragment:
        return "has more than HOST:PORT"
    return None
