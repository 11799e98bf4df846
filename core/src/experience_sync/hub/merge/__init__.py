"""The merge room: how the hub folds instances' experiences into an agent's state.

Memory merging (:mod:`~experience_sync.hub.merge.memory`), skill accumulation
(:mod:`~experience_sync.hub.merge.skills`), knowledge integration
(:mod:`~experience_sync.hub.merge.knowledge`), conflict resolution
(:mod:`~experience_sync.hub.merge.conflicts`), similarity and its guards, the
conflict strategies and the skill aggregations.
"""
