"""Prometheus metrics of the serving API (one registry per app, exposed on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Sub-millisecond buckets: the recommend path answers in well under a millisecond.
LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class Metrics:
    """Request latency histogram, index size, sync lag and session-store gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "flashrec_request_seconds",
            "Time to answer a request, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "flashrec_requests",
            "Requests answered, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.index_sessions = Gauge(
            "flashrec_index_sessions", "History sessions in the VMIS-kNN index", registry=r
        )
        self.index_items = Gauge(
            "flashrec_index_items", "Distinct items in the VMIS-kNN index", registry=r
        )
        self.index_updates = Counter(
            "flashrec_index_updates",
            "History rows applied from the change feed",
            ["op"],
            registry=r,
        )
        self.sync_lag = Gauge(
            "flashrec_index_sync_lag_seconds",
            "Seconds between the newest applied change's commit and its application to the index",
            registry=r,
        )
        self.sync_age = Gauge(
            "flashrec_index_sync_age_seconds",
            "Seconds since the index last heard from its change feed",
            registry=r,
        )
        self.fallbacks = Counter(
            "flashrec_popularity_fallbacks",
            "Recommendation answers from popularity because no item of the session is known",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
