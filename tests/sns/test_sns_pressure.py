"""The sns input under back-pressure and at its HTTP limits, against the real daemon."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx

from .conftest import FIREWALL, TOPIC, CertHost, HookSink, Messages, Router, Signer

# ---- back-pressure -----------------------------------------------------------------------------

PRESSURE = """
settings {{ data_dir = "./data" }}
input syslog {{ type = "tcp", listen = "127.0.0.1:0" }}
input sns_in {{
  type = "sns", listen = "127.0.0.1:0", allow_plain_http = true, topics = ["{topic}"]
  cert_hosts = ["{host}"], cert_ca = "{ca}"
}}
output hook {{
  type = "webhook", url = "{hook}", format = "array", queue = "memory", queue_max_events = 3
  when_full = "block", retry_initial = 100ms, retry_max = 200ms
}}
route all {{ to hook }}
"""
LINE = (
    b"<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0|21|Deny|5|"
    b"cn1=1 dvchost=web-01 act=Deny\n"
)


def test_back_pressure_answers_503_and_200_only_after_the_commit(tmp_path, start_router):
    certs, hook = CertHost(tmp_path), HookSink()
    try:
        messages = Messages(Signer(), certs)
        router: Router = start_router(
            PRESSURE.format(topic=TOPIC, host=certs.host, ca=certs.ca_file, hook=hook.url)
        )
        url = f"http://127.0.0.1:{router.ports['sns_in']}/sns"
        with socket.create_connection(("127.0.0.1", router.ports["syslog"]), timeout=5) as sock:
            sock.sendall(LINE * 3)  # three fill the queue (an empty queue takes any batch)
            deadline = time.monotonic() + 10
            while hook.attempts == 0:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            sock.sendall(LINE)  # the fourth is held: back-pressure
            router.wait_log("output_backpressure", output="hook")
        client = httpx.Client(timeout=20.0)
        held = messages.notification([FIREWALL])
        busy = client.post(url, content=json.dumps(held))
        assert busy.status_code == 503 and "full" in busy.text
        router.wait_log("sns_message_deferred", reason="busy", status=503)
        hook.status = 200  # the webhook recovers: the queue drains, the pipeline resumes
        deadline = time.monotonic() + 15
        while len(hook.events()) < 4:
            assert time.monotonic() < deadline, hook.events()
            time.sleep(0.05)
        retried = client.post(url, content=json.dumps(held))  # SNS's retry
        assert retried.status_code == 200
        while len(hook.events()) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sns_events = [e for e in hook.events() if e.get("format") == "sns"]
        assert [e["sns"]["message_id"] for e in sns_events] == [held["MessageId"]]
        assert client.post(url, content=json.dumps(held)).status_code == 200  # a late duplicate
        time.sleep(0.3)
        assert len([e for e in hook.events() if e.get("format") == "sns"]) == 1
        client.close()
        assert router.stop() == 0
    finally:
        certs.close()
        hook.close()


def test_a_request_waits_for_a_held_batch_and_gets_200_once_it_is_committed(tmp_path, start_router):
    certs, hook = CertHost(tmp_path), HookSink()
    try:
        messages = Messages(Signer(), certs)
        router: Router = start_router(
            PRESSURE.format(topic=TOPIC, host=certs.host, ca=certs.ca_file, hook=hook.url)
        )
        url = f"http://127.0.0.1:{router.ports['sns_in']}/sns"
        with socket.create_connection(("127.0.0.1", router.ports["syslog"]), timeout=5) as sock:
            sock.sendall(LINE * 3)  # the queue is full, nothing is held yet
            deadline = time.monotonic() + 10
            while hook.attempts == 0:  # the worker has them: they are in the queue
                assert time.monotonic() < deadline
                time.sleep(0.05)
        message = messages.notification([FIREWALL, FIREWALL])
        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(httpx.post(url, content=json.dumps(message), timeout=20))
        )
        sender.start()
        router.wait_log("output_backpressure", output="hook")  # our events are held
        time.sleep(0.5)
        assert not answers, "answered before the events were committed"
        hook.status = 200
        sender.join(15)
        assert answers and answers[0].status_code == 200, answers
        deadline = time.monotonic() + 15
        while len([e for e in hook.events() if e.get("format") == "sns"]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert router.stop() == 0
    finally:
        certs.close()
        hook.close()


# ---- HTTP limits -------------------------------------------------------------------------------

LIMITS = """
settings {{ data_dir = "./data" }}
input sns_in {{
  type = "sns", listen = "127.0.0.1:0", allow_plain_http = true, topics = ["{topic}"]
  read_timeout = 500ms, idle_timeout = 1s, max_connections = 2, max_body = 64KiB
}}
output o {{ type = "file", path = "o.jsonl" }}
route all {{ to o }}
"""


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_slow_idle_huge_and_too_many_requests_are_bounded(start_router):
    router: Router = start_router(LIMITS.format(topic=TOPIC))
    port = router.ports["sns_in"]
    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
    slow.sendall(b"POST /sns HTTP/1.1\r\nHost: x\r\n")  # and nothing more
    started = time.monotonic()
    assert _answer(slow).startswith(b"HTTP/1.1 408 ")
    assert 0.4 < time.monotonic() - started < 5
    slow.close()
    big = socket.create_connection(("127.0.0.1", port), timeout=5)
    big.sendall(b"POST /sns HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
    assert _answer(big).startswith(b"HTTP/1.1 431 ")
    big.close()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    extra.settimeout(5)
    assert extra.recv(10) == b""  # over max_connections: closed at once
    for sock in idle:
        sock.settimeout(5)
        assert sock.recv(10) == b""  # closed after idle_timeout, nothing sent
        sock.close()
    extra.close()
    code = router.stop()
    assert code == 0
    stopped = router.wait_log("daemon_stopped")
    stats = stopped["inputs"]["sns_in"]
    assert stats["idle_closed_total"] == 2 and stats["rejected_connections_total"] == 1
    assert stats["sns"]["timeout"] == 1 and stats["sns"]["head_too_large"] == 1
    assert router.archived("data/o.jsonl") == []
