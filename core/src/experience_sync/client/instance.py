"""One initialised instance: its outbox, transport, lanes and the recording path."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from experience_sync.client.outbox import Outbox
from experience_sync.client.paths import InstanceLock
from experience_sync.client.state import state_key
from experience_sync.client.worker import Lane, SyncWorker
from experience_sync.config import ExperienceSyncConfig
from experience_sync.interfaces import ProtocolContext, Transport
from experience_sync.models import EventContext, ExperienceEvent, MemoryData
from experience_sync.plugins import ExperienceSyncPluginManager
from experience_sync.recall.replica import Replica

_FIELDS = frozenset(ExperienceEvent.model_fields)
_setattr = object.__setattr__
_new_event = ExperienceEvent.__new__
_new_context = EventContext.__new__


class _EventIds:
    """Event ids: a random per-process prefix and a counter (unique, no syscall per id).

    ``os.urandom`` per event costs a system call; the prefix is drawn once per
    process (again in a forked child) so ids never repeat across restarts.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex() + "-"
        self.counter = itertools.count(1)

    def next(self) -> str:
        return self.prefix + str(next(self.counter))


event_ids = _EventIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=event_ids.reset)


def empty_context() -> EventContext:
    """A new empty :class:`EventContext`, without running validation."""
    ctx = _new_context(EventContext)
    _setattr(
        ctx,
        "__dict__",
        {"task_id": None, "conversation_id": None, "trigger": None, "environment": {}},
    )
    _setattr(ctx, "__pydantic_fields_set__", set())
    _setattr(ctx, "__pydantic_extra__", None)
    _setattr(ctx, "__pydantic_private__", None)
    return ctx


_new_memory = MemoryData.__new__
_MEMORY_SET = frozenset({"content", "tags", "importance", "confidence", "embedding"})


def memory_data(
    content: Any, tags: Any, importance: Any, confidence: Any, embedding: Any
) -> MemoryData:
    """A validated :class:`MemoryData`, without pydantic for plain well-formed input.

    The shortcut takes only what ``MemoryData`` accepts unchanged (a non-empty
    ``str`` of at most 100,000 characters, a list or tuple of ``str``, numbers
    within 0..1, no embedding); anything else goes through pydantic, which
    raises the usual errors. ``tests/client/test_manager.py`` checks that
    both paths agree.
    """
    ok = (
        embedding is None
        and type(content) is str
        and 0 < len(content) <= 100_000
        and (type(importance) is float or type(importance) is int)
        and 0.0 <= importance <= 1.0
        and (type(confidence) is float or type(confidence) is int)
        and 0.0 <= confidence <= 1.0
        and (type(tags) is tuple or type(tags) is list)
    )
    if ok:
        for tag in tags:
            if type(tag) is not str:
                ok = False
                break
    if ok:
        data = _new_memory(MemoryData)
        _setattr(
            data,
            "__dict__",
            {
                "content": content,
                "memory_id": None,
                "memory_type": "episodic",
                "tags": list(tags),
                "importance": float(importance),
                "confidence": float(confidence),
                "embedding": None,
            },
        )
        _setattr(data, "__pydantic_fields_set__", set(_MEMORY_SET))
        _setattr(data, "__pydantic_extra__", None)
        _setattr(data, "__pydantic_private__", None)
        return data
    return MemoryData(
        content=content,
        tags=list(tags) if isinstance(tags, (list, tuple)) else tags,
        importance=importance,
        confidence=confidence,
        embedding=list(embedding) if embedding is not None else None,
    )


def json_default(obj: Any) -> Any:
    """The JSON form of a pydantic model, for ``json.dumps(default=...)``; else ``TypeError``."""
    # Our models are already valid; dumping their __dict__ skips pydantic's serializer.
    if isinstance(obj, BaseModel):
        extra = obj.__pydantic_extra__
        return {**obj.__dict__, **extra} if extra else obj.__dict__
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def new_event(**values: Any) -> ExperienceEvent:
    """An :class:`ExperienceEvent` of already validated ``values``, not validated again."""
    # The parts were validated by their own models; building the envelope without
    # re-validation keeps recording cheap (pydantic's model_construct costs ~12 µs).
    event = _new_event(ExperienceEvent)
    _setattr(event, "__dict__", values)
    _setattr(event, "__pydantic_fields_set__", set(_FIELDS))
    _setattr(event, "__pydantic_extra__", None)
    _setattr(event, "__pydantic_private__", None)
    return event


def encode_event(values: dict[str, Any]) -> bytes:
    """The JSON body of an event's fields (what the outbox stores).

    ``data`` and ``context`` are swapped for their field dicts while orjson
    runs: cheaper than a copy of the event or a callback per nested model
    (deeper models, such as a skill's usage report, still use
    :func:`json_default`).
    """
    data = values["data"]
    ctx = values["context"]
    try:
        if isinstance(data, BaseModel):
            values["data"] = json_default(data)
        if isinstance(ctx, BaseModel):
            values["context"] = ctx.__dict__
        return orjson.dumps(values, default=json_default)
    finally:
        values["data"] = data
        values["context"] = ctx


class Instance:
    """Everything one initialised instance owns."""

    def __init__(
        self,
        *,
        instance_id: str,
        agent_id: str,
        config: ExperienceSyncConfig,
        pm: ExperienceSyncPluginManager,
        outbox: Outbox,
        transport: Transport,
        lanes: list[Lane],
        lock: InstanceLock,
    ) -> None:
        self.instance_id = instance_id
        self.agent_id = agent_id
        self.config = config
        self.pm = pm
        self.outbox = outbox
        self.transport = transport
        self.lanes = lanes
        self._routes = [(lane.name, lane.protocol.accepts) for lane in lanes]
        self.lock = lock
        self.worker: SyncWorker | None = None
        self.skills: dict[str, dict[str, Any]] = outbox.skills()
        self.skill_lock = threading.Lock()
        self._filters: list[Any] = []
        self._filters_generation = -1
        #: The local replica of the source agent (set by the manager).
        self.replica: Replica | None = None

    @classmethod
    def open(
        cls,
        *,
        instance_id: str,
        agent_id: str,
        config: ExperienceSyncConfig,
        pm: ExperienceSyncPluginManager,
        protocols: Sequence[str],
        directory: Path,
        transport: Transport | None = None,
    ) -> Instance:
        """Build an instance in order: lock, outbox, transport, lanes, worker, replica.

        Nothing runs yet (see :meth:`start`); whatever was opened is closed
        again if a later step fails.
        """
        registry = pm.registry
        with contextlib.ExitStack() as undo:
            lock = InstanceLock(directory / "outbox.lock")
            undo.callback(lock.release)
            outbox = Outbox(directory / "outbox.db", config.outbox, encode=encode_event)
            undo.callback(outbox.close)
            if transport is None:
                transport = registry.create("transports", config.transport.type, config, agent_id)
            context = ProtocolContext(
                instance_id=instance_id,
                agent_id=agent_id,
                started_at=time.monotonic(),
                state=outbox.snapshot,
                summary=outbox.summary,
            )
            lanes = [Lane(n, registry.create("protocols", n, config, context)) for n in protocols]
            outbox.state.keep_memories = any(lane.protocol.uses_state for lane in lanes)
            outbox.adopt_lanes([lane.name for lane in lanes])
            inst = cls(
                instance_id=instance_id, agent_id=agent_id, config=config, pm=pm, outbox=outbox,
                transport=transport, lanes=lanes, lock=lock,
            )
            outbox.on_full = lambda reason: inst.emit(
                "outbox.full", data={"reason": reason, "max_events": config.outbox.max_events}
            )
            inst.worker = SyncWorker(
                outbox=outbox, transport=transport, lanes=lanes, context=context,
                emit=inst.emit, send_timeout=float(transport.timeout),
            )
            outbox.on_commit = inst.worker.notify
            inst.replica = inst._open_replica(directory / "replica.db")
            undo.pop_all()
        return inst

    def _open_replica(self, path: Path) -> Replica:
        recall = self.config.recall
        registry = self.pm.registry
        embedder = None
        if recall.embedder:
            embedder = registry.create("embedders", recall.embedder, self.config.merge_strategy)
        return Replica(
            path,
            self.agent_id,
            recall,
            self.transport,
            self.acknowledged_below,
            rankers=[registry.create("rankers", n, recall) for n in recall.rankers],
            rerankers=[registry.create("rerankers", n, recall) for n in recall.rerankers],
            embedder=embedder,
            emit=self.emit,
        )

    def start(self) -> None:
        """Start the worker and the replica; ship what a previous run left in the outbox."""
        assert self.worker is not None and self.replica is not None
        self.worker.start()
        self.replica.start()
        self.worker.notify()
        self.emit(
            "sync.init",
            data={
                "protocols": [lane.name for lane in self.lanes],
                "transport": self.transport.name,
                "backlog": self.outbox.size,
                "data_dir": str(self.outbox.path.parent),
            },
        )

    def emit(self, type: str, **fields: Any) -> None:
        """Emit an observability event of ``type``, for this instance unless ``fields`` say."""
        fields.setdefault("agent_id", self.agent_id)
        fields.setdefault("instance_id", self.instance_id)
        self.pm.emit(type, **fields)

    def _filter_impls(self) -> list[Any]:
        gen = self.pm.generation
        if gen != self._filters_generation:
            # pluggy's order: tryfirst, then newest-registered first, then trylast
            self._filters = self.pm.ordered_impls("experience_sync_filter_event")
            self._filters_generation = gen
        return self._filters

    def record(self, event: ExperienceEvent) -> ExperienceEvent:
        """Filter ``event``, route it to a protocol's lane and write it to the outbox.

        Returns the event as written, stamped with this instance and agent. An
        event a filter hook drops or fails on, or that no lane accepts, is not
        written: it is counted, reported as ``sync.filtered`` and returned.
        """
        original = event
        for impl in self._filter_impls():
            try:
                result = impl.function(event=event)
            except Exception as exc:  # fail closed: an event a redactor chokes on is not sent
                return self._filtered(original, "filter_error", f"{impl.plugin_name}: {exc}")
            if result is None:
                return self._filtered(original, "filter_hook", impl.plugin_name)
            event = result
        lane = None
        for name, accepts in self._routes:
            if accepts(event):
                lane = name
                break
        if lane is None:
            return self._filtered(event, "below_priority_threshold", None)
        values = event.__dict__
        values["source_instance"] = self.instance_id
        values["agent_id"] = self.agent_id
        kind = event.event_type
        if kind == "memory":
            self.outbox.add(lane, values, kind)
        else:
            key = state_key(kind, event.data)
            self.outbox.add(lane, values, None if kind == "interaction" else kind, key)
        replica = self.replica
        if replica is not None and (kind == "memory" or kind == "knowledge"):
            replica.note(event)
        return event

    def acknowledged_below(self) -> int:
        """The smallest sequence the hub has not acknowledged (everything below is merged)."""
        watermark = self.outbox.watermark()
        lowest = self.outbox.min_outstanding()
        return lowest if lowest is not None else watermark + 1

    def _filtered(self, event: ExperienceEvent, reason: str, detail: str | None) -> ExperienceEvent:
        self.outbox.count("filtered", reason)
        self.emit(
            "sync.filtered",
            data={
                "reason": reason,
                "detail": detail,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "priority": event.priority,
            },
        )
        return event


