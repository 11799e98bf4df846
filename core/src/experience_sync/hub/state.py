"""In-memory shapes the merge engine and stores exchange."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from experience_sync.models import (
    AgentState,
    ExperienceEvent,
    InstanceStatus,
    Memory,
    MergeResult,
)


@dataclass
class StoredAgent:
    """One agent's materialized state as loaded from a store."""

    state: AgentState
    embeddings: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    instances: dict[str, InstanceStatus] = field(default_factory=dict)


@dataclass
class ChangeSet:
    """Everything one ingestion changes, committed by a store in one transaction."""

    log: list[tuple[ExperienceEvent, str | None]] = field(default_factory=list)
    state: AgentState | None = None
    changed_memories: list[Memory] = field(default_factory=list)
    embeddings: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    changed_keys: dict[str, set[str]] = field(default_factory=dict)
    instances: list[InstanceStatus] = field(default_factory=list)
    unit: tuple[str, MergeResult] | None = None
