"""Built-in skill aggregations: ``max``, ``average``, ``weighted``.

Each combines the *latest* report of every instance, ``(proficiency,
invocations)``, so a report sent twice counts once.
"""

from __future__ import annotations

from collections.abc import Sequence

from experience_sync.interfaces import SkillAggregator


class MaxAggregation(SkillAggregator):
    """The best proficiency any instance reports."""

    name = "max"

    def aggregate(self, reports: Sequence[tuple[float, int]]) -> float:
        """The highest proficiency (0.0 without reports)."""
        return max((p for p, _ in reports), default=0.0)


class AverageAggregation(SkillAggregator):
    """The mean of the instances' latest proficiencies."""

    name = "average"

    def aggregate(self, reports: Sequence[tuple[float, int]]) -> float:
        """The mean proficiency (0.0 without reports)."""
        if not reports:
            return 0.0
        return sum(p for p, _ in reports) / len(reports)


class WeightedAggregation(SkillAggregator):
    """The mean weighted by each instance's invocations (plain mean if none)."""

    name = "weighted"

    def aggregate(self, reports: Sequence[tuple[float, int]]) -> float:
        """The invocation-weighted mean (negative counts as 0; plain mean if all are 0)."""
        total = sum(max(n, 0) for _, n in reports)
        if total == 0:
            return AverageAggregation().aggregate(reports)
        return sum(p * max(n, 0) for p, n in reports) / total
