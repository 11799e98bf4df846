"""Built-in conflict resolvers: ``latest_wins``, ``weighted_merge``, ``manual_review``."""

from __future__ import annotations

from typing import Any

from experience_sync.interfaces import ConflictResolver, ContestedValue, Resolution


def _order(side: ContestedValue) -> tuple[Any, int, str]:
    return (side.timestamp, side.lamport, side.instance_id)


class LatestWins(ConflictResolver):
    """The later value wins: event time, then Lamport clock, then instance id.

    The order is total, so the outcome does not depend on arrival order.
    """

    name = "latest_wins"

    def resolve(self, current: ContestedValue, incoming: ContestedValue) -> Resolution:
        """Apply ``incoming`` if it is the later of the two, else keep ``current``."""
        if _order(incoming) > _order(current):
            return Resolution("apply", incoming.value, incoming.confidence)
        return Resolution("keep")


class WeightedMerge(ConflictResolver):
    """Weigh each side by ``confidence * trust``.

    Numbers are averaged by weight; other values take the heavier side (ties
    broken like ``latest_wins``). The merged confidence is the weighted mean
    of the two confidences, so it stays within 0..1.
    """

    name = "weighted_merge"

    def resolve(self, current: ContestedValue, incoming: ContestedValue) -> Resolution:
        """The weighted merge of the two sides (``latest_wins`` if both weigh nothing)."""
        wc = max(current.confidence * current.trust, 0.0)
        wi = max(incoming.confidence * incoming.trust, 0.0)
        total = wc + wi
        if total == 0:
            return LatestWins().resolve(current, incoming)
        confidence = (wc * current.confidence + wi * incoming.confidence) / total
        both_numbers = all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for v in (current.value, incoming.value)
        )
        if both_numbers:
            value = (wc * current.value + wi * incoming.value) / total
            return Resolution("apply", value, confidence)
        if (wi, _order(incoming)) > (wc, _order(current)):
            return Resolution("apply", incoming.value, confidence)
        return Resolution("keep", None, confidence)


class ManualReview(ConflictResolver):
    """Queue every conflict with both sides; nothing is applied until decided."""

    name = "manual_review"

    def resolve(self, current: ContestedValue, incoming: ContestedValue) -> Resolution:
        """Queue the conflict for review."""
        return Resolution("queue")
