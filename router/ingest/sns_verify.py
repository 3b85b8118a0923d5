"""Authenticity of Amazon SNS messages (pure): canonical strings, certificates, signatures.

Follows ``SNS.md`` (§2, §3), which is stricter than several official validators:

* the signed text is built from the decoded field values, ``name LF value LF`` per field in
  the fixed order of the message type, every pair ending with LF; nothing is re-printed;
* where the certificate may come from is :mod:`dsrouter.ingest.sns_urls`'s business;
* the certificate file holds exactly one PEM certificate, valid now, with an RSA key of at
  least 2048 bits, whose DNS name (subjectAltName, else CN) is the region's signing name;
* RSA PKCS#1 v1.5 with SHA-1 (``SignatureVersion`` "1") or SHA-256 ("2"). If the crypto
  library refuses SHA-1 (strict OpenSSL policies), the check falls back to the RFC 8017
  encode-and-compare procedure over the raw RSA operation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from dsrouter.ingest.sns_urls import Rejected

TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
#: Fields signed per message type, in the order of the canonical string (SNS.md §2.1).
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED["UnsubscribeConfirmation"] = SIGNED["SubscriptionConfirmation"]
OPTIONAL = frozenset({"Subject"})
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}

_PEM = re.compile(
    rb"\s*-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*"
)
#: DigestInfo prefixes of RFC 8017 §9.2 (EMSA-PKCS1-v1_5).
_DIGEST_INFO = {
    "1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "2": bytes.fromhex("3031300d060960864801650304020105000420"),
}


def canonical_string(body: Mapping[str, Any]) -> bytes:
    """The text SNS signed for this message (SNS.md §2.1); Rejected when a field is missing."""
    kind = body.get("Type")
    if kind not in SIGNED:
        raise Rejected("malformed", f"unknown message Type {str(kind)[:40]!r}")
    parts = []
    for name in SIGNED[kind]:
        value = body.get(name)
        if value is None and name in OPTIONAL:
            continue
        if not isinstance(value, str):
            raise Rejected("malformed", f"{kind} without a string {name}")
        parts.append(f"{name}\n{value}\n")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected("malformed", "a field holds a lone surrogate") from None


def parse_signing_cert(pem: bytes) -> x509.Certificate:
    """A fetched certificate file as a certificate; Rejected("bad_cert") says what is wrong."""
    if not _PEM.fullmatch(pem) or pem.count(b"-----BEGIN") != 1:
        raise Rejected("bad_cert", "the certificate file is not exactly one PEM certificate")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Rejected("bad_cert", "the certificate does not parse") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise Rejected("bad_cert", "the certificate has no RSA key of 2048 bits or more")
    return cert


def check_signing_cert(cert: x509.Certificate, name: str, now: datetime) -> None:
    """Raise Rejected("bad_cert") unless ``cert`` is valid at ``now`` and names ``name``."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        until = cert.not_valid_after_utc.isoformat()
        raise Rejected("bad_cert", f"the certificate is not valid now (valid until {until})")
    names = cert_dns_names(cert)
    if name.lower() not in (n.lower() for n in names):
        shown = ", ".join(names[:3]) or "none"
        raise Rejected("bad_cert", f"the certificate is for {shown}, not {name}")


def cert_dns_names(cert: x509.Certificate) -> list[str]:
    """subjectAltName DNS names; the subject CN when there is no subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(a.value) for a in cn]
    return list(san.value.get_values_for_type(x509.DNSName))


def decode_signature(body: Mapping[str, Any]) -> bytes:
    """The ``Signature`` bytes; Rejected("malformed") when it is not base64."""
    text = body.get("Signature")
    if not isinstance(text, str) or not text or len(text) > 2048:
        raise Rejected("malformed", "no Signature")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise Rejected("malformed", "Signature is not base64") from None


def verify(cert: x509.Certificate, signed: bytes, signature: bytes, version: str) -> None:
    """Raise Rejected("bad_signature") unless ``signature`` is the cert key's over ``signed``."""
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)  # parse_signing_cert refuses other keys
    try:
        key.verify(signature, signed, padding.PKCS1v15(), HASHES[version]())
        return
    except InvalidSignature:
        raise Rejected("bad_signature", "the signature does not match") from None
    except UnsupportedAlgorithm:  # SHA-1 disabled by the crypto policy: RFC 8017 by hand
        if not verify_pkcs1v15(key, signed, signature, version):
            raise Rejected("bad_signature", "the signature does not match") from None


def verify_pkcs1v15(key: rsa.RSAPublicKey, signed: bytes, signature: bytes, version: str) -> bool:
    """RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2): encode the expected block, compare."""
    numbers = key.public_numbers()
    size = (numbers.n.bit_length() + 7) // 8
    if len(signature) != size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= numbers.n:
        return False
    block = pow(s, numbers.e, numbers.n).to_bytes(size, "big")
    digest = hashlib.sha1(signed) if version == "1" else hashlib.sha256(signed)
    t = _DIGEST_INFO[version] + digest.digest()
    if size < len(t) + 11:
        return False
    expected = b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t
    return hmac.compare_digest(block, expected)
