"""Prometheus metrics of one hub (``GET /metrics``).

Each hub owns its own :class:`prometheus_client.CollectorRegistry`, so that
several hubs in one process (tests, embedding) never share or clash on
counters. Labels are low-cardinality on purpose: no agent or instance ids.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from experience_sync.models import MERGE_COUNTS, MergeResult, ObservabilityEvent

#: The ``Content-Type`` of :meth:`HubMetrics.render`.
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HubMetrics:
    """The hub's counters, gauges and histograms, in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.observability_events = Counter(
            "experience_sync_observability_events",
            "Observability events emitted on the hub, by type.",
            ["type"],
            registry=r,
        )
        self.requests = Counter(
            "experience_sync_hub_requests",
            "Requests and WebSocket frames handled, by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "experience_sync_hub_request_seconds",
            "Time from a request's arrival to its answer, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "experience_sync_hub_rejected",
            "Requests refused, by HTTP status.",
            ["status"],
            registry=r,
        )
        self.events_ingested = Counter(
            "experience_sync_hub_events_received",
            "Events received in accepted units, by unit kind.",
            ["kind"],
            registry=r,
        )
        self.events_duplicate = Counter(
            "experience_sync_hub_events_duplicate",
            "Events acknowledged as already applied, by unit kind.",
            ["kind"],
            registry=r,
        )
        self.merge_outcomes = Counter(
            "experience_sync_hub_merge_outcomes",
            "What merges did: memories_added, memories_merged, skills_updated, ...",
            ["outcome"],
            registry=r,
        )
        self.conflicts = Counter(
            "experience_sync_hub_conflicts",
            "Conflicts met while merging, by what happened to them.",
            ["resolution"],
            registry=r,
        )
        self.judge_decisions = Counter(
            "experience_sync_hub_merge_judge_decisions",
            "Memory pairs a merge judge decided, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.judge_fallbacks = Counter(
            "experience_sync_hub_merge_judge_fallbacks",
            "Merge judge calls the rules decided instead: error, timeout, invalid, overloaded.",
            ["reason"],
            registry=r,
        )
        self.websocket_connections = Gauge(
            "experience_sync_hub_websocket_connections",
            "Open WebSocket connections.",
            registry=r,
        )
        self.sse_subscribers = Gauge(
            "experience_sync_hub_sse_subscribers",
            "Connected Server-Sent Events clients.",
            registry=r,
        )
        self.sse_dropped = Counter(
            "experience_sync_hub_sse_dropped_events",
            "Observability events a slow SSE client lost.",
            registry=r,
        )

    def observe_event(self, event: ObservabilityEvent) -> None:
        """Count one observability event (and the merge judge's, by outcome or reason)."""
        self.observability_events.labels(event.type).inc()
        if event.type == "merge.judged":
            self.judge_decisions.labels(str(event.data.get("outcome"))).inc()
        elif event.type == "merge.judge_fallback":
            self.judge_fallbacks.labels(str(event.data.get("reason"))).inc()

    def observe_result(self, kind: str, result: MergeResult) -> None:
        """Count what one ingested unit did."""
        if result.duplicate:
            self.events_duplicate.labels(kind).inc(result.events_received)
            return
        self.events_ingested.labels(kind).inc(result.events_received)
        if result.duplicate_event_ids:
            self.events_duplicate.labels(kind).inc(len(result.duplicate_event_ids))
        for name in MERGE_COUNTS[1:]:  # events_received is counted above
            value = getattr(result, name)
            if value:
                self.merge_outcomes.labels(name).inc(value)
        if result.conflicts.resolved:
            self.conflicts.labels("resolved").inc(result.conflicts.resolved)
        if result.conflicts.queued:
            self.conflicts.labels("queued").inc(result.conflicts.queued)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request or frame and its latency."""
        self.requests.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(seconds)
        if status >= 400:
            self.rejected.labels(str(status)).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
