"""HTTPS GETs to Amazon's SNS hosts: signing certificates (cached) and confirmations.

Both kinds of URL are checked by :mod:`dsrouter.ingest.sns_verify` before they get here. The
client follows no redirects, keeps no idle connection, goes through ``HTTPS_PROXY`` when the
environment names one, verifies the server against certifi's CA bundle or ``cert_ca``, and
gives each request :data:`TIMEOUT` seconds (SNS waits 15 s for an answer, the fetch included).
Certificates are cached by exact URL (at most :data:`CACHE_SIZE`, least recently used out
first, dropped once expired); a failed fetch is remembered for ``retry_after`` seconds so that a
burst of messages does not become a burst of downloads, and concurrent requests for one URL
share one download.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable

import certifi
import httpx
from cryptography import x509

from dsrouter.errors import StartupError
from dsrouter.ingest.sns_verify import parse_signing_cert

TIMEOUT = 5.0
CACHE_SIZE = 16
MAX_CERT = 16 * 1024
MAX_CONFIRM = 64 * 1024
_CONCURRENT = 4


class FetchError(Exception):
    """A GET that might succeed later (network, timeout, TLS, an HTTP status other than 200)."""


def client_context(ca: str | None) -> ssl.SSLContext:
    """TLS client context: ``ca`` (a PEM bundle), else certifi's bundle."""
    try:
        return ssl.create_default_context(cafile=ca or certifi.where())
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cert_ca {ca}: {getattr(exc, 'strerror', None) or exc}") from None


class Fetcher:
    """The GETs of one ``sns`` input; see the module docstring."""

    def __init__(
        self,
        ca: str | None,
        retry_after: float = 10.0,
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._context = client_context(ca)
        self._timeout = timeout
        self._retry_after = retry_after
        self._clock = clock
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._failed: dict[str, tuple[float, str]] = {}  # url -> (until, why)
        self._inflight: dict[str, asyncio.Future[x509.Certificate]] = {}
        self._slots = asyncio.Semaphore(_CONCURRENT)
        self.fetches = 0

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=self._context,
            follow_redirects=False,
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_keepalive_connections=0),
            trust_env=True,  # HTTPS_PROXY / NO_PROXY, as other outbound clients
        )

    async def get(self, url: str, limit: int) -> bytes:
        """The body of a 2xx answer to a GET of ``url`` (at most ``limit`` bytes)."""
        async with self._slots:
            self.fetches += 1
            try:
                async with self._client() as client:
                    return await asyncio.wait_for(self._read(client, url, limit), self._timeout)
            except (httpx.HTTPError, OSError, TimeoutError) as exc:
                raise FetchError(f"cannot GET {url[:120]}: {_why(exc)}") from None

    @staticmethod
    async def _read(client: httpx.AsyncClient, url: str, limit: int) -> bytes:
        async with client.stream("GET", url) as response:
            if not 200 <= response.status_code < 300:
                raise FetchError(f"GET {url[:120]} answered HTTP {response.status_code}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise FetchError(f"GET {url[:120]}: the answer is over {limit} bytes")
            return body

    async def certificate(self, url: str) -> x509.Certificate:
        """The signing certificate at ``url`` (cached); FetchError or Rejected("bad_cert")."""
        cert = self._certs.get(url)
        if cert is not None:
            if cert.not_valid_after_utc.timestamp() >= self._clock():
                self._certs.move_to_end(url)
                return cert
            del self._certs[url]  # expired: a renewed file may be there now
        failed = self._failed.get(url)
        if failed is not None and failed[0] > self._clock():
            raise FetchError(f"{failed[1]} (not retried for {self._retry_after:g}s)")
        task = self._inflight.get(url)
        if task is None:  # one download per URL, whoever asked first may go away
            task = asyncio.ensure_future(self._download(url))
            self._inflight[url] = task
            task.add_done_callback(functools.partial(self._settled, url))
        return await asyncio.shield(task)

    def _settled(self, url: str, task: asyncio.Future[x509.Certificate]) -> None:
        self._inflight.pop(url, None)
        if not task.cancelled():
            task.exception()  # retrieved here: every asker may have gone away

    async def _download(self, url: str) -> x509.Certificate:
        try:
            pem = await self.get(url, MAX_CERT)
        except FetchError as exc:
            if len(self._failed) >= 1024:
                self._failed.clear()
            self._failed[url] = (self._clock() + self._retry_after, str(exc))
            raise
        self._failed.pop(url, None)
        cert = parse_signing_cert(pem)
        self._certs[url] = cert
        while len(self._certs) > CACHE_SIZE:
            self._certs.popitem(last=False)
        return cert

    async def confirm(self, url: str) -> str:
        """GET a SubscribeURL; its answer (XML with the SubscriptionArn) as text."""
        body = await self.get(url, MAX_CONFIRM)
        return body.decode("utf-8", "replace")


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the host's TLS certificate is not trusted (cert_ca?)"
    return text[:200]
