"""Built-in observer: Prometheus counters of the hub's observability events.

Each hub builds one :class:`PrometheusObserver` among its own observers (not
registered on the plugin manager, so a second hub in the process does not
count this one's events); it counts every observability event of its hub by
type into that hub's :class:`~experience_sync.hub.metrics.HubMetrics`, served
at ``GET /metrics``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experience_sync.hookspecs import hookimpl
from experience_sync.models import ObservabilityEvent

if TYPE_CHECKING:
    from experience_sync.hub.metrics import HubMetrics


class PrometheusObserver:
    """Counts observability events into one hub's metrics."""

    def __init__(self, metrics: HubMetrics) -> None:
        self.metrics = metrics

    @hookimpl
    def experience_sync_observe(self, event: ObservabilityEvent) -> None:
        """Count ``event`` by type."""
        self.metrics.observe_event(event)
