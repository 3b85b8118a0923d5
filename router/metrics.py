"""``/metrics`` (Prometheus text format) and ``/healthz`` over plain HTTP on ``settings.metrics``.

A deliberately small asyncio server: GET only, no keep-alive, requests bounded in size and time.
``/metrics`` is rendered by ``prometheus_client`` from a private registry holding one collector
that calls ``snapshot()`` at scrape time and turns the dict into metric families
(:func:`collect_families`). Nothing on the event path touches prometheus objects.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from dsrouter.errors import StartupError

__all__ = ["MetricsServer", "SnapshotCollector", "collect_families", "health_text"]

Snapshot = Callable[[], Mapping[str, Any]]
Health = Callable[[], tuple[bool, list[str]]]
_Family = type[CounterMetricFamily] | type[GaugeMetricFamily]

_MAX_REQUEST = 8192
_TIMEOUT = 5.0
_TEXT = "text/plain; charset=utf-8"
_log = structlog.get_logger()

C, G = CounterMetricFamily, GaugeMetricFamily

# (family class, name - counters without "_total", the client appends it -, snapshot key, help)
_INPUT = (
    (C, "dsrouter_events_received", "messages_total", "Syslog messages received by the input."),
    (C, "dsrouter_input_bytes", "bytes_total", "Bytes received by the input, framing included."),
    (C, "dsrouter_input_connections", "connections_total", "TCP connections accepted."),
    (G, "dsrouter_input_connections_active", "connections_active", "TCP connections open now."),
    (
        C,
        "dsrouter_input_rejected_connections",
        "rejected_connections_total",
        "TCP connections closed at once because max_connections was reached.",
    ),
    (
        C,
        "dsrouter_input_idle_closed",
        "idle_closed_total",
        "TCP connections closed after idle_timeout without data.",
    ),
    (
        C,
        "dsrouter_input_truncated",
        "truncated_total",
        "Messages cut short by a connection's close (limit, shutdown, short octet frame), "
        "kept with truncated = true.",
    ),
    (
        G,
        "dsrouter_input_recv_buffer_bytes",
        "recv_buffer_bytes",
        "Effective socket receive buffer of the UDP input (raise net.core.rmem_max for more).",
    ),
)
_INPUT_DROPS = (  # (reason label, snapshot key)
    ("oversize", "oversize_total"),
    ("invalid", "invalid_total"),
    ("kernel", "kernel_drops_total"),
    ("sink_error", "sink_errors_total"),
    ("rate_limited", "rate_limited_total"),
)
_INPUT_REFUSALS = (  # (reason label, snapshot key): connections or datagrams turned away
    ("not_allowed", "refused_total"),
    ("max_connections", "rejected_connections_total"),
    ("per_peer", "rejected_per_peer_total"),
    ("evicted", "evicted_total"),
    ("idle", "idle_closed_total"),
    ("slow_sender", "slow_closed_total"),
    ("tls_handshake", "tls_failed_total"),
    ("tls_on_plain", "tls_on_plain_total"),
    ("throttled", "throttled_total"),
)
_TOTALS = (
    (C, "dsrouter_events_parsed", "events_total", "Messages parsed into events."),
    (
        C,
        "dsrouter_events_unparsed",
        "events_unparsed_total",
        "Events that did not parse as Deep Security CEF/LEEF (routed raw, with parse_error).",
    ),
    (
        C,
        "dsrouter_pipeline_errors",
        "pipeline_errors_total",
        "Batches whose routing raised (a bug); their events were dead-lettered.",
    ),
    (C, "dsrouter_batches", "batches_total", "Batches of messages handed to the pipeline."),
    (C, "dsrouter_events_unrouted", "events_unrouted_total", "Events no route matched."),
)
_ROUTE = (
    (C, "dsrouter_route_events", "events_total", "Events matched by the route."),
    (C, "dsrouter_route_dropped", "dropped_total", "Events a drop route discarded on purpose."),
    (
        C,
        "dsrouter_route_throttled",
        "throttled_total",
        "Events over the route's throttle budget (they fall through to later routes).",
    ),
    (
        C,
        "dsrouter_route_throttle_evicted",
        "throttle_evicted_total",
        "Throttle keys evicted early because the route's key table was full.",
    ),
)
_OUTPUT = (
    (C, "dsrouter_output_delivered", "delivered_total", "Events delivered by the output."),
    (C, "dsrouter_output_retried", "retried_total", "Delivery attempts retried after a failure."),
    (
        C,
        "dsrouter_output_failed",
        "failed_total",
        "Events in a failed delivery attempt (then retried or dead-lettered).",
    ),
    (
        C,
        "dsrouter_output_dead_lettered",
        "dead_lettered_total",
        "Events written to the output's dead-letter file.",
    ),
    (
        C,
        "dsrouter_output_queue_corrupt",
        "corrupt_total",
        "Damaged disk-queue records skipped when the queue was read back.",
    ),
    (G, "dsrouter_output_queue_events", "queue_events", "Events waiting in the output queue."),
    (G, "dsrouter_output_queue_bytes", "queue_bytes", "Bytes waiting in the output queue."),
    (G, "dsrouter_output_queue_max_events", "queue_max_events", "Output queue limit in events."),
    (G, "dsrouter_output_queue_max_bytes", "queue_max_bytes", "Output queue limit in bytes."),
    (
        G,
        "dsrouter_output_queue_oldest_seconds",
        "queue_oldest_seconds",
        "Age of the oldest event waiting in the output queue.",
    ),
    (G, "dsrouter_output_in_flight", "in_flight", "Events being delivered now."),
    (
        C,
        "dsrouter_output_send_timeouts",
        "send_timeouts_total",
        "Sends that ran past the output's send_timeout: async ones cancelled and retried, "
        "blocking ones reported hung (they settle when the call returns).",
    ),
    (
        C,
        "dsrouter_output_open_failures",
        "open_failures_total",
        "Failed open() calls of the output; while it is not open, its worker retries with "
        "backoff and its queue fills.",
    ),
)
_RELOAD = (
    (G, "dsrouter_reload_success", "success", "1 if the last configuration reload succeeded."),
    (
        G,
        "dsrouter_reload_timestamp_seconds",
        "timestamp",
        "Unix time of the last configuration reload, 0 if none yet.",
    ),
    (C, "dsrouter_reloads", "total", "Configuration reloads attempted."),
    (C, "dsrouter_reload_failures", "failed_total", "Configuration reloads that failed."),
)
_LATENCY_HELP = "Time from an event entering the output queue to its delivery."


def collect_families(snapshot: Mapping[str, Any]) -> list[Metric]:
    """The daemon snapshot as metric families; missing or malformed entries are left out."""
    inputs, routes = _table(snapshot, "inputs"), _table(snapshot, "routes")
    outputs, reload = _table(snapshot, "outputs"), _table(snapshot, "reload")
    families = [
        *_each(_INPUT[:2], "input", inputs),
        _input_drops(inputs),
        _input_refusals(inputs),
        _sns_outcomes(inputs),
        *_each(_INPUT[2:], "input", inputs),
        *(_single(kind, name, help, snapshot.get(key)) for kind, name, key, help in _TOTALS),
        *_each(_ROUTE, "route", routes),
        *_each(_OUTPUT[:5], "output", outputs),
        _output_drops(outputs),
        *_each(_OUTPUT[5:], "output", outputs),
        _latency(outputs),
        *(_single(kind, name, help, reload.get(key)) for kind, name, key, help in _RELOAD),
    ]
    return [family for family in families if family.samples]


def _each(spec: tuple[tuple[_Family, str, str, str], ...], label: str, table: Mapping) -> list:
    return [_per(kind, name, help, label, table, key) for kind, name, key, help in spec]


def _table(snapshot: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = snapshot.get(key)
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    """An int or float (bools count as 0/1) as float; anything else is absent."""
    return float(value) if isinstance(value, int | float) else None


def _single(kind: _Family, name: str, help: str, value: Any) -> Metric:
    family = kind(name, help, labels=[])
    number = _number(value)
    if number is not None:
        family.add_metric([], number)
    return family


def _per(kind: _Family, name: str, help: str, label: str, table: Mapping, key: str) -> Metric:
    family = kind(name, help, labels=[label])
    for item, values in sorted(table.items(), key=lambda kv: str(kv[0])):
        number = _number(values.get(key)) if isinstance(values, Mapping) else None
        if number is not None:
            family.add_metric([str(item)], number)
    return family


def _input_refusals(inputs: Mapping[str, Any]) -> Metric:
    return _by_reason(
        inputs,
        "dsrouter_input_refused",
        "Connections (or UDP datagrams) the input turned away or closed, by reason: "
        "not_allowed (not on allow), max_connections, per_peer (max_connections_per_peer), "
        "evicted (closed to make room for another peer), idle, slow_sender "
        "(partial_timeout), tls_handshake, tls_on_plain (TLS sent to a plain tcp input), "
        "throttled (reading paused: the sender went over rate_limit; nothing is lost).",
        _INPUT_REFUSALS,
    )


def _by_reason(inputs: Mapping[str, Any], name: str, help: str, reasons) -> Metric:
    """A counter family labelled ``input, reason`` from ``(reason, stats key)`` pairs."""
    family = CounterMetricFamily(name, help, labels=["input", "reason"])
    for input_name, stats in sorted(inputs.items(), key=lambda kv: str(kv[0])):
        if not isinstance(stats, Mapping):
            continue
        for reason, key in reasons:
            number = _number(stats.get(key))
            if number is not None:
                family.add_metric([str(input_name), reason], number)
    return family


def _sns_outcomes(inputs: Mapping[str, Any]) -> Metric:
    """Per ``sns`` input: its messages by outcome (the input's ``stats["sns"]``)."""
    family = CounterMetricFamily(
        "dsrouter_sns_messages",
        "Requests an sns input answered, by outcome: accepted, duplicate, confirmed, "
        "confirmation_logged, unsubscribed (2xx); malformed, raw_delivery, stale, bad_request, "
        "signature_version, cert_url, bad_cert, bad_signature, topic_not_allowed, "
        "subscribe_url, not_found, method, timeout, oversize, head_too_large (4xx: dropped "
        "on purpose); internal_error, cert_unavailable, confirm_failed, busy, in_progress, "
        "commit_timeout, commit_failed (5xx: SNS retries). See docs/sns.md.",
        labels=["input", "outcome"],
    )
    for name, stats in sorted(inputs.items(), key=lambda kv: str(kv[0])):
        outcomes = stats.get("sns") if isinstance(stats, Mapping) else None
        if isinstance(outcomes, Mapping):
            for outcome, count in sorted(outcomes.items(), key=lambda kv: str(kv[0])):
                number = _number(count)
                if number is not None:
                    family.add_metric([str(name), str(outcome)], number)
    return family


def _input_drops(inputs: Mapping[str, Any]) -> Metric:
    return _by_reason(
        inputs,
        "dsrouter_input_dropped",
        "Messages the input dropped: oversize (longer than max_message), invalid (bad framing), "
        "kernel (UDP socket buffer overflow), sink_error (the pipeline raised), rate_limited "
        "(UDP datagrams over the sender's rate_limit).",
        _INPUT_DROPS,
    )


def _output_drops(outputs: Mapping[str, Any]) -> Metric:
    family = CounterMetricFamily(
        "dsrouter_output_dropped",
        "Events the output dropped without delivering them, by reason (e.g. queue_full).",
        labels=["output", "reason"],
    )
    for name, stats in sorted(outputs.items(), key=lambda kv: str(kv[0])):
        drops = stats.get("dropped_total") if isinstance(stats, Mapping) else None
        if not isinstance(drops, Mapping):
            continue
        for reason, value in sorted(drops.items(), key=lambda kv: str(kv[0])):
            number = _number(value)
            if number is not None:
                family.add_metric([str(name), str(reason)], number)
    return family


def _latency(outputs: Mapping[str, Any]) -> Metric:
    family = HistogramMetricFamily(
        "dsrouter_output_delivery_latency_seconds", _LATENCY_HELP, labels=["output"]
    )
    for name, stats in sorted(outputs.items(), key=lambda kv: str(kv[0])):
        latency = stats.get("latency") if isinstance(stats, Mapping) else None
        if not isinstance(latency, Mapping):
            continue
        buckets = _buckets(latency)
        if buckets:
            family.add_metric([str(name)], buckets, _number(latency.get("sum")))
    return family


def _buckets(latency: Mapping[str, Any]) -> list[tuple[str, float]]:
    """``[(le, cumulative count), ...]`` ending in ``+Inf``; empty when the data is unusable."""
    bounds, counts = _numbers(latency.get("buckets")), _numbers(latency.get("counts"))
    if not bounds or counts is None or len(bounds) != len(counts):
        return []
    out = [(floatToGoString(bound), count) for bound, count in zip(bounds, counts, strict=True)]
    if not math.isinf(bounds[-1]):
        total = _number(latency.get("count"))
        out.append(("+Inf", counts[-1] if total is None else total))
    return out


def _numbers(values: Any) -> list[float] | None:
    if not isinstance(values, list | tuple):
        return None
    if not all(isinstance(value, int | float) for value in values):
        return None
    return [float(value) for value in values]


class SnapshotCollector(Collector):
    """A prometheus_client collector reading ``snapshot()`` at every scrape."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        return collect_families(self.snapshot())


def health_text(ok: bool, reasons: Iterable[str]) -> str:
    """``ok`` or ``degraded`` followed by one reason per line."""
    if ok:
        return "ok\n"
    lines = [" ".join(str(reason).split()) for reason in reasons]
    return "degraded\n" + "".join(line + "\n" for line in lines if line)


class MetricsServer:
    """Serves ``/metrics`` from ``snapshot()`` and ``/healthz`` from ``health()``."""

    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Snapshot,
        health: Health,
        *,
        timeout: float = _TIMEOUT,
    ) -> None:
        self.host, self.port, self.health, self.timeout = host, port, health, timeout
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(snapshot))
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; raise StartupError when that is impossible."""
        try:
            self.server = await asyncio.start_server(
                self._handle, self.host, self.port, limit=_MAX_REQUEST
            )
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            raise StartupError(f"metrics: cannot listen on {where}: {exc.strerror}") from exc

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None, "start() first"
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    def close(self) -> None:
        """Stop listening; requests in progress end within their timeout."""
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            status, kind, body = self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, kind, body = "400 Bad Request", _TEXT, b"bad request\n"
        except OSError:
            writer.transport.abort()
            return
        extra = "Allow: GET\r\n" if status.startswith("405") else ""
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n".encode()
            + body
        )
        try:
            await asyncio.wait_for(writer.drain(), self.timeout)
        except (OSError, TimeoutError):
            writer.transport.abort()  # a client that does not read must not hold the socket
        finally:
            writer.close()

    def _respond(self, head: bytes) -> tuple[str, str, bytes]:
        """``(status, content type, body)`` for one request head."""
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) < 2 or parts[0] != b"GET":
            return "405 Method Not Allowed", _TEXT, b"GET only\n"
        path = parts[1].split(b"?", 1)[0]
        try:
            if path == b"/metrics":
                return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
            if path == b"/healthz":
                ok, reasons = self.health()
                status = "200 OK" if ok else "503 Service Unavailable"
                return status, _TEXT, health_text(ok, reasons).encode()
        except Exception as exc:
            _log.error("metrics_request_failed", path=path.decode("latin-1"), error=repr(exc))
            return "500 Internal Server Error", _TEXT, b"internal error\n"
        return "404 Not Found", _TEXT, b"try /metrics or /healthz\n"
