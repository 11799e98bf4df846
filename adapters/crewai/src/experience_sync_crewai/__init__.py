"""CrewAI adapter for experience-sync.

``ExperienceSyncListener(manager, instance_id=...)`` records a crew's
experiences; ``seed_crew_memory`` fills a CrewAI ``Memory`` with what the
source agent learned. Importing this package does not import CrewAI (which
takes seconds): the names load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from experience_sync_crewai.mapping import DEFAULT_PRIORITIES, EVENT_MAP, LEFT_OUT, SEED_MARK

if TYPE_CHECKING:
    from experience_sync_crewai.listener import ExperienceSyncListener
    from experience_sync_crewai.seed import seed_crew_memory

__all__ = [
    "DEFAULT_PRIORITIES",
    "EVENT_MAP",
    "LEFT_OUT",
    "SEED_MARK",
    "ExperienceSyncListener",
    "seed_crew_memory",
]


def __getattr__(name: str) -> Any:
    if name == "ExperienceSyncListener":
        from experience_sync_crewai.listener import ExperienceSyncListener

        return ExperienceSyncListener
    if name == "seed_crew_memory":
        from experience_sync_crewai.seed import seed_crew_memory

        return seed_crew_memory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
