"""TEMPORARY stand-in for experience_sync.hub.engine until the real engine lands.

Implements the contract in memory (dedup by event/unit id only), with the real
SQLite store for tokens. Removed once hub/engine.py is in git.
"""

from __future__ import annotations

import sys
import threading
import types
from dataclasses import dataclass
from typing import Any

from experience_sync.models import (
    AgentState,
    InstanceStatus,
    Memory,
    MergeResult,
    Review,
    utcnow,
)


@dataclass
class IngestMeta:
    protocol: str | None = None
    transport: str | None = None
    backlog: int | None = None


def open_store(url: str, pm: Any = None) -> Any:
    from experience_sync.builtin.store_sqlite import SQLiteStore

    return SQLiteStore(url)


class MergeEngine:
    def __init__(self, store: Any, strategy: Any = None, pm: Any = None) -> None:
        from experience_sync.plugins import get_plugin_manager

        self.store = store
        self.pm = pm or get_plugin_manager()
        self.lock = threading.Lock()
        self.seen: dict[str, set[str]] = {}
        self.units: dict[tuple[str, str], MergeResult] = {}
        self.mem: dict[str, list[Memory]] = {}
        self.inst: dict[str, dict[str, InstanceStatus]] = {}
        self.revs: dict[str, dict[str, Review]] = {}
        self.cursor = 0

    def _events(self, agent: str, instance: str, events: Any, meta: Any, unit: str | None, kind: str) -> MergeResult:
        with self.lock:
            if unit and (agent, unit) in self.units:
                r = self.units[(agent, unit)].model_copy(deep=True)
                r.duplicate = True
                return r
            r = MergeResult(agent_id=agent, unit_id=unit, events_received=len(events))
            seen = self.seen.setdefault(agent, set())
            for ev in events:
                if ev.event_id in seen:
                    r.duplicate_event_ids.append(ev.event_id)
                    continue
                seen.add(ev.event_id)
                r.accepted_event_ids.append(ev.event_id)
                if ev.event_type == "memory":
                    now = utcnow()
                    self.mem.setdefault(agent, []).append(Memory(memory_id=ev.event_id, content=ev.memory.content, normalized_hash="x", created_at=now, updated_at=now, source_instances=[instance]))
                    r.memories_added += 1
                if ev.event_type == "characteristic":
                    rid = "rev-" + ev.event_id
                    self.revs.setdefault(agent, {})[rid] = Review(review_id=rid, kind="characteristic", key="k", current={}, proposed={"v": 1}, event_id=ev.event_id, instance_id=instance, created_at=utcnow())
            self.cursor += 1
            r.cursor = self.cursor
            st = self.inst.setdefault(agent, {}).setdefault(instance, InstanceStatus(instance_id=instance))
            st.last_sync = utcnow()
            st.protocol = meta.protocol if meta else None
            st.transport = meta.transport if meta else None
            st.backlog = meta.backlog if meta else None
            st.total_events += len(r.accepted_event_ids)
            if unit:
                self.units[(agent, unit)] = r
        self.pm.emit(kind, agent_id=agent, instance_id=instance, data={"events": len(events)})
        return r

    def ingest_events(self, agent_id: str, request: Any, meta: Any = None) -> MergeResult:
        return self._events(agent_id, request.instance_id, request.events, meta, None, "sync.event")

    def ingest_batch(self, agent_id: str, batch: Any, meta: Any = None) -> MergeResult:
        return self._events(agent_id, batch.instance_id, batch.events, meta, batch.batch_id, "sync.batch")

    def ingest_checkin(self, agent_id: str, checkin: Any, meta: Any = None) -> MergeResult:
        return self._events(agent_id, checkin.instance_id, checkin.events, meta, checkin.checkin_id, "sync.check_in")

    def state(self, agent_id: str, since: int | None = None) -> AgentState:
        return AgentState(agent_id=agent_id, cursor=self.cursor, memories=list(self.mem.get(agent_id, [])))

    def memories(self, agent_id: str, q: str | None = None, offset: int = 0, limit: int = 50) -> tuple[list[Memory], int]:
        items = [m for m in self.mem.get(agent_id, []) if not q or q.lower() in m.content.lower()]
        return items[offset : offset + limit], len(items)

    def skills(self, agent_id: str) -> list[Any]:
        return []

    def knowledge(self, agent_id: str, status: str | None = None) -> list[Any]:
        return []

    def instances(self, agent_id: str) -> list[InstanceStatus]:
        return list(self.inst.get(agent_id, {}).values())

    def reviews(self, agent_id: str, status: str | None = "open") -> list[Review]:
        return [r for r in self.revs.get(agent_id, {}).values() if status is None or r.status == status]

    def decide_review(self, agent_id: str, review_id: str, accept: bool) -> Review:
        r = self.revs.get(agent_id, {})[review_id]
        if r.status != "open":
            raise ValueError("already decided")
        r.status = "accepted" if accept else "rejected"
        self.pm.emit("review.decided", agent_id=agent_id, data={"review_id": review_id})
        return r

    def agents(self) -> list[str]:
        return sorted(self.mem)

    def close(self) -> None:
        pass


def install() -> None:
    try:
        import experience_sync.hub.engine  # noqa: F401
    except ImportError:
        mod = types.ModuleType("experience_sync.hub.engine")
        for name in ("IngestMeta", "MergeEngine", "open_store"):
            setattr(mod, name, globals()[name])
        sys.modules["experience_sync.hub.engine"] = mod
