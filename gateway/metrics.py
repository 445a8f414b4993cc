"""Prometheus metrics. One registry per app, so test apps and several instances never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_latency = Histogram(
            "gateway_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "gateway_transitions_total",
            "Transfer transitions applied, by event and new state",
            ["event", "state"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "gateway_redis_errors_total", "Requests failed by Redis errors", registry=self.registry
        )
        self.signature_failures = Counter(
            "gateway_twilio_signature_failures_total",
            "Twilio webhooks refused for a missing or invalid signature",
            ["route"],
            registry=self.registry,
        )
        self.notices_failed = Counter(
            "gateway_notices_failed_total",
            "Signed notices to partners that could not be delivered, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.timer_lag = Gauge(
            "gateway_timer_lag_seconds",
            "How late the most overdue durable timer is",
            registry=self.registry,
        )
