"""Hook specifications: every extension point of experience-sync.

A plugin is a module or object with functions named like these hooks and
decorated with :data:`experience_sync.hookimpl`. Collection hooks use the
"register callback" style: the plugin calls ``register(name, factory)`` once
per thing it provides. Two plugins registering the same name is an error
naming both. See ``docs/plugins.md`` for examples of each hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI

    from experience_sync.hub.service import Hub
    from experience_sync.models import ExperienceEvent, ObservabilityEvent

hookspec = pluggy.HookspecMarker("experience_sync")
#: Marker for hook implementations: ``@experience_sync.api.hookimpl``.
hookimpl = pluggy.HookimplMarker("experience_sync")

Register = Callable[[str, Callable[..., Any]], None]

# --------------------------------------------------------------------------- instance side


@hookspec
def experience_sync_register_protocols(register: Register) -> None:
    """Register sync protocols (``streaming``, ``lumped``, ``check_in``, ...).

    :param register: call ``register(name, factory)``; ``factory(config, context)``
        is called with the :class:`~experience_sync.config.ExperienceSyncConfig`
        and a :class:`~experience_sync.interfaces.ProtocolContext` and returns a
        :class:`~experience_sync.interfaces.SyncProtocol`.
    """


@hookspec
def experience_sync_register_transports(register: Register) -> None:
    """Register transports (``https``, ``websocket``, ``mcp``, ...).

    :param register: call ``register(name, factory)``; ``factory(config, agent_id)``
        is called with the :class:`~experience_sync.config.ExperienceSyncConfig`
        and the source agent id and returns a
        :class:`~experience_sync.interfaces.Transport`.
    """


@hookspec
def experience_sync_filter_event(event: ExperienceEvent) -> ExperienceEvent | None:
    """Redact or drop an event before it is written to the outbox.

    Called for every recorded event, in pluggy's order (``ordered_impls``: tryfirst,
    then newest-registered first, then trylast); each implementation gets
    the previous one's output. Return the event (changed or not) to keep it,
    or ``None`` to drop it (the drop is counted as ``filtered``, reason
    ``filter_hook``).

    :param event: the event about to be recorded.
    :returns: the event to record, or ``None`` to drop it.
    """


# --------------------------------------------------------------------------- hub side


@hookspec
def experience_sync_register_similarity_methods(register: Register) -> None:
    """Register memory similarity methods (``jaccard``, ``embedding``, ...).

    :param register: call ``register(name, factory)``; ``factory(config)`` is
        called with the :class:`~experience_sync.config.MergeStrategyConfig`
        and returns a :class:`~experience_sync.interfaces.SimilarityMethod`.
    """


@hookspec
def experience_sync_register_conflict_resolvers(register: Register) -> None:
    """Register conflict-resolution strategies (``latest_wins``, ``weighted_merge``, ...).

    :param register: call ``register(name, factory)``; ``factory(config)`` is
        called with the :class:`~experience_sync.config.MergeStrategyConfig`
        and returns a :class:`~experience_sync.interfaces.ConflictResolver`.
    """


@hookspec
def experience_sync_register_skill_aggregations(register: Register) -> None:
    """Register skill aggregations (``max``, ``average``, ``weighted``, ...).

    :param register: call ``register(name, factory)``; ``factory(config)`` is
        called with the :class:`~experience_sync.config.MergeStrategyConfig`
        and returns a :class:`~experience_sync.interfaces.SkillAggregator`.
    """


@hookspec
def experience_sync_register_embedders(register: Register) -> None:
    """Register embedders that turn memory text into vectors (``hashing``, ...).

    :param register: call ``register(name, factory)``; ``factory(config)`` is
        called with the :class:`~experience_sync.config.MergeStrategyConfig`
        and returns an :class:`~experience_sync.interfaces.Embedder`.
    """


@hookspec
def experience_sync_register_vector_indexes(register: Register) -> None:
    """Register vector indexes for embedding similarity (``numpy``, ``faiss``, ...).

    :param register: call ``register(name, factory)``; ``factory(dim)`` is
        called with the vector dimension and returns a
        :class:`~experience_sync.interfaces.VectorIndex`.
    """


@hookspec
def experience_sync_register_merge_judges(register: Register) -> None:
    """Register merge judges that decide near memory pairs in the grey zone (``rules``, ...).

    :param register: call ``register(name, factory)``; ``factory(config)`` is
        called with the :class:`~experience_sync.config.MergeStrategyConfig`
        and returns a :class:`~experience_sync.merge_judges.MergeJudge`.
    """


@hookspec
def experience_sync_register_stores(register: Register) -> None:
    """Register hub stores, selected by the scheme of the store URL (``sqlite``, ...).

    :param register: call ``register(scheme, factory)``; ``factory(url)`` is
        called with the store URL (``sqlite:///path/hub.db``) and returns a
        :class:`~experience_sync.interfaces.Store`.
    """


# --------------------------------------------------------------------------- recall


@hookspec
def experience_sync_register_rankers(register: Register) -> None:
    """Register search rankers (``bm25``, ``vector``, ...), fused by reciprocal rank fusion.

    :param register: call ``register(name, factory)``; ``factory(config)`` is
        called with the :class:`~experience_sync.config.RecallConfig` and
        returns a :class:`~experience_sync.recall.Ranker`.
    """


@hookspec
def experience_sync_register_rerankers(register: Register) -> None:
    """Register rerankers that reorder a search's fused hits.

    :param register: call ``register(name, factory)``; ``factory(config)`` is
        called with the :class:`~experience_sync.config.RecallConfig` and
        returns a :class:`~experience_sync.recall.Reranker`.
    """


@hookspec
def experience_sync_register_config_sections(register: Register) -> None:
    """Register the configuration tables a plugin reads.

    :param register: call ``register(path, model)``; ``path`` is a top-level
        table (``"faiss"``) or one under ``transport`` (``"transport.mcp"``),
        ``model`` a :class:`~experience_sync.config.ConfigSection` subclass.
        At load, the table is validated by ``model`` (a bad field fails with
        its dotted path) and read back with
        :meth:`ExperienceSyncConfig.section(path, model)
        <experience_sync.config.ExperienceSyncConfig.section>`; a table that
        no installed plugin registered is an error.
    """


# --------------------------------------------------------------------------- observability


@hookspec
def experience_sync_observe(event: ObservabilityEvent) -> None:
    """Receive every observability event, on the instance and on the hub.

    Event types include the spec's ``sync.init``, ``sync.event``,
    ``sync.batch``, ``sync.check_in``, ``merge.memories``, ``merge.skills``,
    ``merge.knowledge``, and ``sync.retry``, ``sync.failed``,
    ``sync.filtered``, ``outbox.full``, ``hub.rejected``, ``review.queued``,
    ``review.decided``, ``recall.pull``, ``recall.error``, ``outbox.error``,
    ``outbox.recovered``, ``merge.judged``, ``merge.judge_fallback`` (see
    ``docs/wire-protocol.md``, Observability). Implementations must be quick; an exception in one is logged and does not stop the others or the
    sync.

    :param event: the event.
    """


# --------------------------------------------------------------------------- CLI


@hookspec
def experience_sync_register_commands(cli: click.Group) -> None:
    """Add commands to the ``experience-sync`` CLI.

    :param cli: the root click group; call ``cli.add_command(...)`` or use
        ``@cli.command()``.
    """


# --------------------------------------------------------------------------- hub extension


@hookspec
def experience_sync_register_hub_routes(app: FastAPI, hub: Hub) -> None:
    """Add routes to the hub, or mount ASGI apps on it, when the hub app is built.

    :param app: the hub's FastAPI application.
    :param hub: the :class:`~experience_sync.hub.service.Hub` serving it (its
        ingestion API, store, authenticator and plugin manager).
    """
