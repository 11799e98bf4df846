"""Seed a CrewAI ``Memory`` with what the source agent has learned.

Before a kickoff, an instance can start from the merged memories of every
other instance of its agent::

    seed_crew_memory(manager, crew_memory, agent_id="support-agent")
    crew = Crew(agents=[...], tasks=[...], memory=crew_memory)

Seeded items are saved with scope, categories and importance given, so CrewAI
stores them without asking its LLM to analyse them. CrewAI prints a recalled
memory's categories and metadata into the prompt, so a seeded item has
neither: the model sees its text only, never an id, tag or instance name. Its
record's ``source`` (which CrewAI does not show) is
:data:`~experience_sync_crewai.mapping.SEED_SOURCE`, so the listener does not
send it back to the hub.
"""

from __future__ import annotations

import logging
from typing import Any

from experience_sync_crewai.mapping import SEED_SOURCE

log = logging.getLogger("experience_sync_crewai")


def seed_crew_memory(
    manager: Any,
    memory: Any,
    agent_id: str,
    *,
    instance_id: str | None = None,
    limit: int = 100,
    min_importance: float = 0.0,
    scope: str = "/experience-sync",
) -> int:
    """Save the source agent's merged memories into a CrewAI ``Memory``.

    :param manager: the ``ExperienceSyncManager`` (its ``pull`` fetches the state).
    :param memory: a ``crewai.Memory`` (anything with ``remember``).
    :param agent_id: the source agent to draw from.
    :param instance_id: pull through this initialised instance's transport.
    :param limit: most memories to seed, most important first.
    :param min_importance: skip memories less important than this.
    :param scope: the CrewAI memory scope the items are saved under.
    :returns: how many memories were saved.
    """
    state = manager.pull(agent_id, instance_id=instance_id)
    chosen = sorted(
        (m for m in state.memories if m.importance >= min_importance),
        key=lambda m: (m.importance, m.access_count),
        reverse=True,
    )[:limit]
    saved = 0
    for item in chosen:
        try:
            memory.remember(
                item.content,
                scope=scope,
                categories=[],
                importance=item.importance,
                source=SEED_SOURCE,
            )
        except Exception:
            log.warning("experience-sync: seeding memory %s failed", item.memory_id,
                        exc_info=True)
        else:
            saved += 1
    return saved
