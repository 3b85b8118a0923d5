"""The sns input end to end: httpx over real TLS → the real daemon → its file archive.

Every case checks the status SNS would see, the counter on /metrics, the log line, and that
nothing was routed that should not be. One daemon serves the module (two sns inputs: one
confirming subscriptions itself, one logging the command); back-pressure gets its own.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request

import httpx
import pytest

from .conftest import (
    FIREWALL,
    OTHER_TOPIC,
    TOPIC,
    CertHost,
    Messages,
    Router,
    Signer,
    now_iso,
)

CONFIG = """
settings {{ data_dir = "./data", metrics = "127.0.0.1:0" }}
input sns_auto {{
  type = "sns", listen = "127.0.0.1:0", cert = "{cert}", key = "{key}"
  topics = ["{topic}"], auto_confirm = true
  cert_hosts = ["{host}"], cert_ca = "{ca}"
}}
input sns_manual {{
  type = "sns", listen = "127.0.0.1:0", path = "/hooks/sns", cert = "{cert}", key = "{key}"
  topics = ["{topic}"], cert_hosts = ["{host}"], cert_ca = "{ca}", min_signature_version = 2
}}
output archive {{ type = "file", path = "archive.jsonl" }}
output denied {{ type = "file", path = "denied.jsonl" }}
route deny {{ when module == "firewall" and act == "Deny"; to denied }}
route everything {{ to archive }}
"""


class Rig:
    """The module's daemon, cert host, signer and an HTTPS client."""

    def __init__(self, tmp) -> None:
        import trustme

        self.certs = CertHost(tmp)
        self.signer = Signer()
        self.messages = Messages(self.signer, self.certs)
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        leaf.private_key_pem.write_to_path(str(tmp / "sns.key"))
        leaf.cert_chain_pems[0].write_to_path(str(tmp / "sns.pem"))
        ca.cert_pem.write_to_path(str(tmp / "client-ca.pem"))
        config = CONFIG.format(
            cert="sns.pem", key="sns.key", topic=TOPIC, host=self.certs.host, ca=self.certs.ca_file
        )
        self.router = Router(tmp, config)
        self.trust = ssl.create_default_context(cafile=str(tmp / "client-ca.pem"))
        self.client = httpx.Client(verify=self.trust, timeout=20.0)
        self.auto = f"https://127.0.0.1:{self.router.ports['sns_auto']}/sns"
        self.manual = f"https://127.0.0.1:{self.router.ports['sns_manual']}/hooks/sns"

    def post(self, body, url: str | None = None, headers: dict | None = None) -> httpx.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"content-type": "text/plain; charset=UTF-8"}
        if isinstance(body, dict) and "Type" in body:
            sent["x-amz-sns-message-type"] = body["Type"]
        return self.client.post(url or self.auto, content=data, headers={**sent, **(headers or {})})

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://{self.router.metrics}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def routed(self, message_id: str, count: int = 0, timeout: float = 10.0) -> list[dict]:
        """The archived events of one message, once there are ``count`` of them; with
        ``count = 0``, after a later marker message got archived (what was refused before
        it would be in the archive by then: one pipeline, one worker per output)."""
        if count == 0:
            marker = self.messages.notification([{**FIREWALL, "Action": 6}])
            assert self.post(marker).status_code == 200
            self.routed(marker["MessageId"], 1)
        deadline = time.monotonic() + timeout
        while True:
            events = self.router.archived("data/*.jsonl")
            found = [e for e in events if e.get("sns", {}).get("message_id") == message_id]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        self.client.close()
        self.certs.close()
        if self.router.proc.poll() is None:
            self.router.proc.kill()
        self.router.proc.communicate(timeout=10)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    rig = Rig(tmp_path_factory.mktemp("sns"))
    yield rig
    rig.close()


def _refused(rig: Rig, response, status: int, reason: str, event="sns_message_refused") -> None:
    assert response.status_code == status, response.text
    rig.router.wait_log(event, reason=reason, status=status)
    assert rig.metric("dsrouter_sns_messages_total", outcome=reason) >= 1


def test_banner_lists_the_sns_inputs(rig):
    assert set(rig.router.ports) == {"sns_auto", "sns_manual"}
    rig.router.wait_log("sns_overrides_applied", input="sns_auto")


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_notifications_are_routed_and_answered_after_commit(rig, version):
    message = rig.messages.notification([FIREWALL, {**FIREWALL, "Action": 6}], version=version)
    response = rig.post(message)
    assert response.status_code == 200 and response.text.strip() == "2 event(s)"
    events = {e["act"]: e for e in rig.routed(message["MessageId"], 2)}
    assert set(events) == {"Deny", "Log"}  # the 200 came after both were committed
    deny = events["Deny"]
    assert (deny["format"], deny["module"], deny["host"], deny["dvc"], deny["dpt"]) == (
        "sns",
        "firewall",
        "192.0.2.15",
        "192.0.2.15",
        445,
    )
    assert deny["Flags"] == "SYN DF=1" and deny["input"] == "sns_auto"
    assert deny["sns"]["topic_arn"] == TOPIC and deny["sns"]["signature_version"] == version
    assert deny["peer"].startswith("127.0.0.1:") and deny["event_id"]
    denied = rig.router.archived("data/denied.jsonl")
    assert denied[-1]["sns"]["message_id"] == message["MessageId"]
    assert rig.metric("dsrouter_sns_messages_total", input="sns_auto", outcome="accepted") >= 1
    assert rig.metric("dsrouter_events_received_total", input="sns_auto") >= 2


def test_a_replayed_message_is_acknowledged_and_not_routed_twice(rig):
    message = rig.messages.notification([FIREWALL])
    assert rig.post(message).status_code == 200
    again = rig.post(message)
    assert again.status_code == 200 and "already received" in again.text
    assert len(rig.routed(message["MessageId"], 1)) == 1
    assert len(rig.routed(message["MessageId"])) == 1  # and still one after a later message
    assert rig.metric("dsrouter_sns_messages_total", outcome="duplicate") >= 1


def test_a_bad_signature_is_refused_and_not_routed(rig):
    message = rig.messages.notification([FIREWALL])
    forged = {**message, "Message": json.dumps([{**FIREWALL, "DestinationPort": 22}])}
    _refused(rig, rig.post(forged), 403, "bad_signature")
    unsigned = rig.messages.notification([FIREWALL])
    del unsigned["Signature"], unsigned["SignatureVersion"]
    other_key = Signer().sign(unsigned)  # the same SigningCertURL, another key
    assert rig.post(other_key).status_code == 403
    assert rig.routed(forged["MessageId"]) == [] and rig.routed(other_key["MessageId"]) == []


def test_stale_and_future_timestamps_are_refused(rig):
    old = rig.messages.notification([FIREWALL], Timestamp=now_iso(hours=-3))
    _refused(rig, rig.post(old), 400, "stale")
    late = rig.messages.notification([FIREWALL], Timestamp=now_iso(minutes=-50))  # a retry
    assert rig.post(late).status_code == 200 and rig.routed(late["MessageId"], 1)
    future = rig.messages.notification([FIREWALL], Timestamp=now_iso(hours=1))
    assert rig.post(future).status_code == 400
    assert rig.routed(old["MessageId"]) == [] and rig.routed(future["MessageId"]) == []


def test_another_topic_is_refused_after_verification(rig):
    message = rig.messages.notification([FIREWALL], topic=OTHER_TOPIC)
    _refused(rig, rig.post(message), 403, "topic_not_allowed")
    log = rig.router.wait_log("sns_message_refused", reason="topic_not_allowed")
    assert log["topic"] == OTHER_TOPIC and log["message_id"] == message["MessageId"]
    assert rig.routed(message["MessageId"]) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://{host}/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem",
        "https://127.0.0.2:{port}/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem",
        "https://{host}/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem?x",
        "https://{host}/evil.pem",
    ],
    ids=["http", "other-host", "query", "path"],
)
def test_a_signing_cert_url_off_the_allowed_hosts_is_refused_without_a_fetch(rig, url):
    url = url.format(host=rig.certs.host, port=rig.certs.port)
    seen = len(rig.certs.requests)
    message = rig.messages.notification([FIREWALL], SigningCertURL=url)
    _refused(rig, rig.post(message), 403, "cert_url")
    assert len(rig.certs.requests) == seen


def test_an_unreachable_certificate_gets_a_5xx_so_sns_retries(rig):
    path = "/SimpleNotificationService-ffffffffffffffffffffffffffffffff.pem"
    rig.certs.routes[path] = (500, b"oops")
    message = rig.messages.notification([FIREWALL], SigningCertURL=rig.certs.url(path))
    _refused(rig, rig.post(message), 502, "cert_unavailable", event="sns_message_deferred")
    assert rig.routed(message["MessageId"]) == []


def test_two_certificates_in_the_file_are_refused(rig):
    path = "/SimpleNotificationService-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.pem"
    rig.certs.routes[path] = (200, rig.signer.cert_pem * 2)
    message = rig.messages.notification([FIREWALL], SigningCertURL=rig.certs.url(path))
    _refused(rig, rig.post(message), 403, "bad_cert")


def test_malformed_bodies_are_refused_and_counted(rig):
    before = rig.metric("dsrouter_input_dropped_total", input="sns_auto", reason="invalid")
    _refused(rig, rig.post(b'{"Type": "Notification", '), 400, "malformed")
    assert rig.post(b"[1, 2, 3]").status_code == 400
    unsigned = rig.messages.notification([FIREWALL])
    del unsigned["Signature"]
    assert rig.post(unsigned).status_code == 400
    after = rig.metric("dsrouter_input_dropped_total", input="sns_auto", reason="invalid")
    assert after - before == 3


def test_raw_message_delivery_is_refused(rig):
    raw = json.dumps([FIREWALL]).encode()
    _refused(rig, rig.post(raw, headers={"x-amz-sns-rawdelivery": "true"}), 400, "raw_delivery")


def test_a_type_header_that_disagrees_with_the_body_is_refused(rig):
    message = rig.messages.notification([FIREWALL])
    response = rig.post(message, headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert response.status_code == 400 and "is not Notification" in response.text
    assert rig.routed(message["MessageId"]) == []


def test_a_10_mb_body_gets_413_before_it_is_read(rig):
    before = rig.metric("dsrouter_input_dropped_total", input="sns_auto", reason="oversize")
    response = rig.post(b"x" * (10 * 1024 * 1024))
    _refused(rig, response, 413, "oversize")
    after = rig.metric("dsrouter_input_dropped_total", input="sns_auto", reason="oversize")
    assert after - before == 1


def test_a_chunked_body_over_the_limit_gets_413(rig):
    def chunks():
        for _ in range(12):
            yield b"y" * (1 << 20)

    response = rig.client.post(rig.auto, content=chunks())
    assert response.status_code == 413


def test_wrong_path_and_method(rig):
    assert rig.client.post(rig.auto.replace("/sns", "/other"), content=b"{}").status_code == 404
    response = rig.client.get(rig.auto)
    assert response.status_code == 405
    rig.router.wait_log("sns_message_refused", reason="method", status=405)


def test_auto_confirmation_visits_the_subscribe_url(rig):
    message = rig.messages.confirmation()
    response = rig.post(message)
    assert response.status_code == 200 and "confirmed" in response.text
    token = message["Token"]
    assert any(
        r.startswith("/?Action=ConfirmSubscription") and token in r for r in rig.certs.requests
    )
    log = rig.router.wait_log("sns_subscription_confirmed", input="sns_auto")
    assert log["subscription"] == f"{TOPIC}:0bbd3a8e-1234"


def test_a_failed_confirmation_gets_a_5xx_so_sns_sends_it_again(rig):
    message = rig.messages.confirmation()
    rig.certs.routes["/"] = (503, b"busy")
    _refused(rig, rig.post(message), 502, "confirm_failed", event="sns_message_deferred")


def test_an_unsubscribe_confirmation_is_never_visited(rig):
    message = rig.messages.confirmation("UnsubscribeConfirmation")
    seen = len(rig.certs.requests)
    response = rig.post(message)
    assert response.status_code == 200
    assert not any(message["Token"] in r for r in rig.certs.requests[seen:])
    rig.router.wait_log("sns_subscription_deleted", input="sns_auto", topic=TOPIC)


def test_manual_confirmation_logs_the_command_and_visits_nothing(rig):
    message = rig.messages.signer.sign(
        {**rig.messages.confirmation(), "SignatureVersion": "2"}, "2"
    )
    seen = len(rig.certs.requests)
    response = rig.post(message, url=rig.manual)
    assert response.status_code == 200
    log = rig.router.wait_log("sns_subscription_pending", input="sns_manual")
    assert f"--token {message['Token']}" in log["command"]
    assert "--authenticate-on-unsubscribe true" in log["command"] and TOPIC in log["command"]
    assert "UnsubscribeURL" in log["help"]
    assert not any(message["Token"] in r for r in rig.certs.requests[seen:])


def test_min_signature_version_refuses_sha1(rig):
    message = rig.messages.notification([FIREWALL], version="1")
    _refused(rig, rig.post(message, url=rig.manual), 403, "signature_version")
    assert rig.post(rig.messages.notification([FIREWALL]), url=rig.manual).status_code == 200


def test_keep_alive_serves_several_messages_on_one_connection(rig):
    before = rig.metric("dsrouter_input_connections_total", input="sns_auto")
    with httpx.Client(verify=rig.trust, timeout=20) as client:
        for _ in range(3):
            message = rig.messages.notification([FIREWALL])
            response = client.post(rig.auto, content=json.dumps(message))
            assert response.status_code == 200
    assert rig.metric("dsrouter_input_connections_total", input="sns_auto") == before + 1


def test_plain_http_is_refused_on_the_https_endpoint(rig):
    port = rig.router.ports["sns_auto"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /sns HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        sock.settimeout(15)
        assert not sock.recv(100).startswith(b"HTTP/")  # the TLS handshake failed: closed
    deadline = time.monotonic() + 5
    while rig.metric("dsrouter_input_refused_total", input="sns_auto", reason="tls_handshake") < 1:
        assert time.monotonic() < deadline
