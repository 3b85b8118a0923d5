"""The built-in ``sns`` input type: Deep Security events from an Amazon SNS HTTPS subscription.

input ds_sns {
  type   = "sns"
  listen = "0.0.0.0:8443"
  path   = "/sns"
  cert   = "/etc/dsrouter/sns.pem"
  key    = "/etc/dsrouter/sns.key"
  topics = ["arn:aws:sns:us-east-1:123456789012:deep-security-events"]
}

Every message is verified (docs/sns.md); the events get ``format == "sns"`` and the syslog
road's field names (:mod:`dsrouter.ds.sns`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from dsrouter.api import Duration, InputType, Option, Size, hookimpl
from dsrouter.errors import StartupError
from dsrouter.ingest.limits import allow_list
from dsrouter.ingest.sns_urls import parse_topic_arn
from dsrouter.ingest.tls import TlsSettings, server_context

_log = structlog.get_logger()


def _check_path(value: str) -> str | None:
    ok = value.startswith("/") and "?" not in value and "#" not in value and value.isascii()
    return None if ok and " " not in value else 'expected a path such as "/sns"'


def _check_topics(value: list) -> str | None:
    if not value:
        return "list at least one topic ARN: SNS signs for every topic, anyone's included"
    for item in value:
        if not isinstance(item, str) or parse_topic_arn(item) is None:
            return f"not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME): {str(item)[:80]!r}"
    return None


def _check_hosts(value: list) -> str | None:
    for item in value:
        if not isinstance(item, str) or not item or any(c in item for c in "/@*?# "):
            return f'expected exact "host" or "host:port" entries, not {str(item)[:80]!r}'
    return None


def _check_version(value: int) -> str | None:
    return None if value in (1, 2) else "expected 1 (SHA-1 and SHA-256) or 2 (SHA-256 only)"


SNS_OPTIONS = (
    Option("listen", "address", help='where to listen, "HOST:PORT"'),
    Option("path", "string", "/sns", help="the URL path SNS posts to", validate=_check_path),
    Option("cert", "string", None, help="the endpoint's certificate (PEM, with its chain)"),
    Option("key", "string", None, help="the certificate's private key (PEM)"),
    Option("key_password", "string", None, secret=True, help="the key's passphrase"),
    Option(
        "allow_plain_http",
        "bool",
        False,
        help="serve plain HTTP when cert/key are not set (only behind a TLS reverse proxy)",
    ),
    Option(
        "topics",
        "list",
        help="TopicArns accepted; messages of other topics get 403",
        validate=_check_topics,
    ),
    Option(
        "auto_confirm",
        "bool",
        False,
        help="confirm subscriptions by visiting the SubscribeURL (false: log the command)",
    ),
    Option(
        "cert_hosts",
        "list",
        [],
        help="exact host[:port] a SigningCertURL / SubscribeURL may name instead of Amazon's "
        "SNS host of the topic's region (empty: Amazon's)",
        validate=_check_hosts,
    ),
    Option("cert_ca", "string", None, help="CA bundle for fetching them (default: certifi's)"),
    Option(
        "max_age",
        "duration",
        Duration(7200.0),
        help="refuse messages published longer ago (must exceed the delivery policy's retries)",
    ),
    Option(
        "min_signature_version",
        "int",
        1,
        help="2 refuses SHA-1 signed messages (set the topic's SignatureVersion to 2 first)",
        validate=_check_version,
    ),
    Option("max_body", "size", Size(1 << 20), help="larger request bodies get 413"),
    Option("read_timeout", "duration", Duration(10.0), help="a request must arrive this fast"),
    Option("idle_timeout", "duration", Duration(60.0), help="close idle keep-alive connections"),
    Option("max_connections", "int", 256, help="connections beyond this are closed at once"),
    Option(
        "allow",
        "ip_list",
        [],
        help="sender addresses and CIDR ranges allowed (empty: anyone; SNS has no fixed IPs)",
    ),
)


def _opt(options: Mapping[str, Any], name: str) -> Any:
    if name in options:
        return options[name]
    return next(o.default for o in SNS_OPTIONS if o.name == name)


def _problems(options: Mapping[str, Any]) -> list[str]:
    """What ``dsrouter check`` reports (E225) about cert, key and plain HTTP together."""
    cert, key = _opt(options, "cert"), _opt(options, "key")
    if cert is None and key is None and not _opt(options, "allow_plain_http"):
        return [
            "set cert and key (SNS delivers only to HTTPS endpoints with a CA-signed "
            "certificate); allow_plain_http = true only behind a TLS proxy"
        ]
    if (cert is None) != (key is None):
        return ["set both cert and key"]
    return []


def _tls(name: str, options: Mapping[str, Any]):
    cert, key = _opt(options, "cert"), _opt(options, "key")
    if cert is None and key is None:
        if _opt(options, "allow_plain_http"):
            return None
        raise StartupError(
            f"input '{name}': set cert and key (SNS delivers only to HTTPS endpoints with a "
            "CA-signed certificate); allow_plain_http = true only behind a TLS proxy"
        )
    if cert is None or key is None:
        raise StartupError(f"input '{name}': set both cert and key")
    context = server_context(TlsSettings(cert, key, _opt(options, "key_password")))
    context.set_alpn_protocols(["http/1.1"])
    return context


def make_sns(name: str, options: Mapping[str, Any], sink: Any) -> Any:
    """Build the ``sns`` listener from checked options (certificate files are read here).

    The HTTP and crypto modules are imported only here: a daemon without an sns input never
    loads them (nor needs the ``cryptography`` package)."""
    from dsrouter.ds.sns import events_from_notification
    from dsrouter.ingest.sns import SnsListener
    from dsrouter.ingest.sns_message import SnsSettings

    submit = getattr(sink, "submit", None)
    if submit is None:
        raise StartupError(f"input '{name}': the sns input needs the daemon's pipeline")
    host, port = options["listen"]
    hosts = frozenset(str(h).lower() for h in _opt(options, "cert_hosts"))
    settings = SnsSettings(
        topics=frozenset(options["topics"]),
        auto_confirm=bool(_opt(options, "auto_confirm")),
        cert_hosts=hosts,
        cert_ca=_opt(options, "cert_ca"),
        max_age=float(_opt(options, "max_age")),
        min_signature_version=int(_opt(options, "min_signature_version")),
    )
    if hosts or settings.cert_ca:
        _log.warning(
            "sns_overrides_applied",
            input=name,
            cert_hosts=sorted(hosts) or None,
            cert_ca=settings.cert_ca,
            help="certificates and confirmations are fetched from these hosts instead of "
            "Amazon's SNS hosts: meant for tests and private mirrors",
        )
    return SnsListener(
        name,
        host,
        port,
        settings,
        submit,
        events_from_notification,
        path=_opt(options, "path"),
        tls=_tls(name, options),
        max_body=int(_opt(options, "max_body")),
        read_timeout=float(_opt(options, "read_timeout")),
        idle_timeout=float(_opt(options, "idle_timeout")),
        max_connections=int(_opt(options, "max_connections")),
        allow=allow_list(_opt(options, "allow")),
    )


@hookimpl
def dsrouter_register_inputs(register: Callable[[InputType], None]) -> None:
    """Register the ``sns`` receiver."""
    register(
        InputType(
            "sns",
            make_sns,
            SNS_OPTIONS,
            help="Amazon SNS HTTPS subscription (Deep Security's JSON events), every message "
            "verified",
            validate=_problems,
            paths=("cert", "key", "cert_ca"),
        )
    )
