"""The stable surface for plugins and adapters: import from here, nothing else.

Everything a third-party store, transport, protocol, similarity method,
conflict resolver, skill aggregation, embedder, vector index, merge judge,
ranker, reranker or framework adapter needs is re-exported by this module (and, for
tests, by :mod:`experience_sync.testing`). Names here keep their meaning and
signature within a major version; a name leaves only after a release in
which it warned. Every other module of ``experience_sync`` is internal and
may change in any release; ``tests/test_api_surface.py`` fails when a
first-party plugin, adapter or example imports one. See ``docs/plugins.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experience_sync.client.manager import ExperienceSyncManager
    from experience_sync.client.recording import SuccessRates, clip, fit_kwargs
    from experience_sync.client.retry import (
        Backoff,
        OnRetry,
        error_message,
        is_retryable_status,
        parse_retry_after,
        status_error,
    )
    from experience_sync.client.status import SyncStatus
    from experience_sync.config import (
        ConfigSection,
        ExperienceSyncConfig,
        MergeStrategyConfig,
        RecallConfig,
        check_url,
        load_config,
        mask_url,
        validate_config,
    )
    from experience_sync.errors import (
        ConfigError,
        DiskFullError,
        ExperienceSyncError,
        NotInitializedError,
        OutboxFullError,
        OutboxWriteError,
        PluginError,
        RejectedError,
        RetryableError,
        StaleStateError,
        TransportError,
    )
    from experience_sync.forgetting import ForgetRecord, ForgetRequest, ForgetResult, redacted_body
    from experience_sync.hookspecs import Register, hookimpl
    from experience_sync.interfaces import (
        ConflictResolver,
        ContestedValue,
        Embedder,
        FloatArray,
        MatchQuery,
        OutboxItem,
        ProtocolContext,
        RequestKind,
        Resolution,
        SimilarityMatch,
        SimilarityMethod,
        SkillAggregator,
        Store,
        SyncProtocol,
        SyncRequest,
        TokenRecord,
        Transport,
        VectorIndex,
    )
    from experience_sync.merge_judges import (
        MERGE_OUTCOMES,
        JudgedPair,
        MergeJudge,
        RuleJudge,
        Verdict,
    )
    from experience_sync.models import (
        SCHEMA_VERSION,
        AgentState,
        Characteristic,
        CharacteristicData,
        CheckIn,
        EventContext,
        EventsRequest,
        ExperienceBatch,
        ExperienceEvent,
        InstanceStatus,
        InteractionData,
        KnowledgeData,
        KnowledgeItem,
        Memory,
        MemoryData,
        MergeOutcome,
        MergeResult,
        ObservabilityEvent,
        Review,
        Skill,
        SkillData,
        SkillUsageReport,
        new_id,
        utcnow,
    )
    from experience_sync.plugins import ExperienceSyncPluginManager, PluginInfo, get_plugin_manager
    from experience_sync.recall.documents import DocKey, SearchDoc, index_text
    from experience_sync.recall.fts import query_terms
    from experience_sync.recall.models import (
        KINDS,
        Provenance,
        SearchHit,
        SearchKind,
        SearchQuery,
        SearchResults,
    )
    from experience_sync.recall.ranking import Corpus, Ranker, Reranker, fuse, run_search
    from experience_sync.recall.render import render_hits, skill_reliability
    from experience_sync.stores.state import TABLES, ChangeSet, LogEntry, StoredAgent, StoredRow

__all__ = [
    "KINDS",
    "MERGE_OUTCOMES",
    "SCHEMA_VERSION",
    "TABLES",
    "AgentState",
    "AuthError",
    "Backoff",
    "ChangeSet",
    "Characteristic",
    "CharacteristicData",
    "CheckIn",
    "ConfigError",
    "ConfigSection",
    "ConflictResolver",
    "ContestedValue",
    "Corpus",
    "DiskFullError",
    "DocKey",
    "Embedder",
    "EventContext",
    "EventsRequest",
    "ExperienceBatch",
    "ExperienceEvent",
    "ExperienceSyncConfig",
    "ExperienceSyncError",
    "ExperienceSyncManager",
    "ExperienceSyncPluginManager",
    "FloatArray",
    "ForgetRecord",
    "ForgetRequest",
    "ForgetResult",
    "HubError",
    "IngestMeta",
    "InstanceStatus",
    "InteractionData",
    "JudgedPair",
    "KnowledgeData",
    "KnowledgeItem",
    "LogEntry",
    "MatchQuery",
    "Memory",
    "MemoryData",
    "MergeJudge",
    "MergeOutcome",
    "MergeResult",
    "MergeStrategyConfig",
    "NotInitializedError",
    "ObservabilityEvent",
    "OnRetry",
    "OutboxFullError",
    "OutboxItem",
    "OutboxWriteError",
    "PluginError",
    "PluginInfo",
    "Principal",
    "ProtocolContext",
    "Provenance",
    "Ranker",
    "RecallConfig",
    "Register",
    "RejectedError",
    "RequestKind",
    "Reranker",
    "Resolution",
    "RetryableError",
    "Review",
    "RuleJudge",
    "SearchDoc",
    "SearchHit",
    "SearchKind",
    "SearchQuery",
    "SearchResults",
    "SimilarityMatch",
    "SimilarityMethod",
    "Skill",
    "SkillAggregator",
    "SkillData",
    "SkillUsageReport",
    "StaleStateError",
    "Store",
    "StoredAgent",
    "StoredRow",
    "SuccessRates",
    "SyncProtocol",
    "SyncRequest",
    "SyncStatus",
    "TokenRecord",
    "Transport",
    "TransportError",
    "VectorIndex",
    "Verdict",
    "check_url",
    "clip",
    "error_message",
    "fit_kwargs",
    "fuse",
    "get_plugin_manager",
    "hookimpl",
    "index_text",
    "is_retryable_status",
    "load_config",
    "mask_url",
    "new_id",
    "parse_retry_after",
    "query_terms",
    "redacted_body",
    "render_hits",
    "run_search",
    "skill_reliability",
    "status_error",
    "utcnow",
    "validate_config",
]

# Every name loads on first use (PEP 562) and is then kept in this module:
# ``from experience_sync.api import render_hits`` loads the renderer alone,
# not the outbox, the models, numpy or the plugin manager.
_MODULES: dict[str, tuple[str, ...]] = {
    "experience_sync.client.manager": ("ExperienceSyncManager",),
    "experience_sync.client.recording": ("SuccessRates", "clip", "fit_kwargs"),
    "experience_sync.client.retry": (
        "Backoff", "OnRetry", "error_message", "is_retryable_status", "parse_retry_after",
        "status_error",
    ),
    "experience_sync.client.status": ("SyncStatus",),
    "experience_sync.config": (
        "ConfigSection", "ExperienceSyncConfig", "MergeStrategyConfig", "RecallConfig", "check_url",
        "load_config", "mask_url", "validate_config",
    ),
    "experience_sync.errors": (
        "ConfigError", "DiskFullError", "ExperienceSyncError", "NotInitializedError",
        "OutboxFullError", "OutboxWriteError", "PluginError", "RejectedError", "RetryableError",
        "StaleStateError", "TransportError",
    ),
    "experience_sync.forgetting": (
        "ForgetRecord", "ForgetRequest", "ForgetResult", "redacted_body",
    ),
    "experience_sync.hookspecs": ("Register", "hookimpl"),
    "experience_sync.interfaces": (
        "ConflictResolver", "ContestedValue", "Embedder", "FloatArray", "MatchQuery", "OutboxItem",
        "ProtocolContext", "RequestKind", "Resolution", "SimilarityMatch", "SimilarityMethod",
        "SkillAggregator", "Store", "SyncProtocol", "SyncRequest", "TokenRecord", "Transport",
        "VectorIndex",
    ),
    "experience_sync.merge_judges": (
        "MERGE_OUTCOMES", "JudgedPair", "MergeJudge", "RuleJudge", "Verdict",
    ),
    "experience_sync.models": (
        "SCHEMA_VERSION", "AgentState", "Characteristic", "CharacteristicData", "CheckIn",
        "EventContext", "EventsRequest", "ExperienceBatch", "ExperienceEvent", "InstanceStatus",
        "InteractionData", "KnowledgeData", "KnowledgeItem", "Memory", "MemoryData", "MergeOutcome",
        "MergeResult", "ObservabilityEvent", "Review", "Skill", "SkillData", "SkillUsageReport",
        "new_id", "utcnow",
    ),
    "experience_sync.plugins": ("ExperienceSyncPluginManager", "PluginInfo", "get_plugin_manager"),
    "experience_sync.recall.documents": ("DocKey", "SearchDoc", "index_text"),
    "experience_sync.recall.fts": ("query_terms",),
    "experience_sync.recall.models": (
        "KINDS", "Provenance", "SearchHit", "SearchKind", "SearchQuery", "SearchResults",
    ),
    "experience_sync.recall.ranking": ("Corpus", "Ranker", "Reranker", "fuse", "run_search"),
    "experience_sync.recall.render": ("render_hits", "skill_reliability"),
    "experience_sync.stores.state": ("TABLES", "ChangeSet", "LogEntry", "StoredAgent", "StoredRow"),
}
_NAMES = {name: module for module, names in _MODULES.items() for name in names}

# The hub-side names a hub plugin (the MCP server, a route) needs. The hub's
# wire module imports FastAPI, which a client install does not have.
if TYPE_CHECKING:
    from experience_sync.hub.engine import IngestMeta
    from experience_sync.hub.web.auth import AuthError, Principal
    from experience_sync.hub.web.wire import HubError

_HUB_NAMES = {
    "AuthError": "experience_sync.hub.web.auth",
    "HubError": "experience_sync.hub.web.wire",
    "IngestMeta": "experience_sync.hub.engine",
    "Principal": "experience_sync.hub.web.auth",
}


def __getattr__(name: str) -> Any:
    """Load a name of ``__all__`` on first use (a hub-side one says if the hub extra lacks)."""
    module = _NAMES.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    module = _HUB_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:  # a client install, without the hub extra
        from experience_sync.extras import HUB_MODULES, hub_hint

        if exc.name not in HUB_MODULES:
            raise
        raise ModuleNotFoundError(
            hub_hint(f"experience_sync.api.{name}"), name=exc.name
        ) from exc
    value = getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
