"""Built-in conflict resolvers: ``latest_wins``, ``weighted_merge``, ``manual_review``."""

from __future__ import annotations

from experience_sync.hookspecs import Register, hookimpl
from experience_sync.hub.merge.strategies import LatestWins, ManualReview, WeightedMerge


@hookimpl
def experience_sync_register_conflict_resolvers(register: Register) -> None:
    """Register ``latest_wins``, ``weighted_merge`` and ``manual_review``."""
    register("latest_wins", lambda config=None: LatestWins())
    register("weighted_merge", lambda config=None: WeightedMerge())
    register("manual_review", lambda config=None: ManualReview())
