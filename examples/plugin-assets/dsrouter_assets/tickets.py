"""The ``github_issue`` output: one issue per event through the GitHub Issues REST API.

``POST {url}/repos/{OWNER}/{NAME}/issues`` with ``{"title", "body", "labels"}``,
``Authorization: Bearer TOKEN`` and ``Accept: application/vnd.github+json``: the same request
works with GitHub.com, GitHub Enterprise Server (``url = "https://HOST/api/v3"``) and Gitea or
Forgejo (``url = "https://HOST/api/v1"``; their ``labels`` are label IDs, numbers).

The outcome follows the server's answer:

* 2xx (the API answers 201 Created): delivered;
* 429, every 5xx, 408, a 403 that is a rate limit (``x-ratelimit-remaining: 0`` or a
  ``Retry-After``), a timeout or a connection error: retried later, after ``Retry-After`` or
  until ``x-ratelimit-reset`` when the server says so (capped at an hour);
* 401, 403, 404, 410: the token or the repository is wrong, for every event alike; the event
  and the rest of the batch are dead-lettered with the status and the response;
* 422 and any other status: that event is dead-lettered; the rest of the batch goes on.

Events are sent one at a time, in order; when the server fails half-way through a batch, the
events already ticketed count as delivered and only the others are retried, so no event is
ticketed twice. The token is never shown: ``describe()`` names the repository and the server.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from dsrouter.api import (
    Duration,
    Event,
    Option,
    Output,
    OutputContext,
    PartialFailure,
    PermanentFailure,
    RetryLater,
)

from .issue import body_of, title_of

MAX_WAIT = 3600.0  # seconds: the longest Retry-After or rate-limit reset honoured
RATE_LIMIT_WAIT = 60.0  # a rate-limit answer that says nothing about when to come back
BODY_KEPT = 4096  # bytes of a response body kept with a dead letter
WHOLE = frozenset({401, 403, 404, 410})  # wrong token or repository: no event can succeed
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def check_repo(value: str) -> str | None:
    if not _REPO.match(value) or value.split("/")[1] in (".", ".."):
        return 'expected "OWNER/NAME", e.g. "secops/incidents"'
    return None


def check_url(value: str) -> str | None:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError, ValueError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        return 'expected "https://HOST[/PATH]", e.g. "https://api.github.com"'
    if url.userinfo or url.query or url.fragment:
        return "give the API base only: no user, password, query or fragment (use token)"
    return None


def check_labels(value: list) -> str | None:
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return "expected a list of label names (GitHub) or label IDs (Gitea, Forgejo)"
    return None


OPTIONS = (
    Option("repo", "string", help='"OWNER/NAME" of the repository', validate=check_repo),
    Option("token", "string", secret=True, help="API token allowed to open issues"),
    Option(
        "url",
        "string",
        "https://api.github.com",
        help="API base: https://HOST/api/v3 for GitHub Enterprise, /api/v1 for Gitea/Forgejo",
        validate=check_url,
    ),
    Option(
        "labels", "list", ["deep-security"], help="labels of every issue", validate=check_labels
    ),
    Option("timeout", "duration", Duration(10), help="connect, read and write timeout"),
    Option("ca", "string", None, help="CA bundle (PEM) that signed the server certificate"),
)
_DEFAULTS = {o.name: o.default for o in OPTIONS if not o.required}


class IssueOutput(Output):
    """One ``POST .../issues`` per event, in order, on one keep-alive ``httpx.Client``."""

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        super().__init__(name, options, context)
        opts = {**_DEFAULTS, **options}
        self.repo = str(opts["repo"])
        self.token = str(opts["token"])
        self.base = str(opts["url"]).rstrip("/")
        self.labels = list(opts["labels"])
        self.timeout = float(opts["timeout"])
        self.ca = opts["ca"]
        self.endpoint = f"{self.base}/repos/{self.repo}/issues"
        self.client: httpx.Client | None = None

    def open(self) -> None:
        """Check what the configuration checker cannot (an empty token, the CA file), connect."""
        if not self.token.strip() or any(c in self.token for c in "\r\n"):
            raise PermanentFailure(f"output '{self.name}': token is empty or not one line")
        if self.timeout <= 0:
            raise PermanentFailure(f"output '{self.name}': timeout must be positive")
        self.client = self._client()

    def _client(self) -> httpx.Client:
        verify: ssl.SSLContext | bool = True
        if self.ca:
            ca = self.context.config_dir / Path(self.ca).expanduser()
            try:
                verify = ssl.create_default_context(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                why = getattr(exc, "strerror", None) or exc
                raise PermanentFailure(
                    f"output '{self.name}': ca: cannot load {ca}: {why}"
                ) from None
        return httpx.Client(
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "dsrouter-assets",
            },
            timeout=httpx.Timeout(self.timeout),
            verify=verify,
            follow_redirects=False,
        )

    def reopen(self) -> None:
        """Drop pooled connections and reload the CA file (on reload)."""
        old, self.client = self.client, self._client()
        if old is not None:
            old.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def describe(self) -> str:
        url = httpx.URL(self.base)
        port = f":{url.port}" if url.port is not None else ""
        return f"issues in {self.repo} at {url.scheme}://{url.host}{port}{url.path.rstrip('/')}"

    # -- delivery ---------------------------------------------------------------------------
    def send(self, events: Sequence[Event]) -> None:
        rejected: dict[int, PermanentFailure | str] = {}
        n = len(events)
        for i, event in enumerate(events):
            try:
                self._post(event)
            except RetryLater as later:
                if i == 0:
                    raise
                raise PartialFailure(
                    f"{i} of {n} ticketed, then {later}",
                    rejected=rejected,
                    retry=range(i, n),
                    retry_after=later.retry_after,
                ) from None
            except PermanentFailure as failure:
                if n == 1 or (i == 0 and _status(failure) in WHOLE):
                    raise
                if _status(failure) in WHOLE:  # the same answer awaits every later event
                    rejected.update(dict.fromkeys(range(i, n), failure))
                    break
                rejected[i] = failure
        if rejected:
            raise PartialFailure(f"{len(rejected)} of {n} events rejected", rejected=rejected)

    def _post(self, event: Event) -> None:
        if self.client is None:
            raise RetryLater(f"output '{self.name}' is not open")
        issue = {"title": title_of(event), "body": body_of(event), "labels": self.labels}
        content = json.dumps(issue, default=str).encode()
        headers = {"Content-Type": "application/json"}
        try:
            resp = self.client.post(self.endpoint, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryLater(f"no answer within {self.timeout:g}s ({type(exc).__name__})") from None
        except (httpx.HTTPError, OSError) as exc:
            raise RetryLater(f"{type(exc).__name__}: {self._redact(str(exc))}") from None
        judge(resp.status_code, resp.headers, self._redact(resp.text[:BODY_KEPT]))

    def _redact(self, text: str) -> str:
        """The text without the token (a server or proxy may echo the request back)."""
        return text.replace(self.token, "[redacted]") if len(self.token) >= 4 else text


def judge(status: int, headers: Mapping[str, str], body: str) -> None:
    """Return for a 2xx; raise RetryLater or PermanentFailure for anything else."""
    if 200 <= status < 300:
        return
    text = " ".join(body.split())
    reason = f"HTTP {status}" + (f": {text[:200]}" if text else "")
    limited = status == 429 or (status == 403 and _rate_limited(headers))
    if limited or status == 408 or status >= 500:
        wait = wait_for(headers)
        raise RetryLater(reason, retry_after=RATE_LIMIT_WAIT if wait is None and limited else wait)
    if 300 <= status < 400:
        reason += f" (redirected to {headers.get('location', '?')}: check url and repo)"
    raise PermanentFailure(reason, response={"status": status, "body": body})


def _rate_limited(headers: Mapping[str, str]) -> bool:
    return headers.get("x-ratelimit-remaining", "").strip() == "0" or "retry-after" in headers


def wait_for(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait: ``Retry-After`` (seconds or an HTTP date), else until
    ``x-ratelimit-reset`` (epoch seconds) when no request is left; capped at an hour."""
    now = time.time() if now is None else now
    value = headers.get("retry-after", "").strip()
    seconds: float | None = None
    if value.isdigit():
        seconds = float(value)
    elif value:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
    reset = headers.get("x-ratelimit-reset", "").strip()
    if seconds is None and reset.isdigit() and headers.get("x-ratelimit-remaining") == "0":
        seconds = float(reset) - now
    return None if seconds is None else max(0.0, min(MAX_WAIT, seconds))


def _status(failure: PermanentFailure) -> int | None:
    return (failure.response or {}).get("status")


__all__ = ["OPTIONS", "IssueOutput", "judge", "wait_for"]
