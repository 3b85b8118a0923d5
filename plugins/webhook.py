"""The ``webhook`` output: events POSTed to an HTTP(S) endpoint with a shared keep-alive client.

The delivery outcome follows the server's answer, never an assumption: 2xx is delivered;
connection errors, timeouts, 408, 429, every 5xx and the ``retry_statuses`` are retried later
(``Retry-After`` honoured, capped at one hour); any other status is permanent and dead-lettered
with the status and the first 4 KiB of the response body. An untrusted server certificate is
retried too (RetryLater, with "certificate verify failed" in the reason): it is usually a
configuration problem, but a queued batch survives until the CA or the server is fixed, where a
dead letter would need a manual replay.

The URL, headers, bearer token and basic credentials are secrets: ``describe()`` shows only the
URL's origin, and no reason, log line or dead letter repeats them (response bodies are scrubbed
of them too, since servers may echo a request back).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import certifi
import httpx

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

from .webhook_body import Body

MAX_RETRY_AFTER = 3600.0
BODY_KEPT = 4096  # bytes of a response body kept in a dead letter
_READ_CAP = 64 * 1024  # bytes of a response read at most (the rest is dropped with the connection)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_REDACTED = "[redacted]"

OPTIONS = (
    Option("url", "string", secret=True, help="http:// or https:// endpoint (may embed a token)"),
    Option(
        "format",
        "enum",
        "array",
        choices=("json", "array", "ndjson"),
        help="json: a request per event; array: a JSON array per batch; ndjson: a line per event",
    ),
    Option(
        "preset",
        "enum",
        "generic",
        choices=("generic", "slack", "teams"),
        help="body style; slack and teams send one message per event",
    ),
    Option("template", "string", None, help="body template with {field} placeholders"),
    Option("headers", "list", [], secret=True, help='extra headers, ["Name: value", ...]'),
    Option("bearer_token", "string", None, secret=True, help="sent as Authorization: Bearer"),
    Option("basic_auth", "string", None, secret=True, help='"user:password" for Basic auth'),
    Option("timeout", "duration", Duration(10), help="connect, read and write timeout"),
    Option("ca", "string", None, help="CA bundle (PEM) that signed the server certificate"),
    Option("cert", "string", None, help="client certificate (PEM) for mutual TLS"),
    Option("key", "string", None, help="private key (PEM) of the client certificate"),
    Option("verify", "bool", True, help="verify the server certificate and host name"),
    Option(
        "retry_statuses",
        "list",
        [408, 429, 500, 502, 503, 504],
        help="HTTP statuses retried later (every 5xx is retried anyway)",
    ),
    Option("max_in_flight", "int", 4, help="requests sent at once (worker threads)"),
)


# ---- secrets ------------------------------------------------------------------------------


class Redactor:
    """Replaces every known secret value in a text by ``[redacted]``."""

    def __init__(self, values: Sequence[str]) -> None:
        self.values = sorted({v for v in values if v}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, _REDACTED)
        return text


def origin(url: httpx.URL) -> str:
    """``scheme://host[:port]`` plus ``/…`` when there is a path: what may be shown of a URL."""
    port = f":{url.port}" if url.port is not None else ""
    rest = "/…" if url.raw_path not in (b"", b"/") else ""
    return f"{url.scheme}://{url.host}{port}{rest}"


class _RedactURLs(logging.Filter):
    """httpx logs each request's full URL at INFO; webhook URLs often embed a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(origin(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _install_log_filter() -> None:
    log = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactURLs) for f in log.filters):
        log.addFilter(_RedactURLs())


# ---- option checks ------------------------------------------------------------------------


def parse_url(value: Any) -> httpx.URL:
    """The ``url`` option as an httpx URL; ValueError (never quoting it) when unusable."""
    problem = 'url: expected "http://HOST/..." or "https://HOST/..."'
    if not isinstance(value, str):
        raise ValueError(problem)
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ValueError(problem) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(problem)
    return url


def parse_headers(items: Sequence[Any]) -> dict[str, str]:
    """``["Name: value", ...]`` → dict; errors name the position and header, never the value."""
    headers: dict[str, str] = {}
    for n, item in enumerate(items):
        name, sep, value = item.partition(":") if isinstance(item, str) else ("", "", "")
        name, value = name.strip(), value.strip()
        if not sep or not _HEADER_NAME.match(name) or "\r" in value or "\n" in value:
            raise ValueError(f'headers[{n}]: expected "Name: value"')
        headers[name] = value
    return headers


def auth_header(bearer: str | None, basic: str | None) -> tuple[str | None, list[str]]:
    """The Authorization value for the options, and the secrets it holds."""
    if bearer and basic:
        raise ValueError("set bearer_token or basic_auth, not both")
    if bearer:
        return f"Bearer {bearer}", [bearer]
    if basic:
        user, sep, password = basic.partition(":")
        if not sep or not user:
            raise ValueError('basic_auth: expected "user:password"')
        token = base64.b64encode(basic.encode()).decode()
        return f"Basic {token}", [basic, password, token]
    return None, []


def request_headers(opts: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The ``headers`` plus Authorization from the options, and every secret value in them."""
    headers = parse_headers(opts["headers"])
    auth, secrets = auth_header(opts.get("bearer_token"), opts.get("basic_auth"))
    if auth is not None:
        if any(k.lower() == "authorization" for k in headers):
            raise ValueError("headers: Authorization is set by bearer_token or basic_auth")
        headers["Authorization"] = auth
    return headers, secrets + list(headers.values())


def parse_statuses(items: Sequence[Any]) -> frozenset[int]:
    ok = all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in items)
    if not ok:
        raise ValueError("retry_statuses: expected a list of HTTP status codes (100-599)")
    return frozenset(items)


def ssl_context(
    verify: bool, ca: Path | None, cert: Path | None, key: Path | None
) -> ssl.SSLContext:
    """The client TLS context: ``ca`` or the usual trust store, and the client certificate."""
    if key is not None and cert is None:
        raise ValueError("key: set cert too (the client certificate)")
    if not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = _trusting(ca)
    if cert is not None:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cert/key: cannot load {cert}: {_why(exc)}") from None
    return ctx


def _trusting(ca: Path | None) -> ssl.SSLContext:
    try:
        if ca is not None:
            return ssl.create_default_context(cafile=ca)
        if os.environ.get("SSL_CERT_FILE"):
            return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        if os.environ.get("SSL_CERT_DIR"):
            return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
        return ssl.create_default_context(cafile=certifi.where())
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca: cannot load {ca}: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


class _Once:
    """A request body handed over once and then let go.

    httpx's request and connection-pool objects form reference cycles that only the cyclic
    collector frees, and the daemon runs it rarely: a body kept inside them (up to a whole
    batch) would pile up with every request. This one drops its bytes once sent.
    """

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self):
        body, self.body = self.body, b""
        yield body


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date), capped at 1 hour."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, min(MAX_RETRY_AFTER, seconds))


def _status(failure: PermanentFailure) -> int | None:
    return (failure.response or {}).get("status")


# ---- the output ---------------------------------------------------------------------------


class WebhookOutput(Output):
    """POST events with one shared ``httpx.Client`` used by ``max_in_flight`` worker threads."""

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        super().__init__(name, options, context)
        self.concurrency = max(1, int(options.get("max_in_flight", 4)))
        self.log = context.logger
        self.client: httpx.Client | None = None
        self.redact = Redactor([])

    # -- life cycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Check the options (ValueError naming the option, never a secret) and connect."""
        opts = self.options
        self.url = parse_url(opts["url"])
        self.body = Body(opts["format"], opts["preset"], opts.get("template"))
        self.timeout = float(opts["timeout"])
        if self.timeout <= 0 or opts["max_in_flight"] < 1:
            raise ValueError("timeout and max_in_flight must be positive")
        self.retry_statuses = parse_statuses(opts["retry_statuses"])
        headers, secrets = request_headers(opts)
        secrets += [opts["url"], self.url.password or ""]
        path = self.url.raw_path.decode("ascii", "replace")
        secrets += [path] if len(path) >= 8 else []  # a token in the path (Slack, Teams)
        self.redact = Redactor(secrets)
        self.headers = {"Accept-Encoding": "identity", **headers}
        own_type = any(k.lower() == "content-type" for k in headers)
        self.request_headers = {} if own_type else {"Content-Type": self.body.content_type}
        _install_log_filter()
        self.client = self._client()
        if not opts["verify"] and self.url.scheme == "https" and self.log is not None:
            self.log.warning("webhook_tls_unverified", output=self.name)

    def _client(self) -> httpx.Client:
        opts = self.options
        tls = ssl_context(opts["verify"], self._path("ca"), self._path("cert"), self._path("key"))
        n = self.concurrency
        return httpx.Client(
            headers=self.headers,
            timeout=httpx.Timeout(self.timeout),
            verify=tls,
            trust_env=True,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        )

    def _path(self, key: str) -> Path | None:
        value = self.options.get(key)
        return None if not value else self.context.config_dir / Path(value).expanduser()

    def reopen(self) -> None:
        """Drop pooled connections and reload the TLS files (certificate rotation)."""
        old, self.client = self.client, self._client()
        if old is not None:
            old.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def describe(self) -> str:
        if not hasattr(self, "body"):
            return "webhook"
        how = {"json": "one request per event", "array": "JSON array per batch"}
        mode = how.get(self.body.format, "NDJSON per batch")
        preset = self.options.get("preset", "generic")
        extra = "" if preset == "generic" else f", {preset} preset"
        return f"POST {origin(self.url)} ({mode}{extra})"

    # -- delivery -----------------------------------------------------------------------------
    def send(self, events: Sequence[Event]) -> None:
        if not events:
            return
        if self.body.per_event:
            self._send_each(events)
        else:
            self._send_batch(events)

    def _send_each(self, events: Sequence[Event]) -> None:
        rejected: dict[int, PermanentFailure | str] = {}
        for i, event in enumerate(events):
            try:
                self._post(self.body.one(event))
            except PermanentFailure as failure:
                if len(events) == 1:
                    raise
                rejected[i] = failure
            except RetryLater as later:
                if i == 0:
                    raise
                retry = range(i, len(events))
                raise PartialFailure(
                    str(later), rejected=rejected, retry=retry, retry_after=later.retry_after
                ) from None
        if rejected:
            raise PartialFailure(f"{len(rejected)} of {len(events)} rejected", rejected=rejected)

    def _send_batch(self, events: Sequence[Event]) -> None:
        try:
            self._post(self.body.batch(events))
            return
        except PermanentFailure as failure:
            if _status(failure) != 413 or len(events) == 1:
                raise
        if self.log is not None:
            self.log.info("webhook_batch_split", output=self.name, events=len(events))
        self._send_halves(events)

    def _send_halves(self, events: Sequence[Event]) -> None:
        """After a 413: send each half once, halving again on 413 down to single events."""
        n = len(events)
        rejected: dict[int, PermanentFailure | str] = {}
        stack = [(n // 2, n), (0, n // 2)]  # popped left to right, so [lo, n) is all unsent
        while stack:
            lo, hi = stack.pop()
            try:
                self._post(self.body.batch(events[lo:hi]))
            except PermanentFailure as failure:
                if _status(failure) == 413 and hi - lo > 1:
                    mid = (lo + hi) // 2
                    stack += [(mid, hi), (lo, mid)]
                else:
                    rejected.update(dict.fromkeys(range(lo, hi), failure))
            except RetryLater as later:
                raise PartialFailure(
                    str(later), rejected=rejected, retry=range(lo, n), retry_after=later.retry_after
                ) from None
        if rejected:
            raise PartialFailure(f"{len(rejected)} of {n} events rejected", rejected=rejected)

    def _post(self, body: bytes) -> None:
        """One request; returns on 2xx, else raises RetryLater or PermanentFailure."""
        if self.client is None:
            raise RetryLater("webhook output is not open")
        headers = {**self.request_headers, "Content-Length": str(len(body))}
        request = self.client.build_request("POST", self.url, content=_Once(body), headers=headers)
        try:
            resp = self.client.send(request, stream=True)
            try:
                head = self._read(resp)
            finally:
                resp.close()
        except httpx.TimeoutException as exc:
            raise RetryLater(f"no answer within {self.timeout:g}s ({type(exc).__name__})") from None
        except (httpx.HTTPError, OSError) as exc:
            raise RetryLater(self._transport_reason(exc)) from None
        self._judge(resp.status_code, resp.headers, head)

    def _read(self, resp: httpx.Response) -> bytes:
        """Up to 64 KiB of the body, within the timeout (draining keeps the connection alive)."""
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _READ_CAP or time.monotonic() > deadline:
                break
        return b"".join(chunks)

    def _judge(self, status: int, headers: httpx.Headers, head: bytes) -> None:
        if 200 <= status < 300:
            return
        body = self.redact(head.decode("utf-8", "replace"))
        reason = f"HTTP {status}" + _snippet(body)
        if status in self.retry_statuses or 500 <= status <= 599:
            raise RetryLater(reason, retry_after=retry_after(headers.get("retry-after")))
        kept = body.encode()[:BODY_KEPT].decode("utf-8", "ignore")
        raise PermanentFailure(reason, response={"status": status, "body": kept})

    def _transport_reason(self, exc: BaseException) -> str:
        text = self.redact(str(exc)) or type(exc).__name__
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return f"server certificate verify failed (check the ca option): {text}"
        return f"{type(exc).__name__}: {text}"


def _snippet(body: str) -> str:
    text = " ".join(body.split())
    return f": {text[:200]}" if text else ""


def _create(name: str, options: Mapping[str, Any], context: OutputContext) -> WebhookOutput:
    return WebhookOutput(name, options, context)


@hookimpl
def dsrouter_register_outputs(register) -> None:
    """Register the ``webhook`` output type."""
    register(
        OutputType(
            "webhook",
            _create,
            OPTIONS,
            help="HTTP(S) POST of events as JSON, NDJSON, Slack or Teams messages",
            default_queue="disk",
        )
    )
