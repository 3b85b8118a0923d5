"""``/metrics`` and ``/healthz``: the families from a snapshot, their text, and the HTTP server."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from dsrouter.errors import StartupError
from dsrouter.metrics import MetricsServer, SnapshotCollector, collect_families, health_text

INF = float("inf")

SNAPSHOT: dict[str, Any] = {
    "inputs": {
        "tcp_in": {
            "type": "tcp",
            "messages_total": 10,
            "bytes_total": 1500,
            "oversize_total": 1,
            "invalid_total": 2,
            "connections_total": 3,
            "connections_active": 1,
            "idle_closed_total": 4,
            "truncated_total": 2,
            "rejected_connections_total": 5,
            "sink_errors_total": 0,
        },
        "udp_in": {
            "type": "udp",
            "messages_total": 7,
            "bytes_total": 700,
            "oversize_total": 0,
            "invalid_total": 0,
            "connections_total": 0,
            "connections_active": 0,
            "idle_closed_total": 0,
            "rejected_connections_total": 0,
            "sink_errors_total": 1,
            "kernel_drops_total": 42,
            "recv_buffer_bytes": 8388608,
        },
    },
    "events_total": 16,
    "events_unparsed_total": 1,
    "pipeline_errors_total": 0,
    "batches_total": 9,
    "routes": {
        "netbios_noise": {
            "events_total": 3,
            "dropped_total": 3,
            "throttled_total": 0,
            "throttle_evicted_total": 0,
        },
        "siem": {
            "events_total": 13,
            "dropped_total": 0,
            "throttled_total": 2,
            "throttle_evicted_total": 1,
        },
    },
    "events_unrouted_total": 0,
    "outputs": {
        "archive": {
            "delivered_total": 12,
            "retried_total": 2,
            "failed_total": 1,
            "dead_lettered_total": 1,
            "corrupt_total": 2,
            "dropped_total": {"queue_full": 3, "too_large": 1},
            "queue_events": 5,
            "queue_bytes": 2048,
            "queue_max_events": 10000,
            "queue_max_bytes": 1048576,
            "queue_oldest_seconds": 1.5,
            "in_flight": 2,
            "queue_type": "disk",
            "latency": {
                "buckets": [0.005, 0.01, 0.1, 1.0, INF],
                "counts": [1, 4, 10, 12, 12],
                "sum": 2.25,
                "count": 12,
            },
        },
    },
    "reload": {"success": 1, "timestamp": 1700000000.5, "total": 3, "failed_total": 1},
}

# (exposed sample name, labels, value) that SNAPSHOT must produce
EXPECTED = [
    ("dsrouter_events_received_total", {"input": "tcp_in"}, 10),
    ("dsrouter_events_received_total", {"input": "udp_in"}, 7),
    ("dsrouter_input_bytes_total", {"input": "tcp_in"}, 1500),
    ("dsrouter_input_dropped_total", {"input": "tcp_in", "reason": "oversize"}, 1),
    ("dsrouter_input_dropped_total", {"input": "tcp_in", "reason": "invalid"}, 2),
    ("dsrouter_input_dropped_total", {"input": "tcp_in", "reason": "sink_error"}, 0),
    ("dsrouter_input_dropped_total", {"input": "udp_in", "reason": "kernel"}, 42),
    ("dsrouter_input_dropped_total", {"input": "udp_in", "reason": "sink_error"}, 1),
    ("dsrouter_input_connections_total", {"input": "tcp_in"}, 3),
    ("dsrouter_input_connections_active", {"input": "tcp_in"}, 1),
    ("dsrouter_input_rejected_connections_total", {"input": "tcp_in"}, 5),
    ("dsrouter_input_idle_closed_total", {"input": "tcp_in"}, 4),
    ("dsrouter_input_recv_buffer_bytes", {"input": "udp_in"}, 8388608),
    ("dsrouter_events_parsed_total", {}, 16),
    ("dsrouter_events_unparsed_total", {}, 1),
    ("dsrouter_pipeline_errors_total", {}, 0),
    ("dsrouter_batches_total", {}, 9),
    ("dsrouter_events_unrouted_total", {}, 0),
    ("dsrouter_route_events_total", {"route": "netbios_noise"}, 3),
    ("dsrouter_route_dropped_total", {"route": "netbios_noise"}, 3),
    ("dsrouter_route_throttled_total", {"route": "siem"}, 2),
    ("dsrouter_route_throttle_evicted_total", {"route": "siem"}, 1),
    ("dsrouter_output_delivered_total", {"output": "archive"}, 12),
    ("dsrouter_output_retried_total", {"output": "archive"}, 2),
    ("dsrouter_output_failed_total", {"output": "archive"}, 1),
    ("dsrouter_output_dead_lettered_total", {"output": "archive"}, 1),
    ("dsrouter_output_queue_corrupt_total", {"output": "archive"}, 2),
    ("dsrouter_output_dropped_total", {"output": "archive", "reason": "queue_full"}, 3),
    ("dsrouter_output_dropped_total", {"output": "archive", "reason": "too_large"}, 1),
    ("dsrouter_output_queue_events", {"output": "archive"}, 5),
    ("dsrouter_output_queue_bytes", {"output": "archive"}, 2048),
    ("dsrouter_output_queue_max_events", {"output": "archive"}, 10000),
    ("dsrouter_output_queue_max_bytes", {"output": "archive"}, 1048576),
    ("dsrouter_output_queue_oldest_seconds", {"output": "archive"}, 1.5),
    ("dsrouter_output_in_flight", {"output": "archive"}, 2),
    ("dsrouter_output_delivery_latency_seconds_bucket", {"output": "archive", "le": "0.005"}, 1),
    ("dsrouter_output_delivery_latency_seconds_bucket", {"output": "archive", "le": "1.0"}, 12),
    ("dsrouter_output_delivery_latency_seconds_bucket", {"output": "archive", "le": "+Inf"}, 12),
    ("dsrouter_output_delivery_latency_seconds_sum", {"output": "archive"}, 2.25),
    ("dsrouter_output_delivery_latency_seconds_count", {"output": "archive"}, 12),
    ("dsrouter_reload_success", {}, 1),
    ("dsrouter_reload_timestamp_seconds", {}, 1700000000.5),
    ("dsrouter_reloads_total", {}, 3),
    ("dsrouter_reload_failures_total", {}, 1),
]

# exposed family name -> TYPE
TYPES = {
    "dsrouter_events_received_total": "counter",
    "dsrouter_input_bytes_total": "counter",
    "dsrouter_input_dropped_total": "counter",
    "dsrouter_input_refused_total": "counter",
    "dsrouter_input_truncated_total": "counter",
    "dsrouter_input_connections_total": "counter",
    "dsrouter_input_connections_active": "gauge",
    "dsrouter_input_rejected_connections_total": "counter",
    "dsrouter_input_idle_closed_total": "counter",
    "dsrouter_input_recv_buffer_bytes": "gauge",
    "dsrouter_events_parsed_total": "counter",
    "dsrouter_events_unparsed_total": "counter",
    "dsrouter_pipeline_errors_total": "counter",
    "dsrouter_batches_total": "counter",
    "dsrouter_events_unrouted_total": "counter",
    "dsrouter_route_events_total": "counter",
    "dsrouter_route_dropped_total": "counter",
    "dsrouter_route_throttled_total": "counter",
    "dsrouter_route_throttle_evicted_total": "counter",
    "dsrouter_output_delivered_total": "counter",
    "dsrouter_output_retried_total": "counter",
    "dsrouter_output_failed_total": "counter",
    "dsrouter_output_dead_lettered_total": "counter",
    "dsrouter_output_queue_corrupt_total": "counter",
    "dsrouter_output_dropped_total": "counter",
    "dsrouter_output_queue_events": "gauge",
    "dsrouter_output_queue_bytes": "gauge",
    "dsrouter_output_queue_max_events": "gauge",
    "dsrouter_output_queue_max_bytes": "gauge",
    "dsrouter_output_queue_oldest_seconds": "gauge",
    "dsrouter_output_in_flight": "gauge",
    "dsrouter_output_delivery_latency_seconds": "histogram",
    "dsrouter_reload_success": "gauge",
    "dsrouter_reload_timestamp_seconds": "gauge",
    "dsrouter_reloads_total": "counter",
    "dsrouter_reload_failures_total": "counter",
}


def render(snapshot: Any) -> str:
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snapshot))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the exposition text, keyed by name and labels (parsed back)."""
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"duplicate sample {key}"
            out[key] = sample.value
    return out


def test_families_from_snapshot() -> None:
    got = samples(render(SNAPSHOT))
    for name, labels, value in EXPECTED:
        assert got[(name, frozenset(labels.items()))] == value, (name, labels)
    # kernel drops and the receive buffer exist for UDP inputs only
    assert ("dsrouter_input_recv_buffer_bytes", frozenset({("input", "tcp_in")})) not in got
    kernel_tcp = frozenset({("input", "tcp_in"), ("reason", "kernel")})
    assert ("dsrouter_input_dropped_total", kernel_tcp) not in got
    # nothing else: no _created samples, no stray families
    names = {name for name, _ in got}
    assert not any(name.endswith("_created") for name in names)
    assert all(name.startswith("dsrouter_") for name in names)


def test_help_and_type_lines() -> None:
    text = render(SNAPSHOT)
    lines = text.splitlines()
    for name, kind in TYPES.items():
        assert f"# TYPE {name} {kind}" in lines, name
        help_line = next(line for line in lines if line.startswith(f"# HELP {name} "))
        assert len(help_line) > len(f"# HELP {name} ") + 10, help_line
    exposed = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    assert exposed == set(TYPES)
    assert 'dsrouter_output_delivered_total{output="archive"} 12.0' in lines


def test_families_are_counter_gauge_histogram_objects() -> None:
    families = {f.name: f for f in collect_families(SNAPSHOT)}
    # the client names counter families without "_total" and appends it when rendering
    assert families["dsrouter_events_received"].type == "counter"
    assert families["dsrouter_output_in_flight"].type == "gauge"
    assert families["dsrouter_output_delivery_latency_seconds"].type == "histogram"
    assert len(families) == len(TYPES)


def test_missing_keys_are_absent_not_errors() -> None:
    assert collect_families({}) == []
    sparse = {
        "inputs": {"a": {"messages_total": 1}, "b": "not a table", "c": {"bytes_total": "x"}},
        "outputs": {"o": {"dropped_total": 5, "latency": {"buckets": [0.1], "counts": []}}},
        "routes": None,
        "events_total": None,
        "batches_total": True,
        "reload": {"success": 0},
    }
    got = samples(render(sparse))
    assert got == {
        ("dsrouter_events_received_total", frozenset({("input", "a")})): 1,
        ("dsrouter_batches_total", frozenset()): 1,
        ("dsrouter_reload_success", frozenset()): 0,
    }


def test_histogram_without_inf_bucket_gets_one_from_count() -> None:
    latency = {"buckets": [0.5, 1.0], "counts": [2, 3], "sum": 1.25, "count": 4}
    got = samples(render({"outputs": {"o": {"latency": latency}}}))
    label = ("output", "o")
    name = "dsrouter_output_delivery_latency_seconds"
    assert got[(name + "_bucket", frozenset({label, ("le", "+Inf")}))] == 4
    assert got[(name + "_count", frozenset({label}))] == 4
    assert got[(name + "_sum", frozenset({label}))] == 1.25


ODD = ['we"ird', "back\\slash", "new\nline", "ünïcode ☃", "{braces}=,"]


@pytest.mark.parametrize("name", ODD, ids=["quote", "backslash", "newline", "unicode", "braces"])
def test_label_escaping(name: str) -> None:
    text = render({"routes": {name: {"events_total": 3}}, "outputs": {name: {"in_flight": 1}}})
    assert "\n" not in name or "new\\nline" in text
    got = samples(text)
    assert got[("dsrouter_route_events_total", frozenset({("route", name)}))] == 3
    assert got[("dsrouter_output_in_flight", frozenset({("output", name)}))] == 1


def test_health_text() -> None:
    assert health_text(True, []) == "ok\n"
    assert health_text(True, ["ignored"]) == "ok\n"
    assert health_text(False, ["output 'siem' failing", "queue\nabove 80%"]) == (
        "degraded\noutput 'siem' failing\nqueue above 80%\n"
    )


# --- the HTTP server -----------------------------------------------------------------------


def run(factory: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(main())


class Health:
    def __init__(self) -> None:
        self.ok = True
        self.reasons: list[str] = []

    def __call__(self) -> tuple[bool, list[str]]:
        return self.ok, list(self.reasons)


async def request(
    address: tuple[str, int], raw: bytes, timeout: float = 5.0
) -> tuple[int, dict, bytes]:
    """Send ``raw``; return status, headers (lower-case names) and body of the reply."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    assert int(headers["content-length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def serving(snapshot: Callable[[], dict], health: Health, **kw: Any) -> MetricsServer:
    server = MetricsServer("127.0.0.1", 0, snapshot, health, **kw)
    await server.start()
    return server


def test_server_metrics_and_healthz() -> None:
    calls = []

    def snapshot() -> dict:
        calls.append(1)
        return SNAPSHOT

    async def main() -> None:
        health = Health()
        server = await serving(snapshot, health)
        try:
            assert calls == []  # nothing is read before a scrape
            status, headers, body = await request(server.address, get("/metrics"))
            assert status == 200 and headers["content-type"] == CONTENT_TYPE_LATEST
            assert samples(body.decode()) == samples(render(SNAPSHOT))
            assert calls == [1]
            status, headers, body = await request(server.address, get("/metrics?x=1"))
            assert status == 200 and calls == [1, 1]

            assert await request(server.address, get("/healthz")) == (
                200,
                {
                    "content-type": "text/plain; charset=utf-8",
                    "content-length": "3",
                    "connection": "close",
                },
                b"ok\n",
            )
            health.ok, health.reasons = False, ["output 'siem' failing", "queue 'siem' 93% full"]
            status, _, body = await request(server.address, get("/healthz"))
            assert status == 503
            assert body == b"degraded\noutput 'siem' failing\nqueue 'siem' 93% full\n"
        finally:
            server.close()

    run(main)


def test_server_errors() -> None:
    async def main() -> None:
        server = await serving(lambda: SNAPSHOT, Health())
        try:
            status, _, body = await request(server.address, get("/nope"))
            assert (status, body) == (404, b"try /metrics or /healthz\n")
            status, headers, _ = await request(server.address, b"POST /metrics HTTP/1.1\r\n\r\n")
            assert status == 405 and headers["allow"] == "GET"
            status, _, _ = await request(server.address, b"HEAD /metrics HTTP/1.1\r\n\r\n")
            assert status == 405
            status, _, _ = await request(server.address, b"\r\n\r\n")
            assert status == 405
        finally:
            server.close()

    run(main)


def test_oversized_request_gets_400() -> None:
    async def main() -> None:
        server = await serving(lambda: SNAPSHOT, Health())
        try:
            huge = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
            status, _, body = await request(server.address, huge)
            assert (status, body) == (400, b"bad request\n")
        finally:
            server.close()

    run(main)


def test_slow_or_truncated_request_gets_400_in_time() -> None:
    async def main() -> None:
        server = await serving(lambda: SNAPSHOT, Health(), timeout=0.3)
        loop = asyncio.get_running_loop()
        try:
            start = loop.time()
            # never finishes its head: answered when the request timeout runs out
            status, _, _ = await request(server.address, b"GET /metrics HTTP/1.1\r\n", 3.0)
            assert status == 400 and loop.time() - start < 2.5
            # closes its side mid-head
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"GET /met")
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 3.0)
            writer.close()
            assert data.startswith(b"HTTP/1.1 400 ")
        finally:
            server.close()

    run(main)


def test_snapshot_that_raises_gets_500() -> None:
    def broken() -> dict:
        raise RuntimeError("boom")

    async def main() -> None:
        server = await serving(broken, Health())
        try:
            status, _, body = await request(server.address, get("/metrics"))
            assert (status, body) == (500, b"internal error\n")
            status, _, _ = await request(server.address, get("/healthz"))
            assert status == 200  # health does not depend on the snapshot
        finally:
            server.close()

    run(main)


def test_port_in_use_is_a_startup_error() -> None:
    async def main() -> None:
        first = await serving(lambda: {}, Health())
        try:
            second = MetricsServer("127.0.0.1", first.address[1], lambda: {}, Health())
            with pytest.raises(StartupError, match="metrics: cannot listen on 127.0.0.1:"):
                await second.start()
        finally:
            first.close()

    run(main)


def test_nan_and_inf_values_render() -> None:
    got = samples(render({"outputs": {"o": {"queue_oldest_seconds": math.inf}}}))
    assert got[("dsrouter_output_queue_oldest_seconds", frozenset({("output", "o")}))] == math.inf
