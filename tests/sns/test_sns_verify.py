"""SNS authenticity rules (SNS.md §2-§4): canonical strings, URL rules, certificates, RSA."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

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
    parse_signing_cert,
    verify,
    verify_pkcs1v15,
)

from .conftest import Signer

NOW = datetime.now(UTC)
EAST = parse_topic_arn("arn:aws:sns:us-east-1:123456789012:ds")
HEX = "0123456789abcdef0123456789abcdef"
NOTE = {
    "Type": "Notification",
    "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
    "Subject": "My First Message",
    "Message": "Hello world!\nline two",
    "Timestamp": "2012-05-02T00:54:06.000Z",
}


def test_notification_canonical_string_is_name_lf_value_lf_in_fixed_order():
    assert canonical_string(NOTE) == (
        b"Message\nHello world!\nline two\n"
        b"MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        b"Subject\nMy First Message\n"
        b"Timestamp\n2012-05-02T00:54:06.000Z\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n"
        b"Type\nNotification\n"
    )


def test_subject_is_signed_only_when_present_and_the_timestamp_is_kept_as_sent():
    without = {k: v for k, v in NOTE.items() if k != "Subject"}
    text = canonical_string(without)
    assert b"Subject" not in text and b"06.000Z\n" in text  # no re-printing (".000" kept)
    assert canonical_string({**without, "Subject": None}) == text


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_confirmation_canonical_string_has_subscribe_url_and_token(kind):
    message = {
        "Type": kind,
        "MessageId": "m",
        "Token": "t0k",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
        "Message": "You have chosen...",
        "SubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
        "Timestamp": "2012-04-26T20:45:04.751Z",
        "UnsubscribeURL": "not signed",
    }
    assert canonical_string(message) == (
        b"Message\nYou have chosen...\nMessageId\nm\n"
        b"SubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription\n"
        b"Timestamp\n2012-04-26T20:45:04.751Z\nToken\nt0k\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\n" + kind.encode() + b"\n"
    )
    with pytest.raises(Rejected, match="Token"):
        canonical_string({k: v for k, v in message.items() if k != "Token"})


@pytest.mark.parametrize(
    "body",
    [{"Type": "Other"}, {**NOTE, "Message": 5}, {k: v for k, v in NOTE.items() if k != "TopicArn"}],
    ids=["unknown-type", "non-string-field", "missing-field"],
)
def test_malformed_messages_have_no_canonical_string(body):
    with pytest.raises(Rejected) as info:
        canonical_string(body)
    assert info.value.reason == "malformed"


def _signed(signer: Signer, version: str, text: bytes) -> bytes:
    digest = hashes.SHA256() if version == "2" else hashes.SHA1()
    return signer.key.sign(text, padding.PKCS1v15(), digest)


@pytest.fixture(scope="module")
def kit():
    signer = Signer()
    return signer, parse_signing_cert(signer.cert_pem)


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signature_verifies_and_the_documented_variants_do_not(kit, version):
    signer, cert = kit
    text = canonical_string(NOTE)
    signature = _signed(signer, version, text)
    verify(cert, text, signature, version)
    assert verify_pkcs1v15(cert.public_key(), text, signature, version)
    without_subject = canonical_string({k: v for k, v in NOTE.items() if k != "Subject"})
    variants = {
        "no trailing LF": text[:-1],
        "reversed order": b"".join(reversed(text.splitlines(keepends=True))),
        "Subject dropped": without_subject,
        "newline kept escaped": text.replace(b"world!\nline", b"world!\\nline"),
        "one byte flipped": bytes([text[0] ^ 1]) + text[1:],
    }
    for what, other in variants.items():
        with pytest.raises(Rejected, match="does not match"):
            verify(cert, other, signature, version)
        assert not verify_pkcs1v15(cert.public_key(), other, signature, version), what
    other_hash = "1" if version == "2" else "2"
    with pytest.raises(Rejected):
        verify(cert, text, signature, other_hash)
    with pytest.raises(Rejected):
        verify(parse_signing_cert(Signer().cert_pem), text, signature, version)  # wrong key
    flipped = bytes([signature[0] ^ 0x80]) + signature[1:]
    assert not verify_pkcs1v15(cert.public_key(), text, flipped, version)
    assert not verify_pkcs1v15(cert.public_key(), text, signature[1:], version)


def test_signature_must_be_base64():
    assert decode_signature({"Signature": base64.b64encode(b"abc").decode()}) == b"abc"
    for bad in ("not base64!", "", None):
        with pytest.raises(Rejected):
            decode_signature({"Signature": bad})


CERT_URLS = [
    (f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem", None),
    (f"https://SNS.US-EAST-1.amazonaws.com/SimpleNotificationService-{HEX}.pem", None),
    (f"http://sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem", "https"),
    (f"https://sns.us-west-2.amazonaws.com/SimpleNotificationService-{HEX}.pem", "host"),
    (f"https://sns.us-east-1.amazonaws.com./SimpleNotificationService-{HEX}.pem", "host"),
    (f"https://sns.us-east-1.amazonaws.com:443/SimpleNotificationService-{HEX}.pem", "host"),
    (f"https://x@sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem", "plain"),
    (f"https://sns.s3-us-west-2.amazonaws.com/SimpleNotificationService-{HEX}.pem", "host"),
    (f"https://sns.s3-external-1.amazonaws.com/SimpleNotificationService-{HEX}.pem", "host"),
    (f"https://sns.s3-accelerate.amazonaws.com/SimpleNotificationService-{HEX}.pem", "host"),
    (f"https://s3.amazonaws.com/sns/SimpleNotificationService-{HEX}.pem", "host"),
    (
        f"https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem",
        "host",
    ),
    (
        f"https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-{HEX}.pem",
        "host",
    ),
    (f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem?x=.pem", "host"),
    (f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem?", "host"),
    (f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem#a", "plain"),
    ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem", "certificate"),
    ("https://sns.us-east-1.amazonaws.com/other.pem", "certificate"),
    (
        f"https://sns.us-east-1.amazonaws.com/a/../SimpleNotificationService-{HEX}.pem",
        "certificate",
    ),
    (f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}%2epem", "host"),
    (f"https://sns.us-east-1.amazonaws.com\\@evil/SimpleNotificationService-{HEX}.pem", "plain"),
    (f"https://sns.us-east-1.amazonaws.com /SimpleNotificationService-{HEX}.pem", "plain"),
]


@pytest.mark.parametrize(("url", "problem"), CERT_URLS, ids=[str(i) for i in range(len(CERT_URLS))])
def test_signing_cert_url_rules(url, problem):
    if problem is None:
        check_cert_url(url, EAST)
        return
    with pytest.raises(Rejected) as info:
        check_cert_url(url, EAST)
    assert info.value.reason == "cert_url" and problem in info.value.detail


def test_china_and_govcloud_hosts_and_their_signing_names():
    cn = parse_topic_arn("arn:aws-cn:sns:cn-north-1:123456789012:t")
    gov = parse_topic_arn("arn:aws-us-gov:sns:us-gov-east-1:123456789012:t")
    check_cert_url(
        f"https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-{HEX}.pem", cn
    )
    check_cert_url(
        f"https://sns.us-gov-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem", gov
    )
    with pytest.raises(Rejected):
        check_cert_url(
            f"https://sns.cn-north-1.amazonaws.com/SimpleNotificationService-{HEX}.pem", cn
        )
    assert signing_name(cn) == "sns-cn-north-1.amazonaws.com.cn"
    assert signing_name(gov) == "sns-us-gov-west-1.amazonaws.com"
    assert signing_name(EAST) == "sns.amazonaws.com"
    opt_in = parse_topic_arn("arn:aws:sns:af-south-1:123456789012:t")
    assert signing_name(opt_in) == "sns-signing.af-south-1.amazonaws.com"


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sns:us-east-1:12345678901:t",  # 11-digit account
        "arn:aws:sqs:us-east-1:123456789012:t",
        "arn:aws-cn:sns:us-east-1:123456789012:t",  # partition and region disagree
        "arn:aws:sns:cn-north-1:123456789012:t",
        "arn:aws:sns:us-east-1:123456789012:t/x",
        "arn:aws:sns:us-east-1:123456789012:",
    ],
)
def test_malformed_topic_arns(arn):
    assert parse_topic_arn(arn) is None


def test_unknown_region_has_no_default_host_but_cert_hosts_may_name_one():
    new = parse_topic_arn("arn:aws:sns:xx-new-1:123456789012:t")
    url = f"https://sns.xx-new-1.amazonaws.com/SimpleNotificationService-{HEX}.pem"
    with pytest.raises(Rejected):
        check_cert_url(url, new)
    check_cert_url(url, new, frozenset({"sns.xx-new-1.amazonaws.com"}))
    assert signing_name(new) == "sns.amazonaws.com"


def test_cert_hosts_replace_the_default_with_exact_host_port_matches():
    hosts = frozenset({"127.0.0.1:8444"})
    check_cert_url(f"https://127.0.0.1:8444/SimpleNotificationService-{HEX}.pem", EAST, hosts)
    for url in (
        f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{HEX}.pem",
        f"https://127.0.0.1:8445/SimpleNotificationService-{HEX}.pem",
        f"https://127.0.0.1/SimpleNotificationService-{HEX}.pem",
        f"http://127.0.0.1:8444/SimpleNotificationService-{HEX}.pem",
        "https://127.0.0.1:8444/x.pem",
    ):
        with pytest.raises(Rejected):
            check_cert_url(url, EAST, hosts)


def _confirmation(url: str) -> dict:
    return {
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ds",
        "Token": "abc",
        "SubscribeURL": url,
    }


SUBSCRIBE = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
ARN = "arn:aws:sns:us-east-1:123456789012:ds"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        (f"{SUBSCRIBE}&TopicArn={ARN}&Token=abc", True),
        (f"{SUBSCRIBE}&TopicArn={ARN.replace(':', '%3A')}&Token=abc", True),
        (f"{SUBSCRIBE}&TopicArn={ARN}", True),
        (f"{SUBSCRIBE}&TopicArn={ARN}x&Token=abc", False),
        (f"{SUBSCRIBE}&TopicArn={ARN}&Token=other", False),
        (f"{SUBSCRIBE}&TopicArn={ARN}&TopicArn={ARN}", False),
        (f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&TopicArn={ARN}", False),
        (f"https://sns.us-east-1.amazonaws.com/x?Action=ConfirmSubscription&TopicArn={ARN}", False),
        (f"https://169.254.169.254/?Action=ConfirmSubscription&TopicArn={ARN}", False),
        (f"http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}", False),
        (f"https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}", False),
    ],
)
def test_subscribe_url_rules(url, ok):
    if ok:
        check_subscribe_url(url, _confirmation(url), frozenset())
        return
    with pytest.raises(Rejected) as info:
        check_subscribe_url(url, _confirmation(url), frozenset())
    assert info.value.reason == "subscribe_url"


def test_signing_certificate_checks():
    signer = Signer()
    cert = parse_signing_cert(signer.cert_pem)
    check_signing_cert(cert, "sns.amazonaws.com", NOW)
    check_signing_cert(cert, "SNS.amazonaws.com", NOW)
    cases = {
        "not sns-signing": lambda: check_signing_cert(cert, "sns-signing.x.amazonaws.com", NOW),
        "valid until": lambda: check_signing_cert(
            cert, "sns.amazonaws.com", cert.not_valid_after_utc + timedelta(seconds=1)
        ),
        "exactly one PEM": lambda: parse_signing_cert(signer.cert_pem * 2),
        "exactly one": lambda: parse_signing_cert(b"junk\n" + signer.cert_pem),
        "does not parse": lambda: parse_signing_cert(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        "RSA key": lambda: parse_signing_cert(Signer(key_type=trustme.KeyType.ECDSA).cert_pem),
    }
    for expected, call in cases.items():
        with pytest.raises(Rejected, match=expected) as info:
            call()
        assert info.value.reason == "bad_cert"


def test_expired_and_future_certificates_are_refused():
    old = Signer(not_before=NOW - timedelta(days=10), not_after=NOW - timedelta(days=1))
    future = Signer(not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=10))
    for signer in (old, future):
        with pytest.raises(Rejected, match="not valid now"):
            check_signing_cert(parse_signing_cert(signer.cert_pem), "sns.amazonaws.com", NOW)


def _cn_only_cert(cn: str) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_the_subject_cn_counts_only_without_subject_alt_names():
    cert = parse_signing_cert(_cn_only_cert("sns.amazonaws.com"))
    check_signing_cert(cert, "sns.amazonaws.com", NOW)
    with pytest.raises(Rejected, match="is for evil.example"):
        check_signing_cert(
            parse_signing_cert(_cn_only_cert("evil.example")), "sns.amazonaws.com", NOW
        )
    # trustme's certificate names sns.amazonaws.com in its SAN; a CN elsewhere would not count
    signer = Signer("other.example")
    with pytest.raises(Rejected, match="other.example"):
        check_signing_cert(parse_signing_cert(signer.cert_pem), "sns.amazonaws.com", NOW)
