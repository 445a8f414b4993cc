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
        self.handbacks = Counter(
            "gateway_handbacks_total",
            "Handbacks to 911 by outcome (created_live, created_data, connected, failed, "
            "unconfirmed, contact_made, contact_not_made)",
            ["outcome"],
            registry=self.registry,
        )
        self.cad_deliveries = Counter(
            "gateway_cad_deliveries_total",
            "EIDO deliveries to CAD by result (delivered, retry, gave_up)",
            ["result"],
            registry=self.registry,
        )
        self.dispositions = Counter(
            "gateway_dispositions_total",
            "Transfer dispositions recorded by 988 centers, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.answer_time = Histogram(
            "gateway_answer_seconds",
            "Seconds from the first destination ringing to a counselor answering",
            buckets=(2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300),
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "gateway_cad_outbox_depth",
            "EIDOs waiting in the durable outbox for delivery to CAD",
            registry=self.registry,
        )
        self.refused = Counter(
            "gateway_refused_total",
            "Requests refused because this process was at capacity, by path",
            ["path"],
            registry=self.registry,
        )
        self.timer_lag = Gauge(
            "gateway_timer_lag_seconds",
            "How late the most overdue durable timer is",
            registry=self.registry,
        )
