"""What the ``sns`` input does with one POST body: verify it, decide, commit, answer.

SNS counts every answer from 200 to 499 as delivered and retries only 5xx, timeouts and
connection errors (SNS.md §5). So a message that must never come back (forged, malformed,
stale, for another topic) gets a 4xx, and anything that may succeed later (the signing
certificate could not be fetched, the delivery queues are full or have not taken the events
yet) gets a 5xx; a notification gets its 200 only once its events are committed to the
delivery queues. :data:`STATUS` is the table of outcomes.

Order of the checks: the body is decoded and its canonical string built; ``SigningCertURL``
must pass the URL rules for the ``TopicArn``'s region; the certificate is fetched (cached),
checked, and the signature verified. Only then are the signed fields and the headers used to
decide: the type header must agree with ``Type``, ``TopicArn`` must be allowed, ``Timestamp``
fresh, ``MessageId`` new. The JSON work runs on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import structlog

from dsrouter.ingest.sns_fetch import Fetcher, FetchError
from dsrouter.ingest.sns_urls import (
    Rejected,
    check_cert_url,
    check_subscribe_url,
    parse_topic_arn,
    signing_name,
)
from dsrouter.ingest.sns_verify import (
    canonical_string,
    check_signing_cert,
    decode_signature,
    verify,
)

_log = structlog.get_logger()

#: Outcome → HTTP status. 2xx: done (or on purpose not again); 4xx: dropped on purpose, SNS
#: does not retry; 5xx: SNS retries.
STATUS = {
    "accepted": 200,
    "duplicate": 200,
    "confirmed": 200,
    "confirmation_logged": 200,
    "unsubscribed": 200,
    "malformed": 400,
    "raw_delivery": 400,
    "stale": 400,
    "bad_request": 400,
    "signature_version": 403,
    "cert_url": 403,
    "bad_cert": 403,
    "bad_signature": 403,
    "topic_not_allowed": 403,
    "subscribe_url": 403,
    "not_found": 404,
    "method": 405,
    "timeout": 408,
    "oversize": 413,
    "head_too_large": 431,
    "internal_error": 500,
    "cert_unavailable": 502,
    "confirm_failed": 502,
    "busy": 503,
    "in_progress": 503,
    "commit_timeout": 503,
    "commit_failed": 503,
}
#: A Timestamp this far in the future is refused (the publisher's or our clock is wrong).
MAX_SKEW = 300.0
#: MessageIds remembered (bounded memory; the oldest go first).
SEEN_MAX = 100_000
_LOG_EVERY = 60.0
_SUBSCRIPTION_ARN = re.compile(r"<SubscriptionArn>([^<]{1,512})</SubscriptionArn>")

Submit = Callable[[list[dict], Callable[[bool], None]], None]
ToEvents = Callable[[Mapping[str, Any], str, str, str], list[dict]]
Run = Callable[..., Awaitable[Any]]


class Reply(NamedTuple):
    """The answer to one request: status, outcome (the counter) and a short text."""

    status: int
    outcome: str
    text: str


def reply(outcome: str, text: str) -> Reply:
    return Reply(STATUS[outcome], outcome, text)


@dataclass(frozen=True)
class SnsSettings:
    """The checked options the message logic needs."""

    topics: frozenset[str]
    auto_confirm: bool = False
    cert_hosts: frozenset[str] = frozenset()
    cert_ca: str | None = None
    max_age: float = 7200.0
    min_signature_version: int = 1


class Seen:
    """MessageIds of the last ``window`` seconds: ``pending`` (being committed) or ``done``."""

    def __init__(self, window: float, size: int = SEEN_MAX) -> None:
        self.window, self.size = window, size
        self._ids: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def state(self, message_id: str, now: float) -> str | None:
        while self._ids:
            first = next(iter(self._ids.values()))
            if first[0] >= now - self.window or first[1] == "pending":
                break
            self._ids.popitem(last=False)
        entry = self._ids.get(message_id)
        return entry[1] if entry else None

    def mark(self, message_id: str, now: float, state: str) -> None:
        self._ids[message_id] = (now, state)
        self._ids.move_to_end(message_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def forget(self, message_id: str) -> None:
        self._ids.pop(message_id, None)


def decode(body: bytes, raw_delivery: bool) -> tuple[dict, bytes, bytes]:
    """The message, its canonical string and signature bytes; Rejected when malformed."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # the stdlib also reads lone surrogate escapes (then refused as malformed)
            message = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise Rejected("malformed", "the body is not JSON") from None
    if not isinstance(message, dict) or "Signature" not in message:
        if raw_delivery:
            raise Rejected("raw_delivery", "raw message delivery is on: turn it off (no signature)")
        raise Rejected("malformed", "not an SNS message (a JSON object with a Signature)")
    if message.get("SignatureVersion") not in ("1", "2"):
        raise Rejected("malformed", "SignatureVersion is not 1 or 2")
    if not isinstance(message.get("SigningCertURL"), str):
        raise Rejected("malformed", "no SigningCertURL")
    return message, canonical_string(message), decode_signature(message)


def published(timestamp: str) -> float:
    """An SNS Timestamp (``2012-05-02T00:54:06.655Z``) as Unix time; Rejected if malformed."""
    try:
        when = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        raise Rejected("malformed", "Timestamp is not ISO 8601") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class SnsHandler:
    """Turns one POST body into a :class:`Reply`; counts outcomes in ``stats["sns"]``."""

    def __init__(
        self,
        name: str,
        settings: SnsSettings,
        submit: Submit,
        to_events: ToEvents,
        run: Run,
        busy: Callable[[], bool],
        stats: dict[str, Any],
        clock: Callable[[], float] = time.time,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.name, self.settings = name, settings
        self.submit, self.to_events, self.run, self.busy = submit, to_events, run, busy
        self.stats, self.clock = stats, clock
        self.outcomes: Counter[str] = Counter()
        stats["sns"] = self.outcomes
        self.fetcher = fetcher or Fetcher(settings.cert_ca, clock=clock)
        self.seen = Seen(settings.max_age + MAX_SKEW)
        self._logged: dict[str, float] = {}

    async def handle(
        self, body: bytes, headers: Mapping[str, str], peer: str, deadline: float
    ) -> Reply:
        """Verify and act on one message; ``deadline`` (loop time) bounds the commit wait."""
        context: dict[str, Any] = {}
        try:
            answer = await self._handle(body, headers, peer, deadline, context)
        except Rejected as exc:
            answer = reply(exc.reason, exc.detail)
        except FetchError as exc:
            answer = reply("cert_unavailable", str(exc))
        except Exception as exc:  # a bug must not stop the receiver; SNS will retry
            answer = reply("internal_error", f"internal error: {type(exc).__name__}")
            _log.error("sns_handler_failed", input=self.name, error=repr(exc)[:300])
        self.count(answer, peer, **context)
        return answer

    def count(self, answer: Reply, peer: str, **context: Any) -> None:
        """Count an outcome; log refusals and deferrals (once a minute per peer and kind)."""
        self.outcomes[answer.outcome] += 1
        if answer.status < 400:
            return
        now, key = time.monotonic(), f"{answer.outcome} {peer.rsplit(':', 1)[0]}"
        if now - self._logged.get(key, -_LOG_EVERY) < _LOG_EVERY:
            return
        if len(self._logged) >= 1024:
            self._logged.clear()
        self._logged[key] = now
        event = "sns_message_deferred" if answer.status >= 500 else "sns_message_refused"
        _log.warning(
            event,
            input=self.name,
            peer=peer,
            status=answer.status,
            reason=answer.outcome,
            detail=answer.text,
            **context,
        )

    async def _handle(
        self, body: bytes, headers: Mapping[str, str], peer: str, deadline: float, ctx: dict
    ) -> Reply:
        if self.busy():
            return reply("busy", "the delivery queues are full: retry later")
        raw = headers.get("x-amz-sns-rawdelivery", "").lower() == "true"
        message, signed, signature = await self.run(decode, body, raw)
        await self._verify(message, signed, signature)
        ctx.update(topic=message["TopicArn"], message_id=message["MessageId"][:80])
        kind = message["Type"]
        header = headers.get("x-amz-sns-message-type")
        if header is not None and header != kind:
            raise Rejected("malformed", f"x-amz-sns-message-type {header[:40]!r} is not {kind}")
        if message["TopicArn"] not in self.settings.topics:
            raise Rejected("topic_not_allowed", "TopicArn is not in topics")
        self._fresh(message["Timestamp"])
        if kind == "Notification":
            return await self._notification(message, peer, deadline)
        if kind == "SubscriptionConfirmation":
            return await self._confirm(message)
        return self._unsubscribed(message)

    async def _verify(self, message: dict, signed: bytes, signature: bytes) -> None:
        version = message["SignatureVersion"]
        if int(version) < self.settings.min_signature_version:
            raise Rejected("signature_version", f"SignatureVersion {version} is refused")
        topic = parse_topic_arn(message["TopicArn"])
        if topic is None:
            raise Rejected("malformed", "TopicArn is not an SNS topic ARN")
        url = message["SigningCertURL"]
        check_cert_url(url, topic, self.settings.cert_hosts)
        cert = await self.fetcher.certificate(url)
        check_signing_cert(cert, signing_name(topic), datetime.fromtimestamp(self.clock(), UTC))
        verify(cert, signed, signature, version)

    def _fresh(self, timestamp: str) -> None:
        age = self.clock() - published(timestamp)
        if age > self.settings.max_age:
            limit = f"{self.settings.max_age:g}s"
            raise Rejected("stale", f"published {age:.0f}s ago, over max_age ({limit})")
        if age < -MAX_SKEW:
            raise Rejected("stale", f"published {-age:.0f}s in the future: check the clocks")

    async def _notification(self, message: dict, peer: str, deadline: float) -> Reply:
        message_id = message["MessageId"]
        state = self.seen.state(message_id, self.clock())
        if state == "done":
            return reply("duplicate", "already received")
        if state == "pending":
            return reply("in_progress", "this message is still being committed: retry later")
        received_at = datetime.now(UTC).isoformat(timespec="microseconds")
        events = await self.run(self.to_events, message, self.name, peer, received_at)
        if self.busy():
            return reply("busy", "the delivery queues are full: retry later")
        if not events:
            self.seen.mark(message_id, self.clock(), "done")
            return reply("accepted", "0 events")
        return await self._commit(message_id, events, deadline)

    async def _commit(self, message_id: str, events: list[dict], deadline: float) -> Reply:
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[bool] = loop.create_future()

        def done(ok: bool) -> None:
            if ok:
                self.seen.mark(message_id, self.clock(), "done")
            else:
                self.seen.forget(message_id)
            if not committed.done():
                committed.set_result(ok)

        self.seen.mark(message_id, self.clock(), "pending")
        try:
            self.submit(events, done)
        except Exception:
            self.seen.forget(message_id)
            self.stats["sink_errors_total"] += 1
            raise
        self.stats["messages_total"] += len(events)
        try:
            ok = await asyncio.wait_for(asyncio.shield(committed), max(0.5, deadline - loop.time()))
        except TimeoutError:
            return reply("commit_timeout", "the delivery queues have not taken the events yet")
        if not ok:
            return reply("commit_failed", "the events could not be kept: retry later")
        return reply("accepted", f"{len(events)} event(s)")

    async def _confirm(self, message: dict) -> Reply:
        arn, token = message["TopicArn"], message["Token"]
        if not self.settings.auto_confirm:
            region = arn.split(":")[3]
            _log.warning(
                "sns_subscription_pending",
                input=self.name,
                topic=arn,
                command=f"aws sns confirm-subscription --region {region} --topic-arn {arn} "
                f"--token {token} --authenticate-on-unsubscribe true",
                help="run the command within 2 days (the token expires; SNS does not send it "
                "again). --authenticate-on-unsubscribe true means only a signed Unsubscribe "
                "call can remove the subscription, not anyone holding an UnsubscribeURL",
            )
            return reply("confirmation_logged", "logged for manual confirmation")
        url = message["SubscribeURL"]
        check_subscribe_url(url, message, self.settings.cert_hosts)
        try:
            answer = await self.fetcher.confirm(url)
        except FetchError as exc:
            return reply("confirm_failed", str(exc))
        found = _SUBSCRIPTION_ARN.search(answer)
        _log.info(
            "sns_subscription_confirmed",
            input=self.name,
            topic=arn,
            subscription=found.group(1) if found else None,
        )
        return reply("confirmed", "subscription confirmed")

    def _unsubscribed(self, message: dict) -> Reply:
        _log.warning(
            "sns_subscription_deleted",
            input=self.name,
            topic=message["TopicArn"],
            help="SNS removed this endpoint's subscription. dsrouter never visits the "
            "SubscribeURL of an UnsubscribeConfirmation (it would subscribe again): run "
            "aws sns subscribe if this was not intended",
        )
        return reply("unsubscribed", "unsubscription noted")
