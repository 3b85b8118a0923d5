"""Allow-lists, per-peer slots and the TLS peer-name rule (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from dsrouter.ingest.limits import AllowList, PeerSlots, allow_list, peer_host
from dsrouter.ingest.tls import TlsSettings, cert_names, name_matches


def nets(*texts):
    return [ipaddress.ip_network(t) for t in texts]


def test_allow_list_matches_addresses_and_ranges_of_their_family():
    allow = AllowList(nets("10.0.0.0/8", "192.0.2.10/32", "2001:db8::/32"))
    assert allow("10.1.2.3") and allow("192.0.2.10") and allow("2001:db8::1")
    assert not allow("192.0.2.11") and not allow("11.0.0.1") and not allow("::1")
    assert allow("::ffff:10.0.0.1")  # IPv4 through an IPv6 socket
    assert not allow("not-an-address")
    assert allow_list([]) is None


def test_allow_list_cache_is_bounded():
    allow = AllowList(nets("10.0.0.0/8"))
    for i in range(10_000):
        allow(f"172.16.{i // 256}.{i % 256}")
    assert len(allow._cache) <= 4096


def test_peer_slots_per_peer_full_and_eviction():
    slots = PeerSlots(total=4, per_peer=3)
    for _ in range(3):
        assert slots.admit("a") == "ok"
        slots.add("a")
    assert slots.admit("a") == "per_peer"
    assert slots.admit("b") == "ok"
    slots.add("b")
    assert slots.admit("c") == "evict" and slots.heaviest() == "a"
    slots.remove("a")
    slots.add("c")
    assert slots.admit("d") == "evict"  # a holds 2, d none: a gives one up
    slots.remove("b")
    slots.remove("b")  # removing twice never goes negative
    assert slots.open == 3
    even = PeerSlots(total=2, per_peer=0)
    even.add("x")
    even.add("y")
    assert even.admit("z") == "full"  # evicting would only move the imbalance


def test_peer_host():
    assert peer_host("10.0.0.1:514") == "10.0.0.1"
    assert peer_host("[::1]:514") == "::1"


@pytest.mark.parametrize(
    ("pattern", "name", "ok"),
    [
        ("dsm.example.com", "DSM.example.com", True),
        ("*.example.com", "dsm.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "*.example.com", False),
        ("dsm.example.com", "dsm.example.com.", True),
        ("dsm.example.com", "dsm.example.co", False),
    ],
)
def test_peer_name_wildcard_rule(pattern, name, ok):
    assert name_matches(pattern, name) is ok


def test_cert_names_prefer_subject_alt_names():
    cert = {"subject": ((("commonName", "cn.example.com"),),), "subjectAltName": (("DNS", "a"),)}
    assert cert_names(cert) == ["a"]
    assert cert_names({"subject": ((("commonName", "cn.example.com"),),)}) == ["cn.example.com"]
    assert cert_names(None) == []


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (TlsSettings("c", "k", client_cert="required"), "needs client_ca"),
        (TlsSettings("c", "k", client_ca="ca"), 'client_cert = "none"'),
        (
            TlsSettings("c", "k", client_ca="ca", client_cert="optional", peer_names=("x",)),
            "peer_names",
        ),
    ],
)
def test_contradictory_tls_settings_are_named(settings, problem):
    assert any(problem in p for p in settings.problems())


def test_peer_rates_token_bucket():
    from dsrouter.ingest.limits import PeerRates, peer_rates

    rates = PeerRates(10)
    assert rates.take("a", 10, 0.0) == 0.0  # a one-second burst
    assert rates.take("a", 5, 0.0) == 0.5  # five over: half a second to earn them back
    assert rates.take("b", 1, 0.0) == 0.0  # other senders have their own bucket
    assert rates.take("a", 5, 1.0) == 0.0  # refilled (capped at one second's worth)
    assert peer_rates(0) is None
