"""CrewAI adapter for experience-sync.

``knowledge=FleetKnowledge(manager, "inst")`` on a ``Crew`` or ``Agent`` puts
what the fleet learned into each task's prompt; ``ExperienceSyncListener(manager,
instance_id=...)`` records a crew's experiences; ``tool_reliability`` renders
the fleet's success rates of a crew's tools; ``seed_crew_memory`` fills a
CrewAI ``Memory`` with what the source agent learned. Importing this package
does not import CrewAI (which takes seconds): the names load it on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from experience_sync_crewai.mapping import (
    DEFAULT_PRIORITIES,
    EVENT_MAP,
    LEFT_OUT,
    SEED_MARK,
    SEED_SOURCE,
)

if TYPE_CHECKING:
    from experience_sync_crewai.listener import ExperienceSyncListener
    from experience_sync_crewai.recall import (
        FleetKnowledge,
        FleetKnowledgeStorage,
        tool_reliability,
    )
    from experience_sync_crewai.seed import seed_crew_memory

__all__ = [
    "DEFAULT_PRIORITIES",
    "EVENT_MAP",
    "LEFT_OUT",
    "SEED_MARK",
    "SEED_SOURCE",
    "ExperienceSyncListener",
    "FleetKnowledge",
    "FleetKnowledgeStorage",
    "seed_crew_memory",
    "tool_reliability",
]

_LAZY = {
    "ExperienceSyncListener": "listener",
    "FleetKnowledge": "recall",
    "FleetKnowledgeStorage": "recall",
    "tool_reliability": "recall",
    "seed_crew_memory": "seed",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"experience_sync_crewai.{module}"), name)
