"""experience-sync: share what deployed agent instances learn.

It captures experiences from deployed agent instances and merges them into a
coordinating source agent.
"""

from __future__ import annotations

from experience_sync.client.manager import ExperienceSyncManager
from experience_sync.client.status import SyncStatus
from experience_sync.config import ExperienceSyncConfig, load_config
from experience_sync.errors import (
    ConfigError,
    DiskFullError,
    ExperienceSyncError,
    OutboxFullError,
    OutboxWriteError,
    PluginError,
    RejectedError,
    RetryableError,
    TransportError,
)
from experience_sync.hookspecs import hookimpl
from experience_sync.interfaces import MockTransport, SyncRequest, Transport
from experience_sync.models import (
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
from experience_sync.plugins import get_plugin_manager

__all__ = [
    "SCHEMA_VERSION",
    "AgentState",
    "CheckIn",
    "ConfigError",
    "DiskFullError",
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
    "OutboxWriteError",
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
