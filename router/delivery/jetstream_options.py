"""Cluster options and errors: what ``settings { cluster_* }`` become, and what fails.

:class:`ClusterOptions` is checked on construction (:meth:`ClusterOptions.problems` says what is
wrong in words, for ``dsrouter check``). Every failure reaches callers as
:class:`JetStreamError`, an ``OSError``: the engine treats it as a queue it cannot write.
:class:`ClusterUnavailable` means "not now" (not connected, a timeout, no stream leader);
:class:`ApiError` carries JetStream's own error code. Passwords and tokens are kept out of
``repr``; :func:`redact` strips user information from server URLs.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_USERINFO = re.compile(r"(?<=://)[^/@]*@")


def redact(url: str) -> str:
    """``url`` without its user information (``nats://user:pass@h:p`` → ``nats://***@h:p``)."""
    return _USERINFO.sub("***@", url)


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """How to reach and lay out the cluster (from ``settings { cluster_* }``).

    ``replicas`` is the wish; a cluster with fewer JetStream nodes gets a stream of its size
    (see :mod:`~dsrouter.delivery.jetstream_stream`). ``ack_wait`` is how long a lease
    survives a delivery process that died (live ones renew theirs); ``duplicate_window`` how
    long a message id is remembered for deduplication; ``stream_max_bytes`` caps the work
    stream as a whole (0: only the servers' storage limits); ``dlq_max_bytes`` the dead-letter
    stream.
    """

    servers: tuple[str, ...]
    stream: str = "dsrouter"
    replicas: int = 3
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    creds: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    name: str = "dsrouter"
    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    ack_wait: float = 30.0
    duplicate_window: float = 120.0
    max_ack_pending: int = 20_000
    stream_max_bytes: int = 0
    dlq_max_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with these options, in words (empty when they are fine)."""
        out = []
        if not self.servers or not all(isinstance(s, str) and s for s in self.servers):
            out.append("cluster_servers: at least one nats://host:port")
        if not _NAME.fullmatch(self.stream):
            out.append(f"cluster_stream {self.stream!r}: letters, digits, '_' and '-' only")
        if not 1 <= self.replicas <= 5:
            out.append(f"cluster_replicas {self.replicas}: JetStream allows 1 to 5")
        if bool(self.tls_cert) != bool(self.tls_key):
            out.append("cluster TLS: a client certificate needs its key and the other way round")
        if bool(self.user) != bool(self.password):
            out.append("cluster credentials: user and password go together")
        if sum(bool(x) for x in (self.creds, self.user, self.token)) > 1:
            out.append("cluster credentials: one of creds, user + password, token")
        if min(self.request_timeout, self.connect_timeout) <= 0:
            out.append("cluster timeouts must be positive")
        if self.ack_wait < 1.5:  # leases are renewed every ack_wait / 3, looked at every 0.5 s
            out.append(f"cluster ack_wait {self.ack_wait:g}s: at least 1.5s")
        return out

    @property
    def display_servers(self) -> list[str]:
        return [redact(s) for s in self.servers]


class JetStreamError(OSError):
    """The cluster refused or could not do what was asked."""


class ClusterUnavailable(JetStreamError):
    """Not connected, no answer in time, or no leader for the stream right now."""


class ApiError(JetStreamError):
    """An error answer of the JetStream API (``code`` is HTTP-like, ``err_code`` JetStream's)."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"JetStream error {err_code}: {description}")
        self.code, self.err_code, self.description = code, err_code, description

    @classmethod
    def of(cls, err: dict[str, Any]) -> ApiError:
        """From the ``error`` member of an API answer or a publish acknowledgement."""
        return cls(err.get("code", 0), err.get("err_code", 0), err.get("description", ""))

    @property
    def stream_full(self) -> bool:
        """The stream's own limits refused the message (``maximum bytes exceeded``...)."""
        return self.err_code == 10077 and "maximum" in self.description

    @property
    def not_found(self) -> bool:
        return self.code == 404


def tls_context(opts: ClusterOptions) -> ssl.SSLContext | None:
    """The client TLS context for ``tls_ca`` / ``tls_cert`` + ``tls_key`` (None: no files)."""
    if not (opts.tls_ca or opts.tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=opts.tls_ca)
    if opts.tls_cert and opts.tls_key:
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
    return ctx
