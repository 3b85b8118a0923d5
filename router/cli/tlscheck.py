"""``dsrouter check-tls HOST:PORT``: connect as a syslog-over-TLS client and explain the outcome.

For operators debugging a Deep Security Manager connection: the same handshake DS would make
(TLS 1.2+, the server certificate verified against ``--ca`` or the system store, the host name
checked, ``--cert``/``--key`` presented), then one line in plain words for each finding.
"""

from __future__ import annotations

import socket
import ssl
import sys
from typing import Any

from dsrouter.cli.common import EXIT_INVALID, EXIT_OK

#: (marker in the OpenSSL error or verify message, explanation) - first match wins.
_WORDS = (
    ("certificate has expired", "the server's certificate has expired"),
    ("not yet valid", "the server's certificate is not valid yet (check both clocks)"),
    ("Hostname mismatch", "name mismatch: the server's certificate is not for {name}"),
    ("IP address mismatch", "name mismatch: the server's certificate is not for {name}"),
    ("self-signed certificate", "the server's certificate is self-signed and not trusted (--ca)"),
    ("unable to get local issuer", "the server's certificate is not signed by a CA you trust "
     "(give the CA with --ca)"),
    ("CERTIFICATE_REQUIRED", "the server requires a client certificate and none was presented "
     "(--cert and --key)"),
    ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "the server requires a client certificate and none "
     "was presented (--cert and --key)"),
    ("UNKNOWN_CA", "the server does not trust the CA of your client certificate"),
    ("BAD_CERTIFICATE", "the server rejected your client certificate"),
    ("PROTOCOL_VERSION", "the server only speaks a TLS version older than 1.2"),
    ("UNSUPPORTED_PROTOCOL", "the server only speaks a TLS version older than 1.2"),
    ("WRONG_VERSION_NUMBER", "the server did not answer in TLS (a plain syslog port?)"),
    ("record layer failure", "the server did not answer in TLS (a plain syslog port?)"),
    ("HANDSHAKE_FAILURE", "the handshake failed: no protocol or cipher both sides accept"),
)  # fmt: skip


def check_tls(args: Any) -> int:
    """Run the check; print findings; 0 when the handshake (and client auth) succeeded."""
    host, _, port_text = args.target.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit():
        print(f"dsrouter: check-tls: expected HOST:PORT, got {args.target!r}", file=sys.stderr)
        return 2
    name = args.name or host
    try:
        ctx = _context(args)
    except (OSError, ssl.SSLError) as exc:
        print(f"FAILED: cannot load your files: {exc}")
        return EXIT_INVALID
    try:
        raw = socket.create_connection((host, int(port_text)), timeout=args.timeout)
    except OSError as exc:
        print(f"FAILED: cannot connect to {args.target}: {exc.strerror or exc}")
        return EXIT_INVALID
    with raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                return _after_handshake(tls, name)
        except (ssl.SSLError, OSError) as exc:
            print(f"FAILED: {explain(exc, name)}")
            return EXIT_INVALID


def _context(args: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key or args.cert)
    return ctx


def _after_handshake(tls: ssl.SSLSocket, name: str) -> int:
    """TLS 1.3 servers refuse a client certificate after the handshake: read briefly."""
    tls.settimeout(1.0)
    try:
        tls.recv(1)
    except TimeoutError:
        pass  # the server waits for syslog: what a healthy receiver does
    except (ssl.SSLError, OSError) as exc:
        print(f"FAILED: {explain(exc, name)}")
        return EXIT_INVALID
    cert = tls.getpeercert() or {}
    cipher = (tls.cipher() or ("?",))[0]
    print(f"OK: {tls.version()} with {cipher}; the server's certificate is for "
          f"{_names(cert)}, valid until {cert.get('notAfter', '?')}, and trusted")  # fmt: skip
    return EXIT_OK


def _names(cert: dict[str, Any]) -> str:
    dns = [v for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
    return ", ".join(dns) or "an unnamed subject"


def explain(exc: BaseException, name: str) -> str:
    """An OpenSSL failure in words, or the error itself when no rule knows it."""
    text = f"{getattr(exc, 'verify_message', '') or ''} {getattr(exc, 'reason', '') or ''} {exc}"
    if isinstance(exc, TimeoutError):
        return "the server did not answer the TLS handshake in time (a plain syslog port?)"
    if isinstance(exc, ConnectionResetError):
        return (
            "the server closed the connection during the handshake (it may refuse your "
            "client certificate, or not speak TLS)"
        )
    for marker, words in _WORDS:
        if marker.lower() in text.lower():
            return words.format(name=name)
    return f"TLS failed: {exc}"
