"""experience-sync: share what deployed agent instances learn.

It captures experiences from deployed agent instances and merges them into a
coordinating source agent.

The names below load on first use (PEP 562): ``import experience_sync`` costs
next to nothing, and ``from experience_sync import ExperienceSyncManager``
loads the manager's module alone. The outbox, the worker, the pydantic models,
numpy and the plugin manager load when a manager is created.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from experience_sync.client.manager import ExperienceSyncManager
    from experience_sync.client.status import SyncStatus
    from experience_sync.config import ExperienceSyncConfig, load_config
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

#: Where each lazily loaded name lives.
_LAZY: dict[str, str] = {
    "ExperienceSyncManager": "experience_sync.client.manager",
    "SyncStatus": "experience_sync.client.status",
    "ExperienceSyncConfig": "experience_sync.config",
    "load_config": "experience_sync.config",
    "hookimpl": "experience_sync.hookspecs",
    "MockTransport": "experience_sync.interfaces",
    "SyncRequest": "experience_sync.interfaces",
    "Transport": "experience_sync.interfaces",
    "get_plugin_manager": "experience_sync.plugins",
    **{
        name: "experience_sync.models"
        for name in (
            "SCHEMA_VERSION", "AgentState", "CheckIn", "ExperienceBatch", "ExperienceEvent",
            "KnowledgeItem", "Memory", "MergeResult", "ObservabilityEvent", "Skill",
        )
    },
}

#: Submodules that were attributes of the package once it was imported, when
#: it loaded them eagerly: ``experience_sync.models`` after ``import
#: experience_sync`` still works, loading the module then.
_SUBMODULES = frozenset({
    "client", "config", "forgetting", "hookspecs", "interfaces", "models", "plugins",
    "recall", "text", "units",
})


def __getattr__(name: str) -> Any:
    """Load an exported name (or one of the submodules above) on first use, then keep it."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
