"""Log replay: rebuild an agent's state from its stored log, deterministically.

The ``experience-sync replay`` command runs :func:`replay`. Everything the
merge derives comes from the logged events (their timestamps, never the wall
clock), so replaying a log under the same merge configuration reproduces the
live state exactly; under another configuration it gives what the hub would
hold had it always run that one. A merge judge is the exception: its
decisions are read from the log (``judgement`` entries), whatever
``merge_strategy.judge`` says, and no judge is ever called.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine
from experience_sync.hub.merge.conflicts import MergeContext
from experience_sync.hub.merge.judging import JUDGEMENT_KIND, Judgement
from experience_sync.hub.runtime import AgentRuntime
from experience_sync.interfaces import Store
from experience_sync.models import AgentState, InstanceStatus, MergeResult
from experience_sync.plugins import ExperienceSyncPluginManager
from experience_sync.stores.state import ChangeSet, LogEntry

__all__ = ["apply_group", "replay"]

# Replay commits every this many log entries (at a request boundary).
_REPLAY_COMMIT_EVERY = 5000


def replay(
    source: Store,
    agent_id: str,
    strategy: MergeStrategyConfig,
    target: Store | None = None,
    pm: ExperienceSyncPluginManager | None = None,
) -> AgentState:
    """Rebuild an agent's state from ``source``'s log, deterministically.

    With ``target`` ``None`` (or ``source``) the state is rebuilt in place
    (the log, applied units, tokens and instance statuses stay); otherwise
    the agent's log, applied units and instance statuses are copied into
    ``target``, which must not hold the agent yet (tokens are not copied).
    Review decisions in the log are applied again; those naming a review the
    new strategy does not open are skipped. Run it against a stopped hub.
    """
    in_place = target is None or target is source
    dest = source if in_place else target
    assert dest is not None
    if in_place:
        source.reset_state(agent_id)
    elif agent_id in dest.agents():
        raise ValueError(f"the target store already holds agent {agent_id!r}")
    # No judge is built, let alone asked: the log holds each of its decisions.
    strategy = strategy.model_copy(update={"judge": "rules"})
    engine = MergeEngine(dest, strategy, pm, emit=False)
    _rebuild(engine, agent_id, source, copy=not in_place)
    return engine.state(agent_id)


def apply_group(rt: AgentRuntime, group: Sequence[LogEntry]) -> None:
    """Apply one request's log entries (they share ``request``) to ``rt``, as the live merge did.

    Events merge, decisions decide again, a merge judge's logged
    ``judgement`` decides its pair (no judge is asked), a ``forget``
    tombstone marks its cursor and ``forgotten`` (redacted) entries are
    skipped: what they held is gone, and the state is what the log without
    them gives.
    """
    ctx = MergeContext(cursor=group[0].request, replay=True)
    # An event's place among the request's entries, as the live merge counted
    # it: events first (a forgotten one keeps its place), judgements after.
    places = [e for e in group if e.kind in ("event", "forgotten")]
    ctx.positions = {e.entry_id: i for i, e in enumerate(places) if e.kind == "event"}
    ctx.position_base = len(places)
    for e in group:
        if e.kind == JUDGEMENT_KIND:
            judgement = Judgement.from_body(e.body)
            ctx.judgements[judgement.event_id] = judgement
    events = [e.event for e in group if e.kind == "event"]
    if events:
        rt.apply_events(ctx, events)
    for e in group:
        if e.kind == "decision":
            body = json.loads(e.body)
            rt.apply_decision(
                ctx, body["review_id"], bool(body["accept"]),
                datetime.fromisoformat(body["timestamp"]),
            )
        elif e.kind == "forget":
            rt.forgotten_at = max(rt.forgotten_at, e.request)
    rt.cursor = max(rt.cursor, ctx.cursor)
    rt.finish()


def _rebuild(engine: MergeEngine, agent_id: str, source: Store, copy: bool) -> None:
    """Rebuild the agent from ``source``'s log; ``copy``: into ``engine``'s (new) store.

    A copy also takes what the log does not hold: the applied unit ids
    with their results (so a re-sent batch is still a duplicate) and the
    instance statuses.
    """
    # The engine's own lock, runtime and commit, so that a failed commit
    # drops the half-built state exactly as it does for a live ingestion.
    with engine._lock(agent_id):
        rt = engine._runtime(agent_id)
        if copy:
            # Read before the rebuild grows, and dropped at once: only the
            # instance rows of the source's state are wanted.
            for row in source.load_agent(agent_id).rows.get("instances", []):
                status = InstanceStatus.model_validate_json(row.body)
                rt.instances[status.instance_id] = status
                rt.instances_dirty[status.instance_id] = None
        group: list[LogEntry] = []
        pending: list[LogEntry] = []

        def flush() -> None:
            if not group:
                return
            apply_group(rt, group)
            group.clear()

        for entry in source.iter_log(agent_id):
            if entry.kind == "snapshot":
                # A compacted log: the state the snapshot holds replaces
                # everything before it (see experience_sync.hub.retention).
                flush()
                pending.append(entry)
                _load_snapshot(engine, rt, agent_id, entry, pending if copy else [])
                pending = []
                continue
            if group and entry.request != group[0].request:
                flush()
                if len(pending) >= _REPLAY_COMMIT_EVERY:
                    engine._commit(agent_id, rt.changeset(pending if copy else [], None, True))
                    pending = []
            group.append(entry)
            pending.append(entry)
        flush()
        engine._commit(agent_id, rt.changeset(pending if copy else [], None, True))
        if copy:
            seen: list[str] = []
            for entry_id in source.iter_compacted(agent_id):
                seen.append(entry_id)
                if len(seen) >= _REPLAY_COMMIT_EVERY:
                    engine._commit(agent_id, ChangeSet(cursor=rt.cursor, seen=seen))
                    seen = []
            if seen:
                engine._commit(agent_id, ChangeSet(cursor=rt.cursor, seen=seen))
            units: list[tuple[str, MergeResult]] = []
            for unit in source.iter_units(agent_id):
                units.append(unit)
                if len(units) >= _REPLAY_COMMIT_EVERY:
                    engine._commit(agent_id, ChangeSet(cursor=rt.cursor, units=units))
                    units = []
            if units:
                engine._commit(agent_id, ChangeSet(cursor=rt.cursor, units=units))


def _load_snapshot(
    engine: MergeEngine, rt: AgentRuntime, agent_id: str, entry: LogEntry, log: list[LogEntry]
) -> None:
    """Load a snapshot entry's state into ``rt`` and commit it whole (with ``log``)."""
    from experience_sync.hub.retention import snapshot_agent

    stored = snapshot_agent(entry)
    stored.version = rt.version
    instances = rt.instances
    rt.load(stored)
    rt.instances = instances
    # Rows loaded are not "changed": commit the snapshot's rows as they are,
    # with the search documents of every item.
    engine._commit(
        agent_id,
        ChangeSet(
            cursor=stored.cursor,
            log=log,
            rows={t: r for t, r in stored.rows.items() if r},
            meta=stored.meta,
            documents=rt.documents(),
        ),
    )
