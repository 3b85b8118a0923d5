"""Where an SNS message's URLs may point (pure, standard library only): topic ARNs, regions,
the hosts that serve signing certificates and confirmations (SNS.md §3, §4).

``SigningCertURL`` must be ``https://sns.<region>.amazonaws.com`` (``.com.cn`` in China), the
region being the one of the (signed) ``TopicArn`` and a known one; no port, user, query or
fragment; path ``/SimpleNotificationService-<32 hex>.pem``. A ``SubscribeURL`` must be on the
same host, path ``/``, confirming this very topic. A configured ``cert_hosts`` list replaces
the host rule by exact ``host[:port]`` matches (tests, private mirrors) — never by a looser
pattern. Several official validators accept more (any ``sns.*.amazonaws.com``, queries, S3
look-alikes): these rules do not.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

#: Known regions per partition (the host rule accepts no other).
REGIONS: dict[str, frozenset[str]] = {
    "aws": frozenset(
        "us-east-1 us-east-2 us-west-1 us-west-2 ca-central-1 ca-west-1 mx-central-1 sa-east-1 "
        "eu-west-1 eu-west-2 eu-west-3 eu-central-1 eu-central-2 eu-north-1 eu-south-1 "
        "eu-south-2 il-central-1 me-south-1 me-central-1 af-south-1 ap-east-1 ap-east-2 "
        "ap-south-1 ap-south-2 ap-northeast-1 ap-northeast-2 ap-northeast-3 ap-southeast-1 "
        "ap-southeast-2 ap-southeast-3 ap-southeast-4 ap-southeast-5 ap-southeast-6 "
        "ap-southeast-7".split()
    ),
    "aws-cn": frozenset({"cn-north-1", "cn-northwest-1"}),
    "aws-us-gov": frozenset({"us-gov-west-1", "us-gov-east-1"}),
}
DNS_SUFFIX = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn", "aws-us-gov": "amazonaws.com"}
#: Opt-in regions sign with ``sns-signing.<region>.amazonaws.com`` (SNS.md §3).
OPT_IN = frozenset(
    "af-south-1 ap-east-1 ap-east-2 ap-south-2 ap-southeast-3 ap-southeast-4 ap-southeast-5 "
    "ap-southeast-6 ap-southeast-7 ca-west-1 eu-central-2 eu-south-1 eu-south-2 il-central-1 "
    "me-central-1 me-south-1 mx-central-1".split()
)
SIGNING_NAMES = {
    "cn-north-1": "sns-cn-north-1.amazonaws.com.cn",
    "cn-northwest-1": "sns-cn-northwest-1.amazonaws.com.cn",
    "us-gov-west-1": "sns-us-gov-west-1.amazonaws.com",
    "us-gov-east-1": "sns-us-gov-west-1.amazonaws.com",
}
_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):sns:([a-z]{2}(?:-gov)?-[a-z]+-[0-9]):([0-9]{12}):"
    r"([A-Za-z0-9_.-]{1,256})"
)
_CERT_PATH = re.compile(r"/SimpleNotificationService-[0-9a-fA-F]{32}\.pem")
_URL_BAD = re.compile(r"[^\x21-\x7e]|[\\@#]")


class Rejected(Exception):
    """The message must not be accepted; ``reason`` names the counter, ``detail`` explains."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Topic(NamedTuple):
    """A parsed SNS topic ARN."""

    partition: str
    region: str
    account: str
    name: str


def parse_topic_arn(arn: str) -> Topic | None:
    """``arn:aws:sns:us-east-1:123456789012:ds-events`` → Topic; None when malformed."""
    m = _ARN.fullmatch(arn)
    if m is None:
        return None
    topic = Topic(*m.groups())
    china, gov = topic.region.startswith("cn-"), topic.region.startswith("us-gov-")
    if china != (topic.partition == "aws-cn") or gov != (topic.partition == "aws-us-gov"):
        return None
    return topic


def expected_host(topic: Topic) -> str | None:
    """The only host Amazon serves this topic's certificates and confirmations from."""
    if topic.region not in REGIONS[topic.partition]:
        return None
    return f"sns.{topic.region}.{DNS_SUFFIX[topic.partition]}"


def signing_name(topic: Topic) -> str:
    """The DNS name the region's signing certificate carries (SNS.md §3)."""
    if topic.region in SIGNING_NAMES:
        return SIGNING_NAMES[topic.region]
    if topic.partition == "aws" and topic.region in OPT_IN:
        return f"sns-signing.{topic.region}.amazonaws.com"
    return f"sns.{DNS_SUFFIX[topic.partition]}"


def _host_ok(netloc: str, topic: Topic, cert_hosts: Collection[str]) -> bool:
    host = netloc.lower()
    if cert_hosts:
        return host in cert_hosts
    return host == expected_host(topic)


def _split(url: str, what: str) -> Any:
    if not isinstance(url, str) or len(url) > 2048 or _URL_BAD.search(url):
        raise Rejected(what, "not a plain https URL (spaces, @, # or backslash)")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise Rejected(what, f"{url[:120]!r} is not https")
    return parts


def check_cert_url(url: str, topic: Topic, cert_hosts: Collection[str] = ()) -> None:
    """Raise Rejected("cert_url") unless ``url`` may serve this topic's signing certificate."""
    parts = _split(url, "cert_url")
    if "?" in url or "%" in url or not _host_ok(parts.netloc, topic, cert_hosts):
        raise Rejected("cert_url", f"SigningCertURL {url[:120]!r} is not an SNS host's")
    if not _CERT_PATH.fullmatch(parts.path):
        raise Rejected("cert_url", f"SigningCertURL {url[:120]!r} is not an SNS certificate")


def check_subscribe_url(url: str, body: Mapping[str, Any], cert_hosts: Collection[str]) -> None:
    """Raise Rejected("subscribe_url") unless ``url`` is the confirmation of this topic."""
    topic = parse_topic_arn(str(body.get("TopicArn")))
    parts = _split(url, "subscribe_url")
    if topic is None or not _host_ok(parts.netloc, topic, cert_hosts) or parts.path != "/":
        raise Rejected("subscribe_url", f"SubscribeURL {url[:120]!r} is not an SNS host's")
    try:
        query = parse_qs(parts.query, strict_parsing=True)
    except ValueError:
        raise Rejected("subscribe_url", "SubscribeURL has a malformed query") from None
    token = query.get("Token", [body.get("Token")])
    if (
        query.get("Action") != ["ConfirmSubscription"]
        or query.get("TopicArn") != [body.get("TopicArn")]
        or token != [body.get("Token")]
    ):
        raise Rejected("subscribe_url", "SubscribeURL does not confirm this topic")
