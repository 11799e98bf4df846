"""Forgetting at the hub: remove experiences from the log and the state, for good.

:func:`forget` runs under the agent's lock:

1. it reads the agent's log and picks the event entries the
   :class:`~experience_sync.forgetting.ForgetRequest` selects (the item
   selectors are resolved against the current state: a memory's source
   events and superseded statements, every report of a knowledge key or a
   skill name);
2. it rebuilds the agent's state in memory from the log without them, request
   by request, exactly as :func:`~experience_sync.hub.replay.replay` does
   (:func:`~experience_sync.hub.replay.apply_group`);
3. it appends a *tombstone* entry (kind ``forget``, at the next cursor) and
   hands everything to :meth:`Store.forget
   <experience_sync.interfaces.Store.forget>`, which in one transaction
   rewrites the selected entries as redacted ``forgotten`` entries (their
   ids stay: a resend is answered as a duplicate), replaces the state and
   search documents, and records the audit entry.

Replay skips the redacted entries and honours the tombstone, so replaying
the log gives the live state. A pull from a cursor before the tombstone gets
the whole state with ``reset`` set, so replicas drop what was forgotten.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from experience_sync.forgetting import (
    ForgetRecord,
    ForgetRequest,
    ForgetResult,
    event_matches,
    event_text,
)
from experience_sync.hub.merge.knowledge import knowledge_key
from experience_sync.hub.replay import apply_group
from experience_sync.hub.retention import snapshot_agent, snapshot_body
from experience_sync.hub.runtime import AgentRuntime
from experience_sync.interfaces import Store
from experience_sync.models import new_id, utcnow
from experience_sync.stores.state import LogEntry, StoredAgent, StoredRow
from experience_sync.text import content_hash, normalize

if TYPE_CHECKING:
    from experience_sync.hub.engine import MergeEngine

__all__ = ["ForgetRefused", "Requester", "forget", "select_entries"]

# Log entry kinds a forget knows how to rebuild from.
_KNOWN_KINDS = frozenset({"event", "decision", "forget", "forgotten", "snapshot", "judgement"})
# Keys of a state row's JSON that name the instances it came from.
_SOURCE_KEYS = frozenset({"source_instances", "source_instance", "instance_id"})


class ForgetRefused(Exception):
    """The forget cannot run on this agent (``status`` 409) or this store (501)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Requester:
    """Who asks for a forget, for the audit trail."""

    def __init__(
        self, token_id: str | None = None, instance_id: str | None = None, scope: str | None = None
    ) -> None:
        self.token_id = token_id
        self.instance_id = instance_id
        self.scope = scope


def select_entries(
    rt: AgentRuntime, entries: Sequence[LogEntry], request: ForgetRequest
) -> set[str]:
    """The ids of the event entries of ``entries`` that ``request`` selects."""
    memory_events: set[str] = set()
    memory_hashes: set[str] = set()
    for mid in request.memory_ids:
        memory = rt.memory.memories.get(mid)
        if memory is not None:
            memory_events.update(memory.source_events)
            memory_events.update(s.event_id for s in memory.superseded)
            memory_hashes.add(memory.normalized_hash)
    knowledge_keys: set[str] = set()
    for kid in request.knowledge_ids:
        knowledge_keys.update((kid, "id:" + kid))
        for key, item in rt.knowledge.items.items():
            if kid in (key, item.knowledge_id):
                knowledge_keys.add(key)
                memory_events.update(v.event_id for v in item.verifications.values())
    skill_ids = set(request.skill_ids)
    skill_names = {
        normalize(rt.skills.skills[sid].name) for sid in skill_ids if sid in rt.skills.skills
    }
    selected: set[str] = set()
    for entry in entries:
        if entry.kind != "event":
            continue
        if entry.entry_id in memory_events or entry.instance_id in request.instance_ids:
            selected.add(entry.entry_id)
            continue
        raw = json.loads(entry.body)
        if event_matches(raw, request):
            selected.add(entry.entry_id)
            continue
        data = raw.get("data") or {}
        kind = raw.get("event_type")
        if kind == "memory" and (memory_hashes or request.memory_ids):
            if data.get("memory_id") in request.memory_ids or (
                content_hash(normalize(str(data.get("content", "")))) in memory_hashes
            ):
                selected.add(entry.entry_id)
        elif kind == "knowledge" and knowledge_keys:
            key = knowledge_key(
                data.get("knowledge_id"), data.get("subject"), str(data.get("content", ""))
            )
            if key in knowledge_keys:
                selected.add(entry.entry_id)
        elif kind == "skill" and skill_ids and (
            data.get("skill_id") in skill_ids
            or normalize(str(data.get("name", ""))) in skill_names
        ):
            selected.add(entry.entry_id)
    # A merge judge's decision goes with its event, and so does the event of
    # a decision whose merged text the request selects.
    needle = normalize(request.query) if request.query is not None else None
    for entry in entries:
        if entry.kind != "judgement":
            continue
        raw = json.loads(entry.body)
        merged = raw.get("merged_text")
        if raw.get("event_id") in selected or (
            needle and isinstance(merged, str) and needle in normalize(merged)
        ):
            selected.update((entry.entry_id, str(raw.get("event_id"))))
    return selected


def _sources(value: object) -> set[str]:
    out: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if key in _SOURCE_KEYS:
                    out.update(child if isinstance(child, list) else [child])
                else:
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return {s for s in out if isinstance(s, str)}


def _row_selected(table: str, row: StoredRow, request: ForgetRequest) -> bool:
    """Whether a state row of a compaction snapshot falls under ``request``.

    The events it was merged from are gone, so the row itself is judged: by
    its id, by any text it holds (the whole row, superseded statements
    included), by subject, and by its sources (all of them forgotten).
    """
    body = json.loads(row.body)
    if table == "memories" and row.key in request.memory_ids:
        return True
    if table == "skills" and row.key in request.skill_ids:
        return True
    if table == "knowledge" and request.knowledge_ids:
        ids = set(request.knowledge_ids) | {"id:" + k for k in request.knowledge_ids}
        if row.key in ids or (isinstance(body, dict) and body.get("knowledge_id") in ids):
            return True
    text = event_text({"data": body, "context": row.key})
    if request.query is not None and normalize(request.query) in text:
        return True
    if request.subject is not None:
        wanted = normalize(request.subject)
        if table == "characteristics" and normalize(row.key) == wanted:
            return True
        if table == "knowledge" and row.key == "subject:" + wanted:
            return True
        tags = body.get("tags") if isinstance(body, dict) else None
        if table == "memories" and any(normalize(str(t)) == wanted for t in tags or ()):
            return True
    if request.event_ids and set(request.event_ids) & set(json.dumps(body).split('"')):
        return True
    if request.instance_ids:
        sources = _sources(body)
        if sources and sources <= set(request.instance_ids):
            return True
    return False


def _forget_in_snapshot(entry: LogEntry, request: ForgetRequest) -> tuple[LogEntry, StoredAgent]:
    """The snapshot entry without the rows ``request`` selects, and the state it holds."""
    stored = snapshot_agent(entry)
    for table, rows in stored.rows.items():
        stored.rows[table] = [r for r in rows if not _row_selected(table, r, request)]
    kept = LogEntry(entry.entry_id, "snapshot", snapshot_body(stored), entry.unit_id,
                    entry.instance_id, entry.request)
    return kept, stored


def _rebuild(
    engine: MergeEngine, agent_id: str, entries: Sequence[LogEntry], forgotten: set[str],
    snapshot: StoredAgent | None = None,
) -> AgentRuntime:
    fresh = AgentRuntime(agent_id, engine.strategy, engine.pm)
    group: list[LogEntry] = []
    for entry in entries:
        if entry.kind == "snapshot":
            # The head of a compacted log: its (filtered) state, as replay loads it.
            assert snapshot is not None and not group
            fresh.load(snapshot)
            continue
        if group and entry.request != group[0].request:
            apply_group(fresh, group)
            group = []
        group.append(entry if entry.entry_id not in forgotten else LogEntry(
            entry.entry_id, "forgotten", "{}", entry.unit_id, entry.instance_id, entry.request
        ))
    if group:
        apply_group(fresh, group)
    return fresh


def _removed(before: AgentRuntime, after: AgentRuntime) -> dict[str, int]:
    pairs: dict[str, tuple[Mapping[str, object], Mapping[str, object]]] = {
        "memories": (before.memory.memories, after.memory.memories),
        "skills": (before.skills.skills, after.skills.skills),
        "knowledge": (before.knowledge.items, after.knowledge.items),
        "characteristics": (before.knowledge.characteristics, after.knowledge.characteristics),
        "reviews": (before.desk.reviews, after.desk.reviews),
    }
    return {name: len(set(old) - set(new)) for name, (old, new) in pairs.items()}


def forget(
    engine: MergeEngine,
    agent_id: str,
    request: ForgetRequest,
    requester: Requester | None = None,
) -> ForgetResult:
    """Forget what ``request`` selects from ``agent_id``; returns after the store committed it.

    On a compacted log the snapshot entry is rewritten without the state
    rows the request selects (judged by the rows themselves: the events they
    came from are gone). Raises :class:`ForgetRefused` when the store cannot
    forget (501) or the log holds an entry kind it does not know (409).
    """
    store = engine.store
    if not _implements(store):
        raise ForgetRefused(501, f"store {store.name!r} cannot forget")
    who = requester or Requester()
    forget_id = new_id()

    def work(rt: AgentRuntime) -> ForgetResult:
        entries = list(store.iter_log(agent_id))
        odd = {e.kind for e in entries} - _KNOWN_KINDS
        if odd:
            raise ForgetRefused(
                409, f"agent {agent_id!r}'s log holds {', '.join(sorted(odd))} entries, "
                "which a forget cannot rebuild from yet",
            )
        targets = select_entries(rt, entries, request)
        rewrites: dict[str, str] = {}
        snapshot: StoredAgent | None = None
        if entries and entries[0].kind == "snapshot":
            kept, snapshot = _forget_in_snapshot(entries[0], request)
            if kept.body != entries[0].body:
                rewrites[kept.entry_id] = kept.body
        fresh = _rebuild(engine, agent_id, entries, targets, snapshot)
        result = ForgetResult(
            forget_id=forget_id, agent_id=agent_id, dry_run=request.dry_run,
            cursor=rt.cursor, events_forgotten=len(targets), removed=_removed(rt, fresh),
            snapshot_rewritten=bool(rewrites),
        )
        if request.dry_run:
            return result
        cursor = rt.cursor + 1
        body = json.dumps(
            {"forget_id": forget_id, "timestamp": utcnow().isoformat(), "events": len(targets)}
        )
        tombstone = LogEntry(f"forget:{forget_id}", "forget", body, None, "hub", cursor)
        apply_group(fresh, [tombstone])
        changes = fresh.changeset([tombstone], None, True)
        changes.expect_version = rt.version
        if snapshot is not None:
            # The snapshot's rows are loaded, not changed: write them too (the
            # changed ones override them), with every item's search document.
            for table, rows in snapshot.rows.items():
                changed = {r.key for r in changes.rows.get(table, [])}
                merged = [r for r in rows if r.key not in changed] + changes.rows.get(table, [])
                if merged:
                    changes.rows[table] = merged
            changes.documents = fresh.documents()
        record = ForgetRecord(
            forget_id=forget_id, agent_id=agent_id, token_id=who.token_id,
            principal_instance=who.instance_id, principal_scope=who.scope,
            selectors=request.selectors(), instance_ids=list(request.instance_ids),
            events_forgotten=len(targets), removed=result.removed,
        )
        try:
            store.forget(agent_id, sorted(targets), forget_id, changes, record, rewrites)
        finally:
            # The state was replaced (or the commit failed): load it again,
            # and drop the search vectors built from the old one.
            engine._runtimes.pop(agent_id, None)
            engine.recall.forget(agent_id)
        engine._runtime(agent_id)
        result.cursor = cursor
        return result

    result = engine._under_lock(agent_id, work)
    if not request.dry_run:
        engine._notify(agent_id, [(
            "hub.forget", who.instance_id or "hub",
            {"forget_id": forget_id, "events": result.events_forgotten,
             "selectors": sorted(request.selectors())},
        )])
    return result


def _implements(store: Store) -> bool:
    return type(store).forget is not Store.forget
