"""An example third-party experience-sync plugin.

It adds one conflict-resolution strategy, ``highest_confidence``: of two
contested values, the one reported with the higher confidence wins; on equal
confidence the later report wins (event time, then Lamport clock, then
instance id), so the outcome never depends on the order reports arrive in.

Select it in configuration::

    [merge_strategy]
    conflict_resolution = "highest_confidence"
"""

from __future__ import annotations

from typing import Any

from experience_sync.api import (
    ConflictResolver,
    ContestedValue,
    Register,
    Resolution,
    hookimpl,
)

__all__ = ["HighestConfidence", "experience_sync_register_conflict_resolvers"]


def _rank(side: ContestedValue) -> tuple[float, Any, int, str]:
    return (side.confidence, side.timestamp, side.lamport, side.instance_id)


class HighestConfidence(ConflictResolver):
    """The value reported with the higher confidence wins; ties go to the later one."""

    name = "highest_confidence"

    def resolve(self, current: ContestedValue, incoming: ContestedValue) -> Resolution:
        """Apply ``incoming`` if it outranks ``current``, else keep ``current``."""
        if _rank(incoming) > _rank(current):
            return Resolution("apply", incoming.value, incoming.confidence)
        return Resolution("keep")


@hookimpl
def experience_sync_register_conflict_resolvers(register: Register) -> None:
    """Register ``highest_confidence``; the factory gets the merge-strategy config."""
    register("highest_confidence", lambda config=None: HighestConfidence())
