"""The message logic below HTTP: the certificate cache against a real HTTPS cert host, the
MessageId window, an injected clock, and a failing submit."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from dsrouter.ds.sns import events_from_notification
from dsrouter.ingest.sns_fetch import Fetcher, FetchError
from dsrouter.ingest.sns_message import Seen, SnsHandler, SnsSettings
from dsrouter.ingest.sns_urls import Rejected

from .conftest import CERT_PATH, TOPIC, Messages, Signer, iso

EVENT = [{"EventType": "PacketLog", "Action": 1, "Hostname": "web-01"}]


def test_seen_forgets_after_the_window_and_stays_bounded():
    seen = Seen(window=10.0, size=3)
    seen.mark("p", 100.0, "pending")
    seen.mark("a", 100.0, "done")
    assert seen.state("a", 105.0) == "done"
    assert seen.state("p", 111.0) == "pending"  # never forgotten while being committed
    assert seen.state("a", 111.0) == "done"  # (behind it: kept until it settles)
    seen.forget("p")
    assert seen.state("a", 111.0) is None
    for name in "bcde":
        seen.mark(name, 120.0, "done")
    assert [seen.state(n, 121.0) for n in "bcde"] == [None, "done", "done", "done"]


def _run(coro):
    return asyncio.run(coro)


def test_certificates_are_fetched_once_shared_and_failures_remembered(cert_host, signer):
    cert_host.routes[CERT_PATH] = (200, signer.cert_pem)
    now = [datetime.now(UTC).timestamp()]
    fetcher = Fetcher(str(cert_host.ca_file), retry_after=10.0, clock=lambda: now[0])
    url = cert_host.url(CERT_PATH)

    async def go():
        certs = await asyncio.gather(*(fetcher.certificate(url) for _ in range(5)))
        assert len({id(c) for c in certs}) == 1
        await fetcher.certificate(url)

    _run(go())
    assert cert_host.requests == [CERT_PATH]
    missing = cert_host.url("/SimpleNotificationService-" + "a" * 32 + ".pem")
    for _ in range(2):
        with pytest.raises(FetchError, match="404"):
            _run(fetcher.certificate(missing))
    assert cert_host.requests.count(missing.split(cert_host.host)[1]) == 1  # remembered
    now[0] += 11
    with pytest.raises(FetchError):
        _run(fetcher.certificate(missing))
    assert cert_host.requests.count(missing.split(cert_host.host)[1]) == 2


def test_an_expired_cached_certificate_is_fetched_again(cert_host, signer):
    cert_host.routes[CERT_PATH] = (200, signer.cert_pem)
    now = [datetime.now(UTC).timestamp()]
    fetcher = Fetcher(str(cert_host.ca_file), clock=lambda: now[0])
    url = cert_host.url(CERT_PATH)
    cert = _run(fetcher.certificate(url))
    now[0] = cert.not_valid_after_utc.timestamp() + 1
    _run(fetcher.certificate(url))
    assert cert_host.requests == [CERT_PATH, CERT_PATH]


def test_a_cert_host_that_is_not_trusted_is_a_fetch_error(cert_host, signer, tmp_path):
    cert_host.routes[CERT_PATH] = (200, signer.cert_pem)
    with pytest.raises(FetchError, match="not trusted"):
        _run(Fetcher(None).certificate(cert_host.url(CERT_PATH)))  # certifi: not our test CA
    with pytest.raises(Rejected, match="exactly one PEM"):
        cert_host.routes[CERT_PATH] = (200, b"<html>hello</html>")
        _run(Fetcher(str(cert_host.ca_file)).certificate(cert_host.url(CERT_PATH)))


class Handler:
    """An SnsHandler with a real Fetcher and a submit that commits on the next loop turn."""

    def __init__(self, cert_host, clock, submit=None) -> None:
        settings = SnsSettings(
            topics=frozenset({TOPIC}),
            cert_hosts=frozenset({cert_host.host}),
            cert_ca=str(cert_host.ca_file),
        )
        self.submitted: list[list[dict]] = []
        self.stats = {"messages_total": 0, "sink_errors_total": 0}
        pool = ThreadPoolExecutor(1)

        async def run(fn, *args):
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

        self.handler = SnsHandler(
            "sns_in",
            settings,
            submit or self.submit,
            events_from_notification,
            run,
            lambda: False,
            self.stats,
            clock=clock,
        )

    def submit(self, events, on_done):
        self.submitted.append(events)
        asyncio.get_running_loop().call_soon(on_done, True)

    def post(self, message: dict):
        async def go():
            loop = asyncio.get_running_loop()
            body = json.dumps(message).encode()
            return await self.handler.handle(body, {}, "192.0.2.1:1", loop.time() + 5)

        return _run(go())


def test_an_injected_clock_rules_both_freshness_and_certificate_validity(cert_host):
    then = datetime(2020, 4, 8, 18, 12, 11, tzinfo=UTC)
    signer = Signer(
        not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2020, 12, 31, tzinfo=UTC)
    )
    messages = Messages(signer, cert_host)
    message = messages.notification(EVENT, Timestamp=iso(then))
    at_the_time = Handler(cert_host, clock=lambda: then.timestamp() + 60)
    assert at_the_time.post(message).outcome == "accepted"
    assert at_the_time.submitted[0][0]["module"] == "firewall"
    assert at_the_time.post(message).outcome == "duplicate"
    today = Handler(cert_host, clock=lambda: datetime.now(UTC).timestamp())
    assert today.post(message).outcome == "bad_cert"  # expired now, whatever the message says


def test_a_failing_submit_is_a_500_and_the_retry_is_not_taken_for_a_duplicate(cert_host, signer):
    messages = Messages(signer, cert_host)
    message = messages.notification(EVENT)
    calls = []

    def broken(events, on_done):
        calls.append(events)
        if len(calls) == 1:
            raise RuntimeError("pipeline bug")
        asyncio.get_running_loop().call_soon(on_done, True)

    rig = Handler(cert_host, clock=lambda: datetime.now(UTC).timestamp(), submit=broken)
    failed = rig.post(message)
    assert (failed.status, failed.outcome) == (500, "internal_error")
    assert rig.stats["sink_errors_total"] == 1
    assert rig.post(message).outcome == "accepted" and len(calls) == 2
    assert rig.handler.outcomes == {"internal_error": 1, "accepted": 1}
