"""Retention and log compaction: what keeps an agent's log from growing forever.

Two operations, both safe on a running hub (they take the agent's lock, as
an ingestion does) and both leaving :func:`~experience_sync.hub.replay.replay`
exact:

- :func:`expire` (retention by age): an ``interaction`` event older than
  ``retention.interactions`` (by its own timestamp) keeps its log entry (id,
  position, timestamp, sender) but loses its payload and context. Interactions
  are only counted in the state, so replay counts them the same.
- :func:`expire_items` (retention by age of merged items): a memory nothing
  reinforced for ``retention.memories`` and a pending knowledge item nobody
  reported for ``retention.pending_knowledge`` are forgotten, through the same
  :func:`~experience_sync.hub.forget.forget` an admin's request runs (the
  events they came from are rewritten out of the log, the audit trail names
  the retention scope).
- :func:`compact`: the agent's materialized state becomes one ``snapshot``
  log entry that replaces every entry it covers (all of them, at the time of
  the compaction). The removed entries' ids stay known to the store, so an
  event sent again after a compaction is still a duplicate; replay loads the
  snapshot and merges the entries after it.

:class:`Maintenance` runs both on a schedule inside ``experience-sync serve``
(the ``[retention]`` table of the config); ``experience-sync retention`` and
``experience-sync compact`` run them once against a store.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from experience_sync.config import RetentionConfig
from experience_sync.forgetting import ForgetRequest
from experience_sync.models import EventContext, ExperienceEvent, InteractionData, utcnow
from experience_sync.stores.state import TABLES, LogEntry, StoredAgent, StoredRow

if TYPE_CHECKING:
    from experience_sync.hub.engine import MergeEngine
    from experience_sync.hub.runtime import AgentRuntime

__all__ = [
    "SNAPSHOT_FORMAT",
    "Maintenance",
    "MaintenanceReport",
    "compact",
    "expire",
    "expire_items",
    "snapshot_agent",
    "snapshot_body",
]

log = logging.getLogger("experience_sync.hub.retention")

#: The version of a snapshot entry's body; replay refuses another.
SNAPSHOT_FORMAT = 1
#: The state tables a snapshot holds: instance statuses are operational
#: (wall clock), not derived from the log, and stay where they are.
SNAPSHOT_TABLES = tuple(t for t in TABLES if t != "instances")
# Cheap test before parsing a body: the engine logs events as compact JSON.
_INTERACTION = '"event_type":"interaction"'


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def snapshot_body(stored: StoredAgent) -> str:
    """The JSON body of a ``snapshot`` log entry holding ``stored``'s state rows."""
    rows = {
        table: [
            [r.key, r.version, r.body, r.content_hash, _b64(r.embedding), r.normalized]
            for r in stored.rows.get(table, [])
        ]
        for table in SNAPSHOT_TABLES
    }
    return json.dumps(
        {"format": SNAPSHOT_FORMAT, "cursor": stored.cursor, "meta": stored.meta, "rows": rows},
        separators=(",", ":"),
    )


def snapshot_agent(entry: LogEntry) -> StoredAgent:
    """The state a ``snapshot`` log entry holds (raises ``ValueError`` on another format)."""
    data: dict[str, Any] = json.loads(entry.body)
    if data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(
            f"log entry {entry.entry_id!r} is a snapshot of format {data.get('format')!r}; "
            f"this version reads format {SNAPSHOT_FORMAT}"
        )
    rows = {
        table: [
            StoredRow(
                key, version, body, content_hash,
                None if emb is None else base64.b64decode(emb), normalized,
            )
            for key, version, body, content_hash, emb, normalized in data["rows"].get(table, [])
        ]
        for table in SNAPSHOT_TABLES
    }
    return StoredAgent(cursor=int(data["cursor"]), meta=data["meta"], rows=rows)


def compact(engine: MergeEngine, agent_id: str) -> int:
    """Replace the agent's log by a snapshot of its state; how many entries it replaced.

    Nothing happens (0) for an agent without state or whose log is already
    just its snapshot.
    """

    def work(rt: AgentRuntime) -> int:
        stored = engine.store.load_agent(agent_id)
        if stored.cursor == 0:
            return 0
        entry = LogEntry(
            f"snapshot:{stored.cursor}", "snapshot", snapshot_body(stored), None, "hub",
            stored.cursor,
        )
        versioned = engine.store.agent_version(agent_id) is not None
        head = next(iter(engine.store.iter_log(agent_id)), None)
        if head is not None and head.entry_id == entry.entry_id:
            # Only the snapshot of this very cursor is left, or entries after it.
            return 0
        return engine.store.compact(
            agent_id, entry, expect_version=stored.version if versioned else None
        )

    return engine._under_lock(agent_id, work)


def _expired(ev: ExperienceEvent) -> ExperienceEvent | None:
    """The event without its payload and context, or ``None`` if it holds neither."""
    data = ev.data
    empty_data = (
        isinstance(data, InteractionData)
        and data.summary is None
        and data.outcome is None
        and not data.__pydantic_extra__
    )
    if empty_data and ev.context == EventContext():
        return None
    return ev.model_copy(update={"data": InteractionData(), "context": EventContext()})


def expire(
    engine: MergeEngine, agent_id: str, retention: RetentionConfig, now: datetime | None = None
) -> int:
    """Drop the payload of the agent's interactions older than ``retention.interactions``.

    Returns how many log entries were rewritten (0 when no interaction
    retention is configured).
    """
    age = retention.interactions_seconds
    if age is None:
        return 0
    cutoff = (now or utcnow()) - timedelta(seconds=age)
    bodies: dict[str, str] = {}
    for entry in engine.store.iter_log(agent_id):
        if entry.kind != "event" or _INTERACTION not in entry.body:
            continue
        ev = entry.event
        if ev.event_type != "interaction" or ev.timestamp >= cutoff:
            continue
        stripped = _expired(ev)
        if stripped is not None:
            bodies[entry.entry_id] = stripped.model_dump_json()
    if not bodies:
        return 0
    with engine._lock(agent_id):
        return engine.store.rewrite_log(agent_id, bodies)


def expire_items(
    engine: MergeEngine, agent_id: str, retention: RetentionConfig, now: datetime | None = None
) -> dict[str, int]:
    """Forget the agent's memories and pending knowledge older than their retention ages.

    A memory's age is its ``updated_at`` (the newest event that added to it),
    a pending knowledge item's the newest of its reports (``first_seen`` when
    none is left). Returns what was removed (``{"memories": n, "knowledge":
    n}``; empty when nothing was old enough or no age is configured).
    """
    from experience_sync.hub.forget import Requester, forget

    mem_age, know_age = retention.memories_seconds, retention.pending_knowledge_seconds
    if mem_age is None and know_age is None:
        return {}
    at = now or utcnow()
    state = engine.state(agent_id)
    memory_ids: list[str] = []
    if mem_age is not None:
        cutoff = at - timedelta(seconds=mem_age)
        memory_ids = [m.memory_id for m in state.memories if m.updated_at < cutoff]
    knowledge_ids: list[str] = []
    if know_age is not None:
        cutoff = at - timedelta(seconds=know_age)
        for item in state.knowledge:
            if item.status != "pending":
                continue
            newest = max((v.timestamp for v in item.verifications.values()), default=item.first_seen)
            if newest < cutoff:
                knowledge_ids.append(item.knowledge_id)
    if not memory_ids and not knowledge_ids:
        return {}
    # One forget (one rebuild of the agent), however many items: the id cap
    # of a request on the wire is for what one client may ask at once.
    request = ForgetRequest.model_construct(memory_ids=memory_ids, knowledge_ids=knowledge_ids)
    result = forget(engine, agent_id, request, Requester(scope="retention"))
    removed = {k: result.removed.get(k, 0) for k in ("memories", "knowledge")}
    return {k: v for k, v in removed.items() if v}


@dataclass
class MaintenanceReport:
    """What one maintenance pass did, per agent: ``{agent_id: count}``.

    ``forgotten`` is per agent what retention of merged items removed
    (``{"memories": n, "knowledge": n}``).
    """

    expired: dict[str, int] = field(default_factory=dict)
    forgotten: dict[str, dict[str, int]] = field(default_factory=dict)
    compacted: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class Maintenance:
    """Applies the ``[retention]`` configuration to every agent, now or on a schedule.

    :param engine: the hub's merge engine (and so its store).
    :param config: what to expire and whether to compact.
    """

    def __init__(self, engine: MergeEngine, config: RetentionConfig) -> None:
        self.engine = engine
        self.config = config
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """Whether the configuration asks for anything."""
        return self.config.expires_anything or self.config.compact

    def run_once(self, now: datetime | None = None) -> MaintenanceReport:
        """One pass over every agent: expire, forget what aged out, then compact (if configured).

        An agent that fails is reported and logged; the others still run.
        """
        report = MaintenanceReport()
        for agent_id in self.engine.agents():
            if self._stop.is_set():
                break
            try:
                expired = expire(self.engine, agent_id, self.config, now)
                if expired:
                    report.expired[agent_id] = expired
                forgotten = expire_items(self.engine, agent_id, self.config, now)
                if forgotten:
                    report.forgotten[agent_id] = forgotten
                if self.config.compact:
                    removed = compact(self.engine, agent_id)
                    if removed:
                        report.compacted[agent_id] = removed
            except Exception as exc:
                log.exception("retention of agent %s failed", agent_id)
                report.failed[agent_id] = f"{type(exc).__name__}: {exc}"
        return report

    def start(self) -> None:
        """Run :meth:`run_once` every ``retention.interval`` on a daemon thread."""
        if self._thread is not None or not self.active:
            return

        def loop() -> None:
            while not self._stop.wait(self.config.interval_seconds):
                report = self.run_once()
                if report.expired or report.forgotten or report.compacted:
                    log.info(
                        "retention: %d interaction(s) expired, %d memories and %d pending "
                        "knowledge item(s) forgotten, %d log entries compacted",
                        sum(report.expired.values()),
                        sum(f.get("memories", 0) for f in report.forgotten.values()),
                        sum(f.get("knowledge", 0) for f in report.forgotten.values()),
                        sum(report.compacted.values()),
                    )

        self._thread = threading.Thread(target=loop, name="xs-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the schedule (a pass under way ends after its current agent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
