"""Built-in skill aggregations: ``max``, ``average``, ``weighted``."""

from __future__ import annotations

from experience_sync.hookspecs import Register, hookimpl
from experience_sync.hub.merge.aggregations import (
    AverageAggregation,
    MaxAggregation,
    WeightedAggregation,
)


@hookimpl
def experience_sync_register_skill_aggregations(register: Register) -> None:
    """Register ``max``, ``average`` and ``weighted``."""
    register("max", lambda config=None: MaxAggregation())
    register("average", lambda config=None: AverageAggregation())
    register("weighted", lambda config=None: WeightedAggregation())
