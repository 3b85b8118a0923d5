"""The ``siem`` output: syslog to a SIEM over UDP, TCP or TLS (RFC 5424/3164, RFC 6587/5425).

Each event becomes one syslog message (:mod:`.siem_format`: the raw message as received, CEF,
LEEF or JSON); :mod:`.siem_transport` carries them. On TCP and TLS delivery is at least once:
a batch counts as delivered when the receiver's TCP has acknowledged all of it, and a broken
connection fails the whole batch (RetryLater), which the worker offers again after its backoff
on a new connection, so at most that batch arrives twice. UDP has no acknowledgement: one
datagram per message, what the network drops is lost. A message longer than ``max_message``
(65,507 bytes over UDP, no limit over TCP/TLS unless set) is cut at a character boundary
(``oversize = "truncate"``) or dead-lettered (``"reject"``).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsrouter.api import (
    Duration,
    Event,
    Option,
    Output,
    OutputContext,
    OutputType,
    PartialFailure,
    PermanentFailure,
    RetryLater,
    hookimpl,
)
from dsrouter.delivery.options import raw_needed

from .siem_format import Encoder, frame, truncate
from .siem_transport import Datagrams, Stream, parse_endpoint, tls_context

UDP_MAX = 65_507  # the largest UDP payload over IPv4
_APP_NAME = re.compile(r"[A-Za-z0-9._-]{1,48}")
_HOST_NAME = re.compile(r"[!-~]{1,255}")
_APP_NAME_HELP = "expected up to 48 of A-Z a-z 0-9 . _ -"


@dataclass(frozen=True)
class _Checked(Option):
    """An option whose value ``dsrouter check`` also tests with ``validate`` (None = fine)."""

    validate: Callable[[Any], str | None] | None = None

    def check(self, value: Any) -> tuple[Any, str | None]:
        value, problem = super().check(value)
        if problem is None and self.validate is not None and value is not None:
            problem = self.validate(value)
        return (value, None) if problem is None else (None, problem)


def _endpoint(value: str) -> str | None:
    try:
        parse_endpoint(value)
    except ValueError as exc:
        return str(exc)
    return None


def _match(pattern: re.Pattern[str], what: str) -> Callable[[str], str | None]:
    return lambda value: None if pattern.fullmatch(value) else what


OPTIONS = (
    _Checked("endpoint", "string", help="udp://, tcp:// or tls://HOST:PORT", validate=_endpoint),
    Option(
        "format",
        "enum",
        "raw",
        choices=("raw", "cef", "leef", "json"),
        help="raw (the message as received), cef, leef (LEEF 2.0) or json",
    ),
    Option(
        "framing",
        "enum",
        None,
        choices=("octet-counted", "lf"),
        help="TCP/TLS framing (default: octet-counted over TLS, lf over TCP)",
    ),
    Option("header", "enum", "rfc5424", choices=("rfc5424", "rfc3164"), help="syslog header"),
    _Checked(
        "hostname",
        "string",
        "original",
        help='header HOSTNAME: "original", "host", "local" or a name',
        validate=_match(_HOST_NAME, "expected a host name without spaces (printable ASCII)"),
    ),
    _Checked(
        "app_name",
        "string",
        "",
        help="APP-NAME (RFC 5424) or TAG (RFC 3164); empty: none",
        validate=lambda v: None if v == "" or _APP_NAME.fullmatch(v) else _APP_NAME_HELP,
    ),
    _Checked(
        "facility",
        "int",
        None,
        help="syslog facility 0-23 (default: the event's own, else 16 = local0)",
        validate=lambda v: None if 0 <= v <= 23 else "expected a facility number from 0 to 23",
    ),
    _Checked(
        "timeout",
        "duration",
        Duration(10),
        help="connect, handshake, send and ACK wait",
        validate=lambda v: None if v > 0 else "expected a positive duration",
    ),
    _Checked(
        "max_message",
        "size",
        None,
        help="longest message in bytes (default: 65507 over UDP, no limit over TCP/TLS)",
        validate=lambda v: None if v >= 64 else "expected at least 64B",
    ),
    Option(
        "oversize",
        "enum",
        "truncate",
        choices=("truncate", "reject"),
        help="messages over max_message: truncate, or reject (dead letter)",
    ),
    Option("ca", "string", None, help="CA bundle (PEM) that verifies the server (TLS)"),
    Option("cert", "string", None, help="client certificate (PEM) for mutual TLS"),
    Option("key", "string", None, help="private key (PEM) of the client certificate"),
    Option("server_name", "string", None, help="name sent (SNI) and verified; default: the host"),
    Option("verify", "bool", True, help="verify the server certificate and name (TLS)"),
)


class SiemOutput(Output):
    """Syslog messages to one receiver over one connection (UDP: one socket)."""

    concurrency = 1

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        super().__init__(name, options, context)
        self.log = context.logger
        self.link: Stream | Datagrams | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Check the options together (ValueError naming the option); connect on first send."""
        opts = self.options
        self.endpoint = ep = parse_endpoint(opts["endpoint"])
        timeout = float(opts["timeout"])
        if ep.scheme == "udp" and opts.get("framing"):
            raise ValueError("framing applies to tcp:// and tls:// endpoints only")
        tls_only = [k for k in ("ca", "cert", "key", "server_name") if opts.get(k)]
        tls_only += ["verify"] if opts.get("verify") is False else []
        if ep.scheme != "tls" and tls_only:
            raise ValueError(f"{', '.join(tls_only)}: only used with tls:// endpoints")
        self.framing = opts.get("framing") or ("octet-counted" if ep.scheme == "tls" else "lf")
        self.limit: int | None = opts.get("max_message") or (
            UDP_MAX if ep.scheme == "udp" else None
        )
        if ep.scheme == "udp" and self.limit is not None and self.limit > UDP_MAX:
            raise ValueError(f"max_message: a UDP datagram holds at most {UDP_MAX} bytes")
        self.encode = Encoder(
            opts["format"], opts["header"], opts["hostname"], opts["app_name"], opts["facility"]
        )
        if ep.scheme == "udp":
            self.link = Datagrams(ep, timeout)
            return
        tls = self._tls() if ep.scheme == "tls" else None
        cert = bool(opts.get("cert"))
        self.link = Stream(ep, timeout, tls, opts.get("server_name"), cert, self.log, self.name)
        if tls is not None and not opts["verify"] and self.log is not None:
            self.log.warning("siem_tls_unverified", output=self.name)

    def _tls(self) -> ssl.SSLContext:
        paths = [self._path(k) for k in ("ca", "cert", "key")]
        return tls_context(self.options["verify"], *paths)

    def _path(self, key: str) -> Path | None:
        value = self.options.get(key)
        return None if not value else self.context.config_dir / Path(value).expanduser()

    def reopen(self) -> None:
        """Reconnect on the next send and reload the TLS files (certificate rotation)."""
        if isinstance(self.link, Stream):
            self.link.drop()
            if self.link.tls is not None:
                self.link.tls = self._tls()
        elif self.link is not None:
            self.link.close()

    def close(self) -> None:
        if self.link is not None:
            self.link.close()

    def describe(self) -> str:
        if not hasattr(self, "encode"):
            return "siem"
        framing = "" if self.endpoint.scheme == "udp" else f", {self.framing}"
        return f"{self.endpoint} ({self.options['format']}, {self.options['header']}{framing})"

    # -- delivery -----------------------------------------------------------------------------
    def send(self, events: Sequence[Event]) -> None:
        indices, messages, rejected = self._encode(events)
        retry, reason = self._deliver(indices, messages) if messages else ([], "")
        if not rejected and not retry:
            return
        if not rejected and len(retry) == len(events):
            raise RetryLater(reason)
        if not retry and len(events) == 1:
            raise rejected[0]
        if rejected:
            reasons = "; ".join(sorted({str(f) for f in rejected.values()})[:3])
            why = f"{len(rejected)} of {len(events)} events rejected: {reasons}"
            reason = "; ".join(filter(None, (why, reason)))
        raise PartialFailure(reason, rejected=rejected, retry=retry)

    def _encode(
        self, events: Sequence[Event]
    ) -> tuple[list[int], list[bytes], dict[int, PermanentFailure]]:
        """Batch indices, their messages (framed on streams), and the rejected indices."""
        indices: list[int] = []
        messages: list[bytes] = []
        rejected: dict[int, PermanentFailure] = {}
        limit, stream = self.limit, self.endpoint.scheme != "udp"
        for i, ev in enumerate(events):
            try:
                message = self.encode(ev)
            except Exception as exc:  # a value no format can hold (an int beyond 64 bits)
                rejected[i] = PermanentFailure(f"cannot encode the event: {exc}")
                continue
            if limit is not None and len(message) > limit:
                if self.options["oversize"] == "reject":
                    rejected[i] = PermanentFailure(
                        f"message of {len(message)} bytes is longer than max_message ({limit})"
                    )
                    continue
                message = truncate(message, limit)
            indices.append(i)
            messages.append(frame(message, self.framing) if stream else message)
        return indices, messages, rejected

    def _deliver(self, indices: list[int], messages: list[bytes]) -> tuple[list[int], str]:
        """Send; the batch indices to retry and why (none when everything went out)."""
        if isinstance(self.link, Datagrams):
            sent, reason = self.link.send(messages)
            return indices[sent:], reason
        assert self.link is not None
        try:
            self.link.write(b"".join(messages))
        except RetryLater as exc:
            return indices, str(exc)
        return [], ""


def _create(name: str, options: Mapping[str, Any], context: OutputContext) -> SiemOutput:
    return SiemOutput(name, options, context)


@hookimpl
def dsrouter_register_outputs(register) -> None:
    """Register the ``siem`` output type."""
    register(
        OutputType(
            "siem",
            _create,
            OPTIONS,
            help="syslog to a SIEM over UDP, TCP or TLS (raw, CEF, LEEF or JSON)",
            validate=raw_needed,
            default_queue="disk",
        )
    )
