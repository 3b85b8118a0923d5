"""The ``siem`` output against real TCP, TLS and UDP receivers on loopback.

Each receiver here is a plain socket server written in the test (TLS through ``ssl`` with
trustme certificates); a receiver can stop reading, reset a connection after some bytes, or
close it between batches. Format details are in test_siem_format.py.
"""

from __future__ import annotations

import fcntl
import json
import re
import socket
import ssl
import struct
import termios
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import structlog
import trustme

import dsrouter.plugins.siem as siem
import dsrouter.plugins.siem_transport as transport
from dsrouter.api import Duration, OutputContext, PartialFailure, RetryLater
from dsrouter.cli import main
from dsrouter.ds import parse_message
from dsrouter.plugin import Plugins

KIND = Plugins(entry_points=False).outputs["siem"]
LINE = (
    "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
    "Generic Cross Site Scripting(XSS) Prevention|8|cn1=12 cn1Label=Host ID dvchost=web-01 "
    "src=203.0.113.9 act=Reset cs1=n{n:06d}"
)


def events(n: int, start: int = 0, pad: int = 0) -> list[dict]:
    return [parse_message(LINE.format(n=i) + " x" * pad) for i in range(start, start + n)]


def seqs(messages: list[bytes]) -> list[int]:
    return [int(m) for m in re.findall(rb"cs1=n(\d{6})", b"\n".join(messages))]


def wait_until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
    return result


# ---- the receivers --------------------------------------------------------------------------


def lf_split(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]  # a cut last line is not a message


def octet_split(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while (sp := data.find(b" ", pos)) > 0:
        end = sp + 1 + int(data[pos:sp])
        if end > len(data):
            break
        out.append(data[sp + 1 : end])
        pos = end
    return out


class Receiver:
    """A TCP or TLS receiver: the bytes of each accepted connection, in order.

    ``reset_after``: reset the first connection once that many bytes were read (its unread
    data is lost, as when a SIEM crashes). ``reading`` cleared: stop reading (a stuck SIEM).
    """

    def __init__(self, tls: ssl.SSLContext | None = None, reset_after: int | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        self.port = self.listener.getsockname()[1]
        self.tls, self.reset_after = tls, reset_after
        self.connections: list[bytearray] = []
        self.socks: list[socket.socket] = []
        self.handshake_errors: list[str] = []
        self.sni: list[str | None] = []
        self.reading = threading.Event()
        self.reading.set()
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                self.handshake_errors.append(str(exc))
                conn.close()
                return
        buf = bytearray()
        self.connections.append(buf)
        self.socks.append(conn)
        first = len(self.connections) == 1
        while self.reading.wait(10):
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            if first and self.reset_after is not None and len(buf) >= self.reset_after:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
        conn.close()

    def unread(self, connection: int = 0) -> int:
        """Bytes the receiver's kernel holds for the application (taken, not yet read)."""
        buf = fcntl.ioctl(self.socks[connection].fileno(), termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", buf)[0]

    def reset(self) -> None:
        """Abort every connection (RST): data not read yet is lost, as when a SIEM crashes."""
        for conn in self.socks:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        self.reading.set()

    def close_connections(self) -> None:
        """End every connection from this side (FIN), as a SIEM's idle timeout does."""
        for conn in self.socks:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def messages(self, split=lf_split) -> list[list[bytes]]:
        return [split(bytes(c)) for c in self.connections]

    def got(self, connection: int = 0, split=lf_split) -> list[bytes]:
        """The complete messages of one connection so far (none before it is accepted)."""
        conns = self.connections
        return split(bytes(conns[connection])) if len(conns) > connection else []

    def close(self) -> None:
        self.reading.set()
        self.listener.close()
        self.close_connections()


class UdpReceiver:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]

    def datagrams(self, n: int) -> list[bytes]:
        return [self.sock.recv(70000) for _ in range(n)]


@pytest.fixture
def udp():
    r = UdpReceiver()
    yield r
    r.sock.close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def make(tmp_path):
    """Build and open a siem output with the declared defaults plus ``opts``."""
    made = []

    def make(endpoint: str, logger=None, **opts):
        options = {o.name: o.default for o in KIND.options if not o.required}
        options.update(endpoint=endpoint, timeout=Duration(opts.pop("timeout", 5)), **opts)
        out = KIND.factory("qradar", options, OutputContext(tmp_path, tmp_path, logger))
        made.append(out)
        out.open()
        return out

    yield make
    for out in made:
        out.close()


def send_until_delivered(out, batch: list[dict], attempts: int = 5) -> int:
    """What the worker does: offer the same batch again after each RetryLater."""
    for n in range(attempts):
        try:
            out.send(batch)
            return n
        except RetryLater:
            continue
    raise AssertionError(f"not delivered after {attempts} attempts")


# ---- TCP: framing, formats, connection reuse ------------------------------------------------


@pytest.mark.parametrize("framing, split", [("lf", lf_split), ("octet-counted", octet_split)])
def test_tcp_framing(receiver, make, framing, split):
    r = receiver()
    out = make(f"tcp://127.0.0.1:{r.port}", framing=framing)
    out.send(events(3))
    out.send(events(2, start=3))
    wait_until(lambda: len(r.got(0, split)) == 5)
    assert r.messages(split)[0] == [LINE.format(n=i).encode() for i in range(5)]
    assert len(r.connections) == 1  # one connection for every batch


def test_tcp_defaults_to_lf_and_tls_to_octet_counting(make):
    assert make("tcp://127.0.0.1:9").framing == "lf"
    assert make("tls://127.0.0.1:9").framing == "octet-counted"


@pytest.mark.parametrize("fmt", ["raw", "cef", "leef", "json"])
def test_every_format_reaches_the_receiver_and_parses_back(receiver, make, fmt):
    r = receiver()
    out = make(f"tcp://127.0.0.1:{r.port}", format=fmt, framing="octet-counted")
    batch = events(2)
    out.send(batch)
    wait_until(lambda: len(r.got(0, octet_split)) == 2)
    got = r.got(0, octet_split)
    for sent, message in zip(batch, got, strict=True):
        if fmt == "json":
            head, _, body = message.partition(b" - - - - ")
            assert head.startswith(b"<134>1 ") and json.loads(body) == sent
            continue
        back = parse_message(message.decode())
        assert back["format"] == ("cef" if fmt == "raw" else fmt)
        assert back["cs1"] == sent["cs1"] and back["src"] == sent["src"]
        assert back["name"] == sent["name"] and back["host"] == "web-01"


def test_reopen_starts_a_new_connection(receiver, make):
    r = receiver()
    out = make(f"tcp://127.0.0.1:{r.port}")
    out.send(events(2))
    out.reopen()  # SIGHUP: certificate rotation, or a SIEM moved behind the same name
    out.send(events(2, start=2))
    wait_until(lambda: len(r.got(0)) == 2 and len(r.got(1)) == 2)  # each read on its own thread
    assert seqs(r.got(0)) == [0, 1] and seqs(r.got(1)) == [2, 3]


def test_an_event_no_format_can_hold_is_rejected_alone(receiver, make):
    r = receiver()
    out = make(f"tcp://127.0.0.1:{r.port}", format="json")
    batch = events(3)
    batch[1]["huge"] = 2**70  # beyond what JSON encoders write
    with pytest.raises(PartialFailure) as info:
        out.send(batch)
    assert list(info.value.rejected) == [1] and info.value.retry == ()
    assert "cannot encode the event" in str(info.value.rejected[1])
    wait_until(lambda: len(r.got(0)) == 2)


def test_connection_refused_retries_later(make):
    port = socket.create_server(("127.0.0.1", 0))
    closed = port.getsockname()[1]
    port.close()
    with pytest.raises(RetryLater, match="cannot connect to tcp://127.0.0.1:.*refused"):
        make(f"tcp://127.0.0.1:{closed}").send(events(1))


# ---- broken connections: nothing lost, the duplicate bound ----------------------------------


def test_reset_mid_batch_resends_that_batch_and_loses_nothing(receiver, make):
    r = receiver(reset_after=64 * 1024)
    out = make(f"tcp://127.0.0.1:{r.port}")
    first = events(20)
    out.send(first)  # ~4 KiB: read whole before the reset threshold
    wait_until(lambda: len(r.got(0)) == 20)
    big = events(4000, start=20, pad=40)  # ~1 MiB: far more than the receiver reads first
    assert send_until_delivered(out, big) == 1  # one RetryLater, then delivered
    wait_until(lambda: len(r.got(1)) == 4000)
    got = Counter(seqs(r.messages()[0]) + seqs(r.messages()[1]))
    assert set(got) == set(range(4020))  # nothing lost
    duplicated = {n for n, c in got.items() if c > 1}
    assert duplicated and duplicated <= set(range(20, 4020))  # only the batch in flight
    assert max(got.values()) == 2


def test_batch_written_but_not_acknowledged_when_the_connection_resets_is_retried(receiver, make):
    r = receiver()
    r.reading.clear()  # the receiver's TCP takes 8 KiB, the rest waits in our send buffer
    out = make(f"tcp://127.0.0.1:{r.port}")
    batch = events(80)  # ~16 KiB: sendall returns, all of it is in some kernel buffer
    size = sum(len(e["raw"]) + 1 for e in batch)
    outcome: list[BaseException | None] = []
    sender = threading.Thread(target=lambda: outcome.append(_outcome(out.send, batch)))
    sender.start()
    wait_until(lambda: out.link.sock is not None and r.socks)
    wait_until(lambda: r.unread() + (transport.unacked(out.link.sock) or 0) == size)
    r.reset()  # what its kernel took but nobody read is gone
    sender.join(10)
    assert isinstance(outcome[0], RetryLater), outcome
    assert "connection reset" in str(outcome[0]).lower() and "not acknowledged" in str(outcome[0])
    out.send(batch)  # the worker's next attempt: a new connection, the whole batch
    wait_until(lambda: len(r.got(1)) == 80)
    assert seqs(r.got(1)) == list(range(80))


def _outcome(call, *args) -> BaseException | None:
    try:
        call(*args)
    except BaseException as exc:
        return exc
    return None


def test_receiver_closing_an_idle_connection_is_reconnected_quietly(receiver, make):
    r = receiver()
    out = make(f"tcp://127.0.0.1:{r.port}")
    out.send(events(5))
    wait_until(lambda: len(r.got(0)) == 5)
    r.close_connections()
    wait_until(lambda: transport.closed(out.link.sock, 1) is not None)
    out.send(events(5, start=5))  # no RetryLater: the batch was not sent on the dead one
    wait_until(lambda: len(r.got(1)) == 5)
    assert seqs(r.messages()[0]) == list(range(5)) and seqs(r.messages()[1]) == list(range(5, 10))


def test_without_ack_counts_the_last_batch_is_resent_after_a_reconnect(receiver, make, monkeypatch):
    monkeypatch.setattr(transport, "unacked", lambda sock: None)  # as on Windows or macOS
    r = receiver()
    out = make(f"tcp://127.0.0.1:{r.port}")
    out.send(events(5))
    wait_until(lambda: len(r.got(0)) == 5)
    r.close_connections()
    wait_until(lambda: transport.closed(out.link.sock, 1) is not None)
    out.send(events(5, start=5))
    wait_until(lambda: len(r.got(1)) == 10)
    assert seqs(r.messages()[1]) == list(range(10))  # the held batch first, then the new one


def test_receiver_that_stops_reading_times_out_as_retry_later(receiver, make):
    r = receiver()
    r.reading.clear()
    out = make(f"tcp://127.0.0.1:{r.port}", timeout=0.3)
    with pytest.raises(RetryLater, match="sending to tcp://127.0.0.1:.* failed"):
        out.send(events(20000, pad=20))  # ~4 MiB
    assert out.link.sock is None  # dropped: the next attempt starts a fresh connection


# ---- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def server_context(ca, *names: str, require_client: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(ctx)
    if require_client:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def ca_file(ca, tmp_path: Path) -> str:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return "ca.pem"  # relative: resolved against the config directory (tmp_path)


def test_tls_verified_with_ca_and_octet_counted(receiver, make, ca, tmp_path):
    r = receiver(tls=server_context(ca))
    out = make(f"tls://127.0.0.1:{r.port}", ca=ca_file(ca, tmp_path))
    out.send(events(3))
    out.close()  # close_notify, then the receiver sees the end of the stream
    wait_until(lambda: len(r.got(0, octet_split)) == 3)
    assert seqs(r.messages(octet_split)[0]) == [0, 1, 2]


def test_tls_untrusted_certificate_retries_later_with_the_reason(receiver, make):
    r = receiver(tls=server_context(trustme.CA()))
    with pytest.raises(RetryLater) as info:
        make(f"tls://127.0.0.1:{r.port}").send(events(1))
    assert "TLS handshake with tls://127.0.0.1" in str(info.value)
    assert "certificate verify failed" in str(info.value)
    assert r.connections == []


def test_tls_name_mismatch_fails_and_server_name_overrides(receiver, make, ca, tmp_path):
    r = receiver(tls=server_context(ca, "siem.example.test"))
    with pytest.raises(RetryLater, match="certificate verify failed: IP address mismatch"):
        make(f"tls://127.0.0.1:{r.port}", ca=ca_file(ca, tmp_path)).send(events(1))
    out = make(f"tls://127.0.0.1:{r.port}", ca="ca.pem", server_name="siem.example.test")
    out.send(events(1))
    assert r.sni[-1] == "siem.example.test"


def test_tls_verify_false_skips_checks_and_warns(receiver, make):
    r = receiver(tls=server_context(trustme.CA()))
    with structlog.testing.capture_logs() as logs:
        out = make(f"tls://127.0.0.1:{r.port}", verify=False, logger=structlog.get_logger())
        out.send(events(1))
    assert [e["event"] for e in logs] == ["siem_tls_unverified", "siem_connected"]


def test_mutual_tls(receiver, make, ca, tmp_path):
    r = receiver(tls=server_context(ca, require_client=True))
    with pytest.raises(RetryLater) as info:
        make(f"tls://127.0.0.1:{r.port}", ca=ca_file(ca, tmp_path)).send(events(1))
    reason = str(info.value)
    assert "certificate required" in reason or "set cert and key" in reason, reason
    wait_until(lambda: r.handshake_errors)
    assert r.connections == []  # refused before any byte was taken
    client = ca.issue_cert("dsrouter-client")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    out = make(f"tls://127.0.0.1:{r.port}", ca="ca.pem", cert="client.pem", key="client.key")
    out.send(events(2))
    wait_until(lambda: len(r.got(0, octet_split)) == 2)


def test_tls_reset_mid_batch_resends_it(receiver, make, ca, tmp_path):
    r = receiver(tls=server_context(ca), reset_after=32 * 1024)
    out = make(f"tls://127.0.0.1:{r.port}", ca=ca_file(ca, tmp_path))
    assert send_until_delivered(out, events(3000, pad=40)) == 1
    wait_until(lambda: len(r.got(1, octet_split)) == 3000)
    assert seqs(r.messages(octet_split)[1]) == list(range(3000))


# ---- UDP ------------------------------------------------------------------------------------


def test_udp_one_datagram_per_message_without_framing(make, udp):
    r = udp
    make(f"udp://127.0.0.1:{r.port}", format="cef", header="rfc3164").send(events(3))
    got = r.datagrams(3)
    assert [parse_message(d.decode())["cs1"] for d in got] == ["n000000", "n000001", "n000002"]
    assert all(d.startswith(b"<134>Nov 27 23:18:32 dsm01 CEF:0|") and b"\n" not in d for d in got)


def test_udp_long_messages_are_cut_or_rejected(make, udp):
    r = udp
    long = [events(1, pad=300)[0], events(1, start=1)[0]]  # ~900 and ~300 bytes
    make(f"udp://127.0.0.1:{r.port}", max_message=512).send(long)
    cut, whole = r.datagrams(2)
    assert len(cut) == 512 and cut == long[0]["raw"].encode()[:512]
    assert whole == long[1]["raw"].encode()
    with pytest.raises(PartialFailure) as info:
        make(f"udp://127.0.0.1:{r.port}", max_message=512, oversize="reject").send(long)
    assert list(info.value.rejected) == [0] and info.value.retry == ()
    assert "longer than max_message (512)" in str(info.value.rejected[0])
    assert r.datagrams(1) == [long[1]["raw"].encode()]


def test_udp_to_a_closed_port_is_retried_not_lost(make):
    port = UdpReceiver()
    closed = port.port
    port.sock.close()  # nothing listens there now
    out = make(f"udp://127.0.0.1:{closed}")
    with pytest.raises((RetryLater, PartialFailure)) as info:
        for _ in range(50):  # the ICMP "port unreachable" fails a later datagram
            out.send(events(1))
    assert "refused" in str(info.value)


# ---- start-up checks, registration and `dsrouter check` -------------------------------------


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"endpoint": "udp://127.0.0.1:514", "framing": "lf"}, "framing applies to tcp://"),
        ({"endpoint": "tcp://127.0.0.1:514", "ca": "ca.pem"}, "ca: only used with tls://"),
        ({"endpoint": "tcp://127.0.0.1:514", "verify": False}, "verify: only used with tls://"),
        ({"endpoint": "tls://127.0.0.1:6514", "key": "k.pem"}, "key: set cert too"),
        ({"endpoint": "tls://127.0.0.1:6514", "ca": "missing.pem"}, "ca: cannot load"),
        ({"endpoint": "udp://127.0.0.1:514", "max_message": 70000}, "at most 65507 bytes"),
    ],
)
def test_open_rejects_inconsistent_options(make, opts, message):
    with pytest.raises(ValueError, match=message):
        make(**opts)


def test_registered_as_disk_queued_builtin_with_one_connection():
    assert KIND.default_queue == "disk" and KIND.plugin == "siem"
    assert siem.SiemOutput.concurrency == 1


def test_describe(make):
    out = make("tls://[::1]:6514", format="leef")
    assert out.describe() == "tls://[::1]:6514 (leef, rfc5424, octet-counted)"
    assert make("udp://10.0.0.1:514").describe() == "udp://10.0.0.1:514 (raw, rfc5424)"


def _check(tmp_path, block: str, capsys) -> tuple[int, str]:
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(f"output qradar {{ {block} }}\nroute all {{ to qradar }}\n")
    code = main(["check", "-c", str(conf)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_check_accepts_siem_options(tmp_path, capsys):
    block = (
        'type = "siem", endpoint = "tls://siem.example.com:6514", format = "leef",'
        ' framing = "lf", header = "rfc3164", hostname = "host", app_name = "dsrouter",'
        ' facility = 16, timeout = 3s, max_message = 16KiB, oversize = "reject",'
        ' ca = "ca.pem", cert = "c.pem", key = "k.pem", server_name = "siem", verify = true,'
        ' queue = "memory", batch = 500'
    )
    code, text = _check(tmp_path, block, capsys)
    assert code == 0, text


@pytest.mark.parametrize(
    "block, expected",
    [
        (
            'endpoint = "http://siem:514"',
            '"udp://HOST:PORT", "tcp://HOST:PORT" or "tls://HOST:PORT"',
        ),
        ('endpoint = "tcp://siem"', "expected a port (1-65535)"),
        ('endpoint = "tcp://siem:70000"', "expected a port (1-65535)"),
        ('endpoint = "tcp://:514"', "expected a host name or IP address"),
        ('endpoint = "udp://h:514", format = "xml"', '"raw", "cef", "leef", "json"'),
        ('endpoint = "tcp://h:514", framing = "crlf"', '"octet-counted", "lf"'),
        ('endpoint = "tcp://h:514", header = "5424"', '"rfc5424", "rfc3164"'),
        ('endpoint = "tcp://h:514", facility = 24', "facility number from 0 to 23"),
        ('endpoint = "tcp://h:514", app_name = "my app"', "up to 48 of"),
        ('endpoint = "tcp://h:514", hostname = "two words"', "host name without spaces"),
        ('endpoint = "tcp://h:514", max_message = 10B', "at least 64B"),
        ('endpoint = "tcp://h:514", verify = "no"', "expected true or false"),
        ('endpoint = "tcp://h:514", timeout = 0s', "expected a positive duration"),
        ('endpoint = "tcp://h:514", tiemout = 3s', "unknown option 'tiemout'"),
        ('format = "cef"', "missing required option 'endpoint'"),
    ],
)
def test_check_rejects_bad_siem_options(tmp_path, capsys, block, expected):
    code, text = _check(tmp_path, f'type = "siem", {block}', capsys)
    assert code == 1 and expected in text, text
    assert "Traceback" not in text


def test_docs_example_config_checks(tmp_path, capsys):
    text = (Path(__file__).resolve().parents[2] / "docs" / "outputs" / "siem.md").read_text()
    example = re.search(r"```\n(.*?)```", text, re.S).group(1)
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(example)
    assert main(["check", "-c", str(conf)]) == 0, capsys.readouterr().err
