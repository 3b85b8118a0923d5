"""Message ids, reply-subject numbers and options: pure functions, no server needed."""

from __future__ import annotations

import orjson
import pytest

from dsrouter.delivery.jetstream_conn import ClusterOptions
from dsrouter.delivery.jetstream_msgs import ack_numbers, msg_id


def test_the_id_of_a_payload_is_the_id_of_its_event() -> None:
    ev = {"raw": 'say "event_id":"x"', "host": "h", "event_id": "18c0ffee0001-2a"}
    payload = orjson.dumps(ev)
    assert msg_id("siem", ev, payload) == msg_id("siem", None, payload) == "siem:18c0ffee0001-2a"
    assert msg_id("archive", ev, payload) == "archive:18c0ffee0001-2a"  # one id per output


@pytest.mark.parametrize(
    "ev",
    [
        {"event_id": "18c-1", "host": "h"},  # not the last member
        {"x": {"event_id": "18c-1"}},  # nested, not the event's own
        {"raw": "r", "event_id": "has spaces"},  # characters an event_id never has
        {"raw": "r"},  # none at all
    ],
)
def test_payloads_without_a_trailing_event_id_get_a_hash(ev: dict) -> None:
    payload = orjson.dumps(ev)
    got = msg_id("siem", None, payload)
    assert got.startswith("siem:h") and len(got) == len("siem:h") + 32
    assert got == msg_id("siem", None, payload)  # the same bytes, the same id: dedup holds
    assert got != msg_id("siem", None, payload + b" ")


def test_ack_numbers_from_both_reply_subject_layouts() -> None:
    v1 = "$JS.ACK.dsrouter.siem.3.1042.77.1796244194074785245.12"
    v2 = "$JS.ACK.hub.ACCHASH.dsrouter.siem.3.1042.77.1796244194074785245.12.tok"
    assert ack_numbers(v1) == ack_numbers(v2) == (3, 1042, 1796244194074785245)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"servers": ()}, "at least one"),
        ({"stream": "a.b"}, "cluster_stream"),
        ({"replicas": 7}, "1 to 5"),
        ({"tls_cert": "c.pem"}, "needs its key"),
        ({"user": "u"}, "go together"),
        ({"ack_wait": 0.5}, "ack_wait"),
    ],
)
def test_options_are_checked(kw: dict, message: str) -> None:
    base = {"servers": ("nats://127.0.0.1:4222",)}
    with pytest.raises(ValueError, match=message):
        ClusterOptions(**{**base, **kw})
