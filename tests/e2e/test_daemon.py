"""End to end: the daemon on ephemeral ports; UDP, TCP (LF and octet counting), `logger`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest

from .conftest import wait_for_lines

CONFIG = """
settings { data_dir = "./data" }
input udp_in { type = "udp", listen = "127.0.0.1:0" }
input tcp_in { type = "tcp", listen = "127.0.0.1:0" }
output archive { type = "file", path = "archive/{module}/{host}.jsonl" }
output noise   { type = "file", path = "noise.jsonl" }
route netbios_noise {
  when module == "firewall" and dpt in [137, 138, 139]
  to noise
}
route everything { to archive }
"""

IPS = (
    "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
    "Generic Cross Site Scripting(XSS) Prevention|8|cn1=12 cn1Label=Host ID dvchost=web-01 "
    "src=203.0.113.9 spt=51234 dpt=80 act=Reset cs1=XSS_attempt cs1Label=DPI Note"
)
FIREWALL = (
    "<190>2021-10-06T01:29:43-07:00 DeepSec Logs CEF: 0|Trend Micro|Deep Security Agent|20.0.913|"
    "21|Out Of Allowed Policy|5|cn1=7 cn1Label=Host ID dvc=192.0.2.15 act=Deny src=198.51.100.7 "
    "dpt=137 proto=UDP cs3= cs3Label=Fragmentation Bits TrendMicroDsTenant=Primary "
    "TrendMicroDsTenantId=0"
)
SYSTEM_LEEF = (
    "<86>Nov  2 16:41:16 dsm01 LEEF:2.0|Trend Micro|Deep Security Manager|20.0.913|192|"
    "cat=System\tname=Alert Ended\tdesc=Alert: CPU Warning\tsev=3\tusrName=System\tsrc=192.0.2.20"
)


def _tcp(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)


def _udp(port: int, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(payload, ("127.0.0.1", port))


def test_udp_tcp_lf_and_octet_counting_are_archived_field_by_field(start_daemon, tmp_path):
    d = start_daemon(CONFIG)
    _udp(d.ports["udp_in"], IPS.encode() + b"\n")
    _tcp(d.ports["tcp_in"], FIREWALL.encode() + b"\n" + SYSTEM_LEEF.encode() + b"\r\n")
    body = IPS.replace("dvchost=web-01", "dvchost=web-02").encode()
    _tcp(d.ports["tcp_in"], str(len(body)).encode() + b" " + body)
    data = tmp_path / "data"
    archived = wait_for_lines("archive/*/*.jsonl", 3, data)
    noise = wait_for_lines("noise.jsonl", 1, data)
    code, err = d.stop()
    assert code == 0, err

    by_host = {e["host"]: e for e in archived}
    ips = by_host["web-01"]
    assert ips["input"] == "udp_in" and ips["peer"].startswith("127.0.0.1:")
    assert (ips["module"], ips["signature_id"], ips["severity"]) == (
        "intrusion_prevention",
        1000552,
        8,
    )
    assert (ips["src"], ips["spt"], ips["dpt"], ips["act"]) == ("203.0.113.9", 51234, 80, "Reset")
    assert ips["host_id"] == 12 and ips["format"] == "cef" and ips["raw"] == IPS
    assert ips["syslog"]["hostname"] == "dsm01" and ips["syslog"]["facility"] == 16
    assert ips["cs1Label"] == "DPI Note" and ips["cs1"] == "XSS_attempt"
    assert by_host["web-02"]["input"] == "tcp_in"  # octet-counted frame
    assert (tmp_path / "data/archive/intrusion_prevention/web-01.jsonl").exists()

    sysev = by_host["dsm01"]
    assert (sysev["module"], sysev["format"], sysev["severity"]) == ("system", "leef", 3)
    assert sysev["suser"] == "System" and sysev["name"] == "Alert Ended"

    (fw,) = noise
    assert (fw["module"], fw["host"], fw["dpt"], fw["tenant"], fw["tenant_id"]) == (
        "firewall",
        "192.0.2.15",
        137,
        "Primary",
        0,
    )
    assert fw["cs3"] == "" and fw["syslog"]["hostname"] == "DeepSec Logs"
    assert fw["syslog"]["timestamp"].startswith("2021-10-06T01:29:43")


def test_malformed_input_is_kept_and_counted_not_lost(start_daemon, tmp_path):
    d = start_daemon(CONFIG)
    _tcp(d.ports["tcp_in"], b"<13>this is not CEF at all\n\xff\xfe garbage\nCEF:0|broken\n")
    events = wait_for_lines("archive/*/*.jsonl", 3, tmp_path / "data")
    code, err = d.stop()
    assert code == 0
    assert {e["module"] for e in events} == {"unknown"}
    assert all(e["raw"] for e in events)
    assert sum(1 for e in events if e.get("parse_error")) >= 2
    final = [orjson.loads(x) for x in err.splitlines() if b'"daemon_stopped"' in x.encode()]
    assert final and final[0]["events_total"] == 3
    assert final[0]["events_unparsed_total"] >= 2


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")
@pytest.mark.parametrize(
    "flags",
    [["--udp", "--rfc3164"], ["--tcp", "--octet-count", "--rfc5424"], ["--tcp", "--rfc3164"]],
    ids=["udp-3164", "tcp-octet-5424", "tcp-lf-3164"],
)
def test_real_logger_tool(start_daemon, tmp_path, flags):
    d = start_daemon(CONFIG)
    port = d.ports["udp_in" if "--udp" in flags else "tcp_in"]
    body = IPS.split(" dsm01 ", 1)[1]
    subprocess.run(
        ["logger", *flags, "--server", "127.0.0.1", "--port", str(port), "-t", "dsa", body],
        check=True,
        timeout=10,
    )
    (ev,) = wait_for_lines("archive/*/*.jsonl", 1, tmp_path / "data")
    code, _ = d.stop()
    assert code == 0
    assert ev["module"] == "intrusion_prevention" and ev["host"] == "web-01"
    assert ev["syslog"]["appname"] == "dsa" and ev["dpt"] == 80
    if "--rfc5424" in flags:
        assert ev["syslog"]["version"] == 1


def test_bind_failure_exits_3_with_a_clear_message(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = tmp_path / "c.conf"
        conf.write_text(
            CONFIG.replace(
                'tcp_in { type = "tcp", listen = "127.0.0.1:0"',
                f'tcp_in {{ type = "tcp", listen = "127.0.0.1:{port}"',
            )
        )
        proc = subprocess.run(
            [sys.executable, "-m", "dsrouter", "run", "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
    assert proc.returncode == 3
    assert "tcp_in" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr


def test_default_run_and_send_sample(start_daemon, tmp_path):
    """The README's quick start: `dsrouter run` then `dsrouter send --sample`."""
    d = start_daemon(None)
    assert d.ports == {"udp_in": 5514, "tcp_in": 5514}
    sent = subprocess.run(
        [sys.executable, "-m", "dsrouter", "send", "--sample"],  # to the default's 127.0.0.1:5514
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert sent.returncode == 0, sent.stderr
    events = wait_for_lines("dsrouter-data/archive/*/*.jsonl", 10, tmp_path)
    code, _ = d.stop()
    assert code == 0
    modules = {p.stem for p in tmp_path.glob("dsrouter-data/archive/*/*.jsonl")}
    assert modules == {
        "system",
        "anti_malware",
        "web_reputation",
        "firewall",
        "intrusion_prevention",
        "integrity_monitoring",
        "log_inspection",
        "application_control",
        "device_control",
    }
    assert not any(e.get("parse_error") for e in events)


def test_hostile_dvchost_cannot_write_outside_the_data_dir(start_daemon, tmp_path):
    d = start_daemon(CONFIG)
    evil = IPS.replace("dvchost=web-01", "dvchost=../../etc")
    _tcp(d.ports["tcp_in"], evil.encode() + b"\n")
    (ev,) = wait_for_lines("archive/*/*.jsonl", 1, tmp_path / "data")
    code, _ = d.stop()
    assert code == 0 and ev["host"] == "../../etc"
    files = [p for p in tmp_path.rglob("*.jsonl")]
    assert len(files) == 1
    archive = (tmp_path / "data" / "archive").resolve()
    assert files[0].resolve().parent.parent == archive
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc.jsonl").exists()


@pytest.mark.parametrize(
    "proto", [["--udp"], ["--tcp"], ["--tcp", "--octet-count"]], ids=["udp", "tcp-lf", "tcp-octet"]
)
def test_send_command_sends_a_capture_file(start_daemon, tmp_path, proto):
    d = start_daemon(CONFIG)
    capture = tmp_path / "capture.log"
    capture.write_text(IPS + "\n" + FIREWALL + "\r\n\n" + SYSTEM_LEEF + "\n")
    port = d.ports["udp_in" if proto == ["--udp"] else "tcp_in"]
    sent = subprocess.run(
        [sys.executable, "-m", "dsrouter", "send", *proto, f"127.0.0.1:{port}", str(capture)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert sent.returncode == 0 and "sent 3 message(s)" in sent.stdout
    archived = wait_for_lines("archive/*/*.jsonl", 2, tmp_path / "data")
    noise = wait_for_lines("noise.jsonl", 1, tmp_path / "data")
    assert d.stop()[0] == 0
    assert sorted(e["raw"] for e in archived + noise) == sorted([IPS, FIREWALL, SYSTEM_LEEF])


def test_send_to_nothing_says_so(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        proc = subprocess.run(
            [sys.executable, "-m", "dsrouter", "send", "--sample", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1 and "cannot send" in proc.stderr


def test_metrics_and_healthz_endpoints(start_daemon, tmp_path):
    d = start_daemon(
        CONFIG.replace(
            'settings { data_dir = "./data" }',
            'settings { data_dir = "./data", metrics = "127.0.0.1:0" }',
        )
    )
    assert d.metrics
    _tcp(d.ports["tcp_in"], (IPS + "\n" + FIREWALL + "\n").encode())
    wait_for_lines("noise.jsonl", 1, tmp_path / "data")

    def get(path):
        with urllib.request.urlopen(f"http://{d.metrics}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()

    assert get("/healthz") == (200, "ok\n")
    deadline = time.monotonic() + 10  # the output's worker counts right after its send returns
    while 'delivered_total{output="archive"} 1.0' not in get("/metrics")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, body = get("/metrics")
    assert status == 200
    assert "dsrouter_events_parsed_total 2.0" in body
    assert 'dsrouter_route_events_total{route="netbios_noise"} 1.0' in body
    assert 'dsrouter_output_delivered_total{output="archive"} 1.0' in body
    assert 'dsrouter_events_received_total{input="tcp_in"} 2.0' in body
    with pytest.raises(urllib.error.HTTPError) as exc:
        get("/nope")
    assert exc.value.code == 404
    exc.value.close()
    assert d.stop()[0] == 0


def test_throttled_events_fall_through_and_are_counted(start_daemon, tmp_path):
    conf = CONFIG.replace(
        "route everything { to archive }",
        'output pager { type = "file", path = "pager.jsonl" }\n'
        "route page { when severity >= 8\n throttle 1 per 5m by host, signature_id\n to pager\n continue }\n"
        "route everything { to archive }",
    )
    d = start_daemon(conf)
    _tcp(d.ports["tcp_in"], ((IPS + "\n") * 3).encode())
    wait_for_lines("archive/*/*.jsonl", 3, tmp_path / "data")
    paged = wait_for_lines("pager.jsonl", 1, tmp_path / "data")
    code, err = d.stop()
    assert code == 0 and len(paged) == 1
    final = [orjson.loads(x) for x in err.splitlines() if '"daemon_stopped"' in x]
    routes = final[0]["routes"]
    assert routes["page"]["throttled_total"] == 2
    assert routes["page"]["events_total"] == 1 and routes["everything"]["events_total"] == 3
