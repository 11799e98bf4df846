"""``ExperienceSyncManager``: the spec's instance-side API.

An instance records experiences (``record_memory``, ``stream_event``, ...);
each event passes the ``experience_sync_filter_event`` hook, is routed to the
lane of the first protocol that accepts it, gets the instance's next sequence
number and Lamport time, and is handed to the durable outbox. Recording never
waits on the network. One worker thread per instance ships the lanes through
the transport (see :mod:`experience_sync.client.worker`).

Delivery guarantee: at-least-once across restarts; duplicates are absorbed by
the hub (idempotent event, batch and check-in ids).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experience_sync.errors import ConfigError, NotInitializedError

from .status import SyncStatus

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from experience_sync.client.instance import (
        Instance,
        empty_context,
        event_ids,
        memory_data,
        new_event,
    )
    from experience_sync.client.paths import instance_dir
    from experience_sync.config import ConfigSection, ExperienceSyncConfig, load_config
    from experience_sync.forgetting import ForgetRequest, event_matches
    from experience_sync.interfaces import SyncProtocol, Transport
    from experience_sync.models import (
        AgentState,
        CharacteristicData,
        EventContext,
        ExperienceEvent,
        InteractionData,
        KnowledgeData,
        SkillData,
        SkillUsageReport,
    )
    from experience_sync.plugins import ExperienceSyncPluginManager, get_plugin_manager
    from experience_sync.recall.models import SearchHit, SearchQuery

__all__ = ["ExperienceSyncManager", "SyncStatus"]

_MAX_SKILL_CONTEXTS = 20

#: What the manager's methods use, by module. They load when the first manager
#: is created (or :func:`with_endpoint` or :func:`protocol_names` is called),
#: not when this module is imported: the outbox, the worker, the pydantic
#: models, numpy (through the replica) and the plugin manager. Once loaded
#: they are plain globals of this module, so recording looks nothing up.
_RUNTIME: dict[str, tuple[str, ...]] = {
    "pydantic": ("ValidationError",),
    "experience_sync.client.instance": (
        "Instance", "empty_context", "event_ids", "memory_data", "new_event",
    ),
    "experience_sync.client.paths": ("instance_dir",),
    "experience_sync.config": ("ConfigSection", "load_config"),
    "experience_sync.forgetting": ("event_matches",),
    "experience_sync.interfaces": ("SyncProtocol",),
    "experience_sync.models": (
        "CharacteristicData", "EventContext", "ExperienceEvent", "InteractionData",
        "KnowledgeData", "SkillData", "SkillUsageReport",
    ),
    "experience_sync.plugins": ("get_plugin_manager",),
    "experience_sync.recall.models": ("SearchQuery",),
}
_loaded = False
_load_lock = threading.Lock()


def _load() -> None:
    """Bind the names of :data:`_RUNTIME` in this module, once per process."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        bound: dict[str, Any] = {}
        for module_name, names in _RUNTIME.items():
            module = importlib.import_module(module_name)
            bound.update((name, getattr(module, name)) for name in names)
        globals().update(bound)
        _loaded = True


def _context(context: EventContext | Mapping[str, Any] | None) -> EventContext:
    if context is None:
        return empty_context()
    if isinstance(context, EventContext):
        return context
    return EventContext.model_validate(dict(context))


def _agent_of(source_agent: Any) -> str | None:
    if source_agent is None or isinstance(source_agent, str):
        return source_agent
    for attr in ("agent_id", "id"):
        value = getattr(source_agent, attr, None)
        if value:
            return str(value)
    raise TypeError("source_agent must be an id string or an object with .agent_id or .id")


def with_endpoint(config: ExperienceSyncConfig, endpoint: str) -> ExperienceSyncConfig:
    """A copy of ``config`` whose transport URLs point at ``endpoint``.

    ``ws://``/``wss://`` set ``transport.websocket.url``; ``http(s)://`` set
    ``transport.https.endpoint`` and the ``endpoint_field`` of every plugin
    transport section present (``transport.mcp.server``). The same
    validation as in a config file applies (plain http only to loopback).
    """
    _load()
    cfg = config.model_copy(deep=True)
    scheme = endpoint.split(":", 1)[0].lower()
    try:
        if scheme in {"ws", "wss"}:
            cfg.transport.websocket.url = endpoint
        else:
            cfg.transport.https.endpoint = endpoint
            for reg in get_plugin_manager().registry.entries.get("config_sections", {}).values():
                model = reg.factory
                if not (isinstance(model, type) and issubclass(model, ConfigSection)):
                    continue
                if reg.name.startswith("transport.") and model.endpoint_field:
                    setattr(cfg.section(reg.name, model), model.endpoint_field, endpoint)
    except ValidationError as exc:
        raise ConfigError(
            [("endpoint", e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        ) from None
    return cfg


def protocol_names(
    protocol: str | Sequence[str] | None,
    config: ExperienceSyncConfig,
    pm: ExperienceSyncPluginManager | None = None,
) -> list[str]:
    """The protocols an instance runs, in routing order.

    Named ones run in the order given. Otherwise ``config.default_protocol``
    and every registered protocol whose class says it is ``enabled`` by the
    configuration, ordered by the classes' ``rank`` (ties by name): built-in
    and third-party protocols alike.
    """
    _load()
    if isinstance(protocol, str):
        return [protocol]
    if protocol is not None:
        return list(dict.fromkeys(protocol))
    registry = (pm or get_plugin_manager()).registry

    def cls_of(name: str) -> type[SyncProtocol] | None:
        factory = registry.entries.get("protocols", {}).get(name)
        made = factory.factory if factory is not None else None
        return made if isinstance(made, type) and issubclass(made, SyncProtocol) else None

    names = {config.default_protocol}
    for name in registry.names("protocols"):
        cls = cls_of(name)
        if cls is not None and cls.enabled(config):
            names.add(name)

    def rank(name: str) -> tuple[int, str]:
        cls = cls_of(name)
        return (cls.rank if cls is not None else SyncProtocol.rank, name)

    return sorted(names, key=rank)


_managers: weakref.WeakSet[ExperienceSyncManager] = weakref.WeakSet()


class ExperienceSyncManager:
    """Records experiences of agent instances and syncs them to their source agent.

    Thread-safe. Recording is cheap and never waits on the network; ``flush``
    and ``shutdown`` honour their timeouts and report whether everything was
    delivered. See ``docs/instances.md``.
    """

    def __init__(
        self,
        config: ExperienceSyncConfig | None = None,
        *,
        plugin_manager: ExperienceSyncPluginManager | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        _load()
        self.config = config
        self.pm = plugin_manager
        self.data_dir = data_dir
        self._instances: dict[str, Instance] = {}
        self._lock = threading.RLock()
        self._forked = False
        _managers.add(self)

    # ------------------------------------------------------------------ set-up

    def _plugin_manager(self) -> ExperienceSyncPluginManager:
        if self.pm is None:
            self.pm = get_plugin_manager()
        return self.pm

    def initialize_sync(
        self,
        instance_id: str,
        protocol: str | Sequence[str] | None = None,
        config: ExperienceSyncConfig | None = None,
        source_agent: str | Any | None = None,
        endpoint: str | None = None,
        *,
        agent_id: str | None = None,
        transport: Transport | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        """Start syncing ``instance_id`` to its source agent.

        :param protocol: a protocol name or several (routing order); ``None``
            runs ``config.default_protocol`` plus every enabled protocol section.
        :param source_agent: the source agent's id, or an object with
            ``.agent_id`` or ``.id``; ``agent_id`` is the keyword spelling.
        :param endpoint: overrides the configured transport URL.
        :param transport: a ready transport (tests, custom wiring) instead of
            the configured one.
        :param data_dir: base directory of outboxes; the instance's outbox is
            ``<data_dir>/<instance_id>/outbox.db``.
        """
        if not instance_id:
            raise ValueError("instance_id must not be empty")
        pm = self._plugin_manager()
        cfg = config or self.config or load_config()
        if endpoint:
            cfg = with_endpoint(cfg, endpoint)
        agent = agent_id or _agent_of(source_agent)
        if not agent:
            raise ValueError("initialize_sync needs the source agent: source_agent or agent_id")
        with self._lock:
            if instance_id in self._instances:
                self._shutdown_instance(self._instances.pop(instance_id), 5.0)
        names = protocol_names(protocol, cfg, pm)
        registry = pm.registry
        for name in names:
            registry.get("protocols", name)  # unknown names fail before anything opens
        base = data_dir or self.data_dir or cfg.outbox.data_dir
        inst = Instance.open(
            instance_id=instance_id, agent_id=agent, config=cfg, pm=pm, protocols=names,
            directory=instance_dir(instance_id, base), transport=transport,
        )
        with self._lock:
            self._instances[instance_id] = inst
        inst.start()

    def _get(self, instance_id: str) -> Instance:
        try:
            return self._instances[instance_id]
        except KeyError:
            hint = " (this process was forked: initialise again)" if self._forked else ""
            raise NotInitializedError(
                f"instance {instance_id!r} is not initialised; call initialize_sync first{hint}"
            ) from None

    # ------------------------------------------------------------------ recording

    def stream_event(
        self, instance_id: str, event: ExperienceEvent | Mapping[str, Any]
    ) -> ExperienceEvent:
        """Record one event (validated); never waits on the network.

        ``source_instance``, ``agent_id``, ``sequence`` and ``lamport`` are set
        by the instance.
        """
        inst = self._get(instance_id)
        if isinstance(event, ExperienceEvent):
            event = event.model_copy()
        else:
            values = dict(event)
            values["source_instance"] = instance_id
            values.setdefault("agent_id", inst.agent_id)
            event = ExperienceEvent.model_validate(values)
        return inst.record(event)

    def _emit_event(
        self,
        instance_id: str,
        event_type: str,
        data: BaseModel,
        priority: float,
        context: EventContext | Mapping[str, Any] | None,
    ) -> ExperienceEvent:
        inst = self._get(instance_id)
        if not 0.0 <= priority <= 1.0:
            raise ValueError(f"priority must be within 0..1, got {priority}")
        event = new_event(
            schema_version="1.0",
            event_id=event_ids.next(),
            timestamp=datetime.now(timezone.utc),
            source_instance=instance_id,
            agent_id=inst.agent_id,
            event_type=event_type,
            priority=float(priority),
            data=data,
            context=_context(context),
            sequence=0,
            lamport=0,
        )
        return inst.record(event)

    def record_memory(
        self,
        instance_id: str,
        content: str,
        *,
        tags: Sequence[str] = (),
        importance: float = 0.5,
        confidence: float = 0.8,
        priority: float | None = None,
        context: EventContext | Mapping[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
    ) -> ExperienceEvent:
        """Record a memory; its priority defaults to its importance."""
        data = memory_data(content, tags, importance, confidence, embedding)
        prio = importance if priority is None else priority
        return self._emit_event(instance_id, "memory", data, prio, context)

    def record_skill_use(
        self,
        instance_id: str,
        name: str,
        *,
        success: bool = True,
        proficiency: float | None = None,
        category: str = "general",
        context: str | None = None,
        priority: float | None = None,
    ) -> ExperienceEvent:
        """Record one use of a skill; the event carries the cumulative usage report.

        A name listed in ``merge_strategy.skill_aliases`` is recorded under
        its canonical name, so the uses of one tool add up however it is called.
        """
        inst = self._get(instance_id)
        name = inst.config.merge_strategy.skill_name(name)
        key = name.casefold()
        with inst.skill_lock:
            prev = inst.skills.get(key, {})
            usage = prev.get("usage", {})
            contexts = list(usage.get("contexts", []))
            if context and context not in contexts:
                contexts = [*contexts, context][-_MAX_SKILL_CONTEXTS:]
            report = SkillUsageReport(
                invocations=int(usage.get("invocations", 0)) + 1,
                successes=int(usage.get("successes", 0)) + (1 if success else 0),
                contexts=contexts,
                last_used=datetime.now(timezone.utc),
            )
            data = SkillData(
                name=name,
                category=category,
                proficiency=proficiency if proficiency is not None else prev.get("proficiency"),
                usage=report,
            )
            inst.skills[key] = {
                "proficiency": data.proficiency,
                "usage": {"invocations": report.invocations, "successes": report.successes,
                          "contexts": contexts},
            }
            return self._emit_event(
                instance_id, "skill", data, 0.5 if priority is None else priority, None
            )

    def record_knowledge(
        self,
        instance_id: str,
        content: str,
        *,
        subject: str | None = None,
        confidence: float = 0.7,
        evidence: str | None = None,
        priority: float | None = None,
    ) -> ExperienceEvent:
        """Record a piece of knowledge; its priority defaults to its confidence."""
        data = KnowledgeData(
            content=content, subject=subject, confidence=confidence, evidence=evidence
        )
        prio = confidence if priority is None else priority
        return self._emit_event(instance_id, "knowledge", data, prio, None)

    def record_characteristic(
        self,
        instance_id: str,
        key: str,
        value: Any,
        *,
        confidence: float = 0.7,
        priority: float | None = None,
    ) -> ExperienceEvent:
        """Record a trait or preference of the agent (``key`` -> ``value``)."""
        data = CharacteristicData(key=key, value=value, confidence=confidence)
        return self._emit_event(
            instance_id, "characteristic", data, 0.5 if priority is None else priority, None
        )

    def record_interaction(
        self,
        instance_id: str,
        summary: str | None = None,
        *,
        outcome: str | None = None,
        priority: float | None = None,
        **extra: Any,
    ) -> ExperienceEvent:
        """Record an interaction; extra keyword fields are kept as given."""
        data = InteractionData(summary=summary, outcome=outcome, **extra)
        return self._emit_event(
            instance_id, "interaction", data, 0.5 if priority is None else priority, None
        )

    # ------------------------------------------------------------------ delivery

    def flush(self, instance_id: str | None = None, timeout: float = 10.0) -> bool:
        """Ship everything recorded before the call; True iff all of it was acknowledged."""
        deadline = time.monotonic() + timeout
        with self._lock:
            targets = (
                [self._get(instance_id)] if instance_id is not None
                else list(self._instances.values())
            )
        ok = True
        for inst in targets:
            ok = self._flush_instance(inst, deadline) and ok
        return ok

    def _flush_instance(self, inst: Instance, deadline: float) -> bool:
        outbox, worker = inst.outbox, inst.worker
        assert worker is not None
        target = outbox.last_seq
        dead_before = outbox.counters.values.get("dead", 0)
        if not outbox.wait_durable(target, max(deadline - time.monotonic(), 0.0)):
            return False
        worker.force(target)
        pause = 0.002
        while True:
            first = outbox.min_outstanding()
            if first is None or first > target:
                return outbox.counters.values.get("dead", 0) == dead_before
            left = deadline - time.monotonic()
            if left <= 0 or not worker.alive:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Flush every instance, stop the workers and close the outboxes.

        Returns whether everything recorded was acknowledged in time; what was
        not stays in the outbox and is sent by the next run.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            instances = list(self._instances.values())
            self._instances.clear()
        ok = True
        for inst in instances:
            ok = self._shutdown_instance(inst, max(deadline - time.monotonic(), 0.0)) and ok
        return ok

    def _shutdown_instance(self, inst: Instance, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        ok = self._flush_instance(inst, deadline)
        worker = inst.worker
        assert worker is not None
        stopped = worker.stop(max(deadline - time.monotonic(), 0.0))
        if not stopped:
            inst.transport.close()  # interrupts a send still in progress
            stopped = worker.stop(1.0)
        if inst.replica is not None:
            inst.replica.close(min(2.0, max(deadline - time.monotonic(), 0.1)))
        inst.outbox.close(max(deadline - time.monotonic(), 1.0), reader_in_use=not stopped)
        inst.transport.close()
        inst.lock.release()
        return ok

    async def aflush(self, instance_id: str | None = None, timeout: float = 10.0) -> bool:
        """:meth:`flush` for async code (runs in a thread)."""
        import asyncio

        return await asyncio.to_thread(self.flush, instance_id, timeout)

    async def ashutdown(self, timeout: float = 10.0) -> bool:
        """:meth:`shutdown` for async code (runs in a thread)."""
        import asyncio

        return await asyncio.to_thread(self.shutdown, timeout)

    # ------------------------------------------------------------------ inspection

    def status(self, instance_id: str) -> SyncStatus:
        """Where the instance's sync stands."""
        inst = self._get(instance_id)
        worker = inst.worker
        assert worker is not None
        counters = dict(inst.outbox.counters.values)
        return SyncStatus(
            instance_id=instance_id,
            agent_id=inst.agent_id,
            last_sync=worker.last_sync,
            next_sync=worker.next_sync(),
            backlog_size=inst.outbox.size,
            is_syncing=worker.is_syncing,
            error=worker.error,
            protocols=[lane.name for lane in inst.lanes],
            transport=inst.transport.name,
            recorded=counters.get("recorded", 0),
            delivered=counters.get("delivered", 0),
            filtered=counters.get("filtered", 0),
            refused=counters.get("refused", 0),
            dead_lettered=counters.get("dead", 0),
            retries=counters.get("retries", 0),
            reasons=dict(inst.outbox.counters.reasons),
            data_dir=str(inst.outbox.path.parent),
        )

    def dead_letters(self, instance_id: str) -> list[dict[str, Any]]:
        """Events the hub refused for good, with status and reason."""
        return self._get(instance_id).outbox.dead_rows()

    def forget_unsent(
        self, instance_id: str, request: ForgetRequest, timeout: float = 10.0
    ) -> dict[str, int]:
        """Purge what the instance holds locally that ``request`` selects (a data-deletion request).

        Unsent outbox rows, dead letters and the local state a check-in would
        send: those whose event matches ``request``'s ``event_ids``,
        ``instance_ids``, ``subject`` or ``query`` (see
        :mod:`experience_sync.forgetting`; item ids are the hub's and match
        nothing here). Waits up to ``timeout`` for queued events to be
        committed first. Returns how many rows went, by table. Forget at the
        hub too: what was already sent is there.
        """
        outbox = self._get(instance_id).outbox
        outbox.wait_durable(outbox.last_seq, timeout)
        return outbox.purge(lambda event: event_matches(event, request))

    # ------------------------------------------------------------------ recall

    def search(
        self,
        instance_id: str,
        query: str,
        k: int = 5,
        *,
        kinds: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        min_confidence: float | None = None,
        knowledge_status: str = "integrated",
    ) -> list[SearchHit]:
        """What the fleet learned about ``query``, best first, from the instance's replica.

        Answers offline (the replica is local) and includes what this instance
        recorded that the hub has not merged yet (``hit.provenance.local``).
        Arguments as the hub's search route (``docs/recall.md``); a bad one
        raises :class:`pydantic.ValidationError`.
        """
        fields: dict[str, Any] = {
            "q": query, "k": k, "tags": list(tags or ()), "min_confidence": min_confidence,
            "knowledge_status": knowledge_status,
        }
        if kinds is not None:
            fields["kinds"] = [kinds] if isinstance(kinds, str) else list(kinds)
        search = SearchQuery.model_validate(fields)
        replica = self._get(instance_id).replica
        assert replica is not None
        return replica.search(search).hits

    def refresh(self, instance_id: str, timeout: float = 10.0) -> bool:
        """Pull what changed at the hub into the instance's replica now.

        Returns ``False`` when the hub could not be reached in time (the
        replica keeps what it had; the reason is logged as ``recall.error``).
        """
        replica = self._get(instance_id).replica
        assert replica is not None
        return replica.refresh(timeout)

    def pull(
        self, agent_id: str, since: int | None = None, *, instance_id: str | None = None
    ) -> AgentState:
        """Fetch the source agent's merged state (the changes since ``since``)."""
        with self._lock:
            if instance_id is not None:
                inst: Instance | None = self._get(instance_id)
            else:
                inst = next((i for i in self._instances.values() if i.agent_id == agent_id), None)
        if inst is not None:
            state = inst.transport.fetch_state(since)
            inst.outbox.observe_lamport(state.cursor)
            return state
        cfg = self.config or load_config()
        transport = self._plugin_manager().registry.create(
            "transports", cfg.transport.type, cfg, agent_id
        )
        try:
            result: AgentState = transport.fetch_state(since)
            return result
        finally:
            transport.close()

    def _after_fork(self) -> None:
        # The child has none of the parent's threads; sharing the outbox file would
        # double-assign sequence numbers. The child starts with no instances.
        self._lock = threading.RLock()
        for inst in self._instances.values():
            inst.outbox.abandon()
        self._instances = {}
        self._forked = True


def _shutdown_all() -> None:
    for manager in list(_managers):
        # At exit, report nothing more than the logging already did.
        with contextlib.suppress(Exception):
            manager.shutdown(timeout=5.0)


def _after_fork_in_child() -> None:
    for manager in list(_managers):
        manager._after_fork()


atexit.register(_shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
