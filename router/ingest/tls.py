"""The TLS receiver (RFC 5425): TCP framing and limits, behind a TLS 1.2+ handshake.

Each accepted connection passes the TCP limits first (allow-list, per-peer slots), then its
handshake runs with ``loop.start_tls`` so that a failure can be told in plain words ("the
sender presented no client certificate"), once a minute per peer and reason, and counted in
``tls_failed_total``. With ``peer_names`` the client certificate must name one of them:
subjectAltName DNS names are compared (the subject CN only when the certificate has none),
case-insensitively; ``*.example.com`` matches exactly one leftmost label (``a.example.com``,
not ``example.com`` nor ``a.b.example.com``). :meth:`TlsListener.reload` re-reads the
certificate files for new handshakes; established connections keep theirs.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from dsrouter.errors import StartupError
from dsrouter.ingest.tcp import TcpListener, _TcpConnection

_log = structlog.get_logger()
_HANDSHAKE = 15.0  # seconds a handshake may take
_LOG_EVERY = 60.0
_LOGGED_MAX = 1024
CLIENT_CERT = ("none", "optional", "required")

#: OpenSSL reasons → what an operator reads (server side).
_REASONS = (
    ("PEER_DID_NOT_RETURN_A_CERTIFICATE",
     'the sender presented no client certificate (client_cert = "required")'),
    ("CERTIFICATE_VERIFY_FAILED",
     "the sender's certificate is not signed by client_ca, or it expired"),
    ("TLSV1_ALERT_UNKNOWN_CA",
     "the sender does not trust this router's certificate (its CA is unknown to it)"),
    ("SSLV3_ALERT_BAD_CERTIFICATE", "the sender rejected this router's certificate"),
    ("UNSUPPORTED_PROTOCOL", "the sender offered a TLS version older than 1.2"),
    ("WRONG_VERSION_NUMBER", "the sender does not speak TLS (plain syslog sent to a TLS port?)"),
    ("HTTP_REQUEST", "the sender spoke HTTP, not TLS"),
    ("NO_SHARED_CIPHER", "no cipher both sides accept"),
)  # fmt: skip


@dataclass(frozen=True)
class TlsSettings:
    """The ``tls`` input's certificate options, checked."""

    cert: str
    key: str
    key_password: str | None = None
    client_ca: str | None = None
    client_cert: str = "none"
    peer_names: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        """Contradictions between options, in words (empty when consistent)."""
        out = []
        if self.client_cert not in CLIENT_CERT:
            out.append(f"client_cert must be one of {', '.join(CLIENT_CERT)}")
        if self.client_cert != "none" and not self.client_ca:
            out.append(
                f'client_cert = "{self.client_cert}" needs client_ca (the CA that signs senders)'
            )
        if self.client_ca and self.client_cert == "none":
            out.append('client_ca is set but client_cert = "none": set "optional" or "required"')
        if self.peer_names and self.client_cert != "required":
            out.append('peer_names needs client_cert = "required"')
        return out


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """A TLS 1.2+ server context from the certificate files; StartupError in plain words."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert, tls.key, password=tls.key_password)
    except FileNotFoundError as exc:
        raise StartupError(f"cannot read {exc.filename}: no such file") from None
    except ssl.SSLError as exc:
        raise StartupError(f"cert/key {tls.cert}, {tls.key}: {_key_problem(exc)}") from None
    except OSError as exc:
        raise StartupError(f"cannot read the certificate or key: {exc.strerror}") from None
    if tls.client_ca:
        try:
            ctx.load_verify_locations(tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(f"client_ca {tls.client_ca}: {exc}") from None
    ctx.verify_mode = {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[tls.client_cert]
    return ctx


def _key_problem(exc: ssl.SSLError) -> str:
    text = str(exc)
    if "KEY_VALUES_MISMATCH" in text:
        return "the key does not belong to the certificate"
    if "BAD_DECRYPT" in text or "bad decrypt" in text:
        return "wrong key_password"
    return f"not a PEM certificate and key ({exc.reason or text})"


def explain(exc: BaseException) -> str:
    """A handshake failure in words an operator reads."""
    if isinstance(exc, TimeoutError):
        return "the TLS handshake did not finish in time"
    text = f"{getattr(exc, 'reason', '') or ''} {exc}"
    for marker, words in _REASONS:
        if marker in text or marker.lower().replace("_", " ") in text.lower():
            return words
    return f"TLS handshake failed: {exc}"


def cert_names(cert: dict[str, Any] | None) -> list[str]:
    """The DNS names a peer certificate (``getpeercert()``) vouches for."""
    if not cert:
        return []
    dns = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    if dns:
        return dns
    return [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]


def name_matches(pattern: str, name: str) -> bool:
    """``peer_names`` matching: exact, or ``*.`` standing for exactly one leftmost label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        label, dot, rest = name.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:] and "*" not in label
    return pattern == name


class TlsListener(TcpListener):
    """A TLS syslog receiver: :class:`TcpListener` plus the handshake and peer names."""

    refuse_tls = False

    def __init__(self, *args: Any, tls: TlsSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        problems = tls.problems()
        if problems:
            raise StartupError(f"input '{self.name}': " + "; ".join(problems))
        self.tls = tls
        self.context = server_context(tls)
        self.peer_names: Sequence[str] = tls.peer_names
        self.stats["tls_failed_total"] = 0
        self._handshakes: set[asyncio.Task[None]] = set()
        self._verified_paused: set[_TcpConnection] = set()  # held data waits for resume()
        self._logged: dict[str, float] = {}  # "host reason" -> when last logged

    def reload(self) -> None:
        """Re-read the certificate files (after they were renewed) for new handshakes."""
        self.context = server_context(self.tls)

    def _accepted(self, conn: _TcpConnection) -> None:
        assert conn.transport is not None
        conn.transport.pause_reading()  # nothing is read before the handshake owns it
        conn.held = []  # what arrives with the handshake waits for the peer-name check
        task = asyncio.get_running_loop().create_task(self._handshake(conn))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: _TcpConnection) -> None:
        loop = asyncio.get_running_loop()
        plain = conn.transport
        assert plain is not None
        try:
            secure = await loop.start_tls(
                plain,
                conn,
                self.context,
                server_side=True,
                ssl_handshake_timeout=_HANDSHAKE,
            )
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            self._fail(conn, plain, explain(exc))
            return
        if secure is None:  # the connection went away meanwhile
            self._closed(conn)
            return
        conn.transport = secure  # type: ignore[assignment]
        if self.peer_names:
            names = cert_names(secure.get_extra_info("peercert"))
            if not any(name_matches(p, n) for p in self.peer_names for n in names):
                shown = ", ".join(names[:5]) or "none"
                self._fail(
                    conn, secure, f"the sender's certificate names ({shown}) are not in peer_names"
                )
                return
        if self.paused:  # what came with the handshake waits for resume() too
            secure.pause_reading()
            self._verified_paused.add(conn)
            return
        self._release(conn)

    def _release(self, conn: _TcpConnection) -> None:
        """Hand over what arrived with the handshake; the connection reads freely from now."""
        held, conn.held = conn.held or [], None
        for chunk in held:
            conn.data_received(chunk)

    def resume(self) -> None:
        super().resume()
        waiting, self._verified_paused = self._verified_paused, set()
        for conn in waiting:
            if conn in self.connections:
                self._release(conn)

    def _fail(self, conn: _TcpConnection, transport: Any, why: str) -> None:
        self.stats["tls_failed_total"] += 1
        conn.rejected = True
        conn.held = None
        self._closed(conn)
        transport.close()
        now, key = self.now(), f"{conn.host} {why}"
        if now - self._logged.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            if len(self._logged) >= _LOGGED_MAX:
                self._logged.clear()
            self._logged[key] = now
            _log.warning("tls_refused", input=self.name, peer=conn.peer, reason=why)

    def close(self) -> None:
        for task in list(self._handshakes):
            task.cancel()
        super().close()
