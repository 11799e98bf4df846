"""experience-sync: capture experiences from deployed agent instances and merge
them into a coordinating source agent."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("experience_sync")
"""Marker for hook implementations: ``@experience_sync.hookimpl``."""

from experience_sync.client.manager import ExperienceSyncManager  # noqa: E402
from experience_sync.client.status import SyncStatus  # noqa: E402
from experience_sync.config import ExperienceSyncConfig, load_config  # noqa: E402
from experience_sync.errors import (  # noqa: E402
    ConfigError,
    ExperienceSyncError,
    OutboxFullError,
    PluginError,
    RejectedError,
    RetryableError,
    TransportError,
)
from experience_sync.interfaces import MockTransport, SyncRequest, Transport  # noqa: E402
from experience_sync.models import (  # noqa: E402
    SCHEMA_VERSION,
    AgentState,
    CheckIn,
    ExperienceBatch,
    ExperienceEvent,
    KnowledgeItem,
    Memory,
    MergeResult,
    ObservabilityEvent,
    Skill,
)
from experience_sync.plugins import get_plugin_manager  # noqa: E402

__all__ = [
    "SCHEMA_VERSION",
    "AgentState",
    "CheckIn",
    "ConfigError",
    "ExperienceBatch",
    "ExperienceEvent",
    "ExperienceSyncConfig",
    "ExperienceSyncError",
    "ExperienceSyncManager",
    "KnowledgeItem",
    "Memory",
    "MergeResult",
    "MockTransport",
    "ObservabilityEvent",
    "OutboxFullError",
    "PluginError",
    "RejectedError",
    "RetryableError",
    "Skill",
    "SyncRequest",
    "SyncStatus",
    "Transport",
    "TransportError",
    "get_plugin_manager",
    "hookimpl",
    "load_config",
]
