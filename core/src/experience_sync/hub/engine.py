"""The hub's merge engine: idempotent ingestion into a durable store, reads and reviews.

Each agent's state (an :class:`~experience_sync.hub.runtime.AgentRuntime`) is
loaded from the :class:`~experience_sync.interfaces.Store` once and kept in
memory; an ingestion merges under the agent's lock, then commits the log rows
and only the changed state rows in one transaction, and answers only after
that commit. Every commit that appends to the log gets the
next value of the agent's *cursor*, and every row it changes carries that
cursor as its ``version``, so ``state(since=cursor)`` returns just the changes.

Idempotency: an event id already in the agent's log is listed in
``duplicate_event_ids`` and has no effect; a batch or check-in id already
applied returns the stored result with ``duplicate = true``.

Everything the merge derives comes from the logged events (their timestamps,
never the wall clock), so :func:`experience_sync.hub.replay.replay` rebuilds
exactly the live state.

Several hub processes on one store: with a store that several processes
write (its :meth:`~experience_sync.interfaces.Store.agent_version` is not
``None``), the in-memory state is used only while the agent's stored write
version is the one it was loaded or last committed at; otherwise the agent is
reloaded first. Each commit names that version, and a commit that lost a race
with another process is refused (:class:`~experience_sync.errors.StaleStateError`),
so the request is merged again on the reloaded state. A single-writer store
(``sqlite``) skips both checks.
"""

from __future__ import annotations

import gc
import json
import logging
import random
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from experience_sync.config import MergeStrategyConfig, RecallConfig
from experience_sync.errors import PluginError, StaleStateError
from experience_sync.hub.merge.conflicts import MergeContext, Notice, short_hash
from experience_sync.hub.merge.judging import JUDGEMENT_KIND, judgement_entry_id
from experience_sync.hub.merge.knowledge import stored_knowledge
from experience_sync.hub.merge.memory import stored_memory
from experience_sync.hub.merge.skills import stored_skill
from experience_sync.hub.runtime import AgentRuntime
from experience_sync.hub.search import HubSearch
from experience_sync.interfaces import Store
from experience_sync.models import (
    AgentState,
    CharacteristicData,
    CheckIn,
    EventContext,
    EventsRequest,
    ExperienceBatch,
    ExperienceEvent,
    InstanceStatus,
    KnowledgeItem,
    Memory,
    MergeResult,
    Review,
    Skill,
    utcnow,
)
from experience_sync.plugins import ExperienceSyncPluginManager, Observer, get_plugin_manager
from experience_sync.recall.models import SearchQuery, SearchResults
from experience_sync.stores.state import ChangeSet, LogEntry
from experience_sync.text import normalize
from experience_sync.units import UNITS, UnitKind

__all__ = ["IngestMeta", "MergeEngine", "open_store"]


# How many times a request is merged again after losing a commit race with
# another hub process on a shared store, before StaleStateError reaches the
# caller (each loss means the other process made progress).
_STALE_RETRIES = 16

_T = TypeVar("_T")

log = logging.getLogger(__name__)

class _PausedCollector:
    """No cyclic garbage collection while an agent loads (``with _collector_paused:``).

    A load allocates millions of objects that all stay alive, so every
    collection it triggers finds nothing and the older ones walk the whole
    growing heap again (about a tenth of a 100k-memory load). The collector
    is paused for the load's few seconds (every thread's: there is one per
    process) and enabled again when the last of the loads running at once
    ends, unless it was off before the first began.

    What a load built lives as long as the agent stays loaded, so it is then
    moved to the collector's permanent generation (``gc.freeze``): otherwise
    the first middle-generation collection after the load walks all of it at
    once, in the middle of serving (319 ms after a 140k-memory load), and
    every full collection walks it again. Objects frozen are still freed
    when nothing refers to them; :meth:`MergeEngine._unload_beyond` unfreezes
    them when it unloads an agent, so that cycles among them can be collected.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._loading = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._guard:
            if self._loading == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._loading += 1

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            self._loading -= 1
            if self._loading == 0:
                gc.freeze()
                if self._resume:
                    gc.enable()


_collector_paused = _PausedCollector()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_MALLOC_TRIM = _malloc_trim() if sys.platform.startswith("linux") else None


def _release_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc only).

    A load reads every row of the agent (bodies, texts, parses) and frees
    most of it once the state is built; glibc keeps those pages, about 12%
    of the resident memory of a 100k-memory agent, until it is asked.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@dataclass
class IngestMeta:
    """What the transport tells about the sender.

    :param protocol: ``streaming``, ``lumped`` or ``check_in``.
    :param transport: ``https``, ``websocket`` or ``mcp``.
    :param backlog: the instance's outbox size (``X-Experience-Sync-Backlog``).
    """

    protocol: str | None = None
    transport: str | None = None
    backlog: int | None = None


def open_store(url: str, pm: ExperienceSyncPluginManager | None = None) -> Store:
    """Open a store through the plugin registered for the URL's scheme (``sqlite:///hub.db``)."""
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if not scheme:
        raise ValueError(f"{url!r} is not a store URL (e.g. sqlite:///hub.db)")
    store: Store = (pm or get_plugin_manager()).registry.create("stores", scheme, url)
    return store


def checkin_events(agent_id: str, checkin: CheckIn) -> list[ExperienceEvent]:
    """Events derived from a check-in's full state, with ids derived from their content.

    Re-sending the same state yields the same ids, so it changes nothing.
    """
    state = checkin.state
    if state is None:
        return []
    inst = checkin.instance_id
    out: list[ExperienceEvent] = []

    def add(kind: str, data: Any) -> None:
        payload = data.model_dump(mode="json", exclude={"embedding"})
        digest = short_hash(agent_id, inst, kind, json.dumps(payload, sort_keys=True), size=12)
        out.append(
            ExperienceEvent(
                event_id=f"ci-{digest}",
                timestamp=checkin.timestamp,
                source_instance=inst,
                agent_id=agent_id,
                event_type=kind,
                data=data,
                context=EventContext(trigger="check_in"),
            )
        )

    for memory in state.memories:
        add("memory", memory)
    for skill in state.skills:
        add("skill", skill)
    for item in state.knowledge:
        add("knowledge", item)
    for key, value in state.characteristics.items():
        add("characteristic", CharacteristicData(key=key, value=value))
    return out


class MergeEngine:
    """Merges what instances send into each source agent's state, durably.

    Thread-safe: one lock per agent. Each ingestion returns only after the
    store committed it.
    """

    def __init__(
        self,
        store: Store,
        strategy: MergeStrategyConfig | None = None,
        pm: ExperienceSyncPluginManager | None = None,
        *,
        emit: bool = True,
        recall: RecallConfig | None = None,
        max_loaded_memories: int | None = None,
    ) -> None:
        if max_loaded_memories is not None and max_loaded_memories < 1:
            raise ValueError(f"max_loaded_memories must be at least 1, not {max_loaded_memories}")
        self.store = store
        #: The most memories kept loaded across agents (``None``: no bound).
        #: Beyond it the least recently used agents are unloaded; each is
        #: loaded from the store again at its next request.
        self.max_loaded_memories = max_loaded_memories
        self.strategy = strategy or MergeStrategyConfig()
        self.pm = pm or get_plugin_manager()
        self.emit = emit
        #: This engine's own observers (its hub's metrics and event stream):
        #: they get its events after the plugin observers, and no other engine's.
        self.observers: list[Observer] = []
        registry = self.pm.registry
        self.recall = HubSearch(store, recall or RecallConfig(), self.strategy, self.pm)
        # Fail now on a misnamed plugin rather than on the first request.
        registry.get("conflict_resolvers", self.strategy.conflict_resolution)
        registry.get("skill_aggregations", self.strategy.skill_aggregation)
        if self.strategy.memory_deduplication:
            registry.get("similarity_methods", self.strategy.similarity_method)
            registry.get("merge_judges", self.strategy.judge)
        self._check_plugins()
        # Loaded agents, least recently used first (changed under ``_guard``).
        self._runtimes: OrderedDict[str, AgentRuntime] = OrderedDict()
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def _check_plugins(self) -> None:
        # Build the merge plugins once (and embed one string) so that an
        # embedder or similarity method that cannot work stops the hub at
        # start, instead of answering every memory with a 500 later.
        try:
            probe = AgentRuntime("(startup check)", self.strategy, self.pm)
            if probe.memory.embedder is not None:
                probe.memory.embedder.embed(["startup check"])
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"the merge strategy's plugins cannot start: {type(exc).__name__}: {exc}"
            ) from exc

    # ------------------------------------------------------------------ plumbing

    def _lock(self, agent_id: str) -> threading.RLock:
        with self._guard:
            lock = self._locks.get(agent_id)
            if lock is None:
                lock = self._locks[agent_id] = threading.RLock()
            return lock

    def _runtime(self, agent_id: str) -> AgentRuntime:
        # Called with the agent's lock held.
        rt = self._runtimes.get(agent_id)
        if rt is not None and self.max_loaded_memories is not None:
            with self._guard:
                if agent_id in self._runtimes:
                    self._runtimes.move_to_end(agent_id)
        if rt is not None:
            # A shared store: another process may have committed since.
            version = self.store.agent_version(agent_id)
            if version is not None and version != rt.version:
                rt = None
        if rt is None:
            rt = AgentRuntime(agent_id, self.strategy, self.pm)
            if not self.store.keeps_parsed:
                rt.memory.make_no_parses()
            with _collector_paused:
                # The rows are freed as the memories are built, and the
                # parses made again are stored a batch at a time: a load
                # holds about what the loaded agent does.
                rt.load(
                    self.store.load_agent(agent_id),
                    consume=True,
                    parsed_sink=self._parsed_sink(agent_id),
                )
            _release_freed_memory()
            self.recall.loaded(rt)
            with self._guard:
                self._runtimes[agent_id] = rt
                self._runtimes.move_to_end(agent_id)
            if self.max_loaded_memories is not None:
                self._unload_beyond(self.max_loaded_memories, keep=agent_id)
        return rt

    @property
    def loaded_memories(self) -> int:
        """Memories of the agents loaded now (what :attr:`max_loaded_memories` bounds)."""
        return sum(len(rt.memory.memories) for rt in list(self._runtimes.values()))

    def loaded_agents(self) -> list[str]:
        """The agents loaded now, least recently used first."""
        with self._guard:
            return list(self._runtimes)

    def _unload_beyond(self, limit: int, keep: str) -> None:
        """Unload least recently used agents until at most ``limit`` memories stay loaded.

        ``keep`` (the agent being served) stays even if it alone is larger;
        an agent another thread is merging now is skipped (it is recent anyway).
        """
        with self._guard:
            sizes = [(a, len(rt.memory.memories)) for a, rt in self._runtimes.items()]
        total = sum(n for _, n in sizes)
        for agent_id, n in sizes:
            if total <= limit:
                return
            if agent_id == keep:
                continue
            lock = self._lock(agent_id)
            if not lock.acquire(blocking=False):
                continue
            try:
                with self._guard:
                    dropped = self._runtimes.pop(agent_id, None)
                if dropped is not None:
                    gc.unfreeze()  # what its load froze may hold cycles now garbage
                    self.recall.forget(agent_id)
                    total -= n
                    log.info("unloaded agent %s (%d memories) to stay within %d loaded",
                             agent_id, n, limit)
            finally:
                lock.release()

    def _parsed_sink(self, agent_id: str) -> Callable[[dict[str, bytes]], None] | None:
        """Where a load of ``agent_id`` stores the parses it made again (``None``: nowhere).

        Rows stored before the store kept parses, or by other code or word
        lists: kept, so the next load reads them back. A store that does not
        keep them (:attr:`Store.keeps_parsed`) is not asked, and the load
        makes none.
        """
        if not self.store.keeps_parsed:
            return None
        store = self.store
        failed = False

        def save(parsed: dict[str, bytes]) -> None:
            nonlocal failed
            if failed:
                return
            try:
                store.save_parsed(agent_id, parsed)
            except Exception:  # a cache: the next load parses again
                failed = True
                log.warning("storing the parses of agent %s failed", agent_id, exc_info=True)

        return save

    def _commit(self, agent_id: str, changes: ChangeSet) -> None:
        rt = self._runtimes.get(agent_id)
        if rt is not None:
            changes.expect_version = rt.version
        try:
            self.store.commit(agent_id, changes)
        except BaseException:
            # The in-memory state ran ahead of the store (or behind another
            # process): drop it, reload next time.
            self._runtimes.pop(agent_id, None)
            raise
        if rt is not None:
            rt.version += 1
        self.recall.committed(agent_id, changes)
        if self.max_loaded_memories is not None:
            self._unload_beyond(self.max_loaded_memories, keep=agent_id)

    def _under_lock(self, agent_id: str, work: Callable[[AgentRuntime], _T]) -> _T:
        """Run ``work`` on the agent's state under its lock, again after a lost commit race.

        A store shared by several hub processes refuses a commit made from a
        state another process has moved past (:class:`StaleStateError`):
        the agent is reloaded and ``work`` runs again, up to
        ``_STALE_RETRIES`` times with a short random back-off.
        """
        attempt = 0
        while True:
            with self._lock(agent_id):
                try:
                    return work(self._runtime(agent_id))
                except StaleStateError:
                    # Another hub process committed first: run on its state.
                    self._runtimes.pop(agent_id, None)
            if attempt >= _STALE_RETRIES:
                raise StaleStateError(
                    f"gave up after {attempt + 1} commit races with other hub processes"
                )
            if attempt:
                # Two processes racing for one agent back off apart.
                time.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))
            attempt += 1

    def _notify(self, agent_id: str, notices: Iterable[Notice]) -> None:
        if not self.emit:
            return
        for type_, instance_id, data in notices:
            self.pm.emit(
                type_,
                observers=self.observers,
                agent_id=agent_id,
                instance_id=instance_id,
                data=data,
            )

    # ------------------------------------------------------------------ ingestion

    def ingest_events(
        self, agent_id: str, request: EventsRequest, meta: IngestMeta | None = None
    ) -> MergeResult:
        """Merge a streaming request; returns after the commit."""
        return self._ingest(agent_id, "events", request.instance_id, None, request.events, meta)

    def ingest_batch(
        self, agent_id: str, batch: ExperienceBatch, meta: IngestMeta | None = None
    ) -> MergeResult:
        """Merge a lumped batch (once per ``batch_id``); returns after the commit."""
        return self._ingest(agent_id, "batch", batch.instance_id, batch.batch_id, batch.events, meta)

    def ingest_checkin(
        self, agent_id: str, checkin: CheckIn, meta: IngestMeta | None = None
    ) -> MergeResult:
        """Merge a check-in: its events, then its full state as derived events."""
        events = [*checkin.events, *checkin_events(agent_id, checkin)]
        last_sequence = checkin.summary.last_sequence if checkin.summary else None
        return self._ingest(
            agent_id, "checkin", checkin.instance_id, checkin.checkin_id, events, meta,
            last_sequence,
        )

    def _ingest(
        self,
        agent_id: str,
        kind: UnitKind,
        instance_id: str,
        unit_id: str | None,
        events: Sequence[ExperienceEvent],
        meta: IngestMeta | None,
        last_sequence: int | None = None,
    ) -> MergeResult:
        def merge(rt: AgentRuntime) -> tuple[MergeResult, list[Notice]]:
            prior = self.store.applied_unit(agent_id, unit_id) if unit_id is not None else None
            if prior is not None:
                notice: Notice = (
                    UNITS[kind].event_type, instance_id,
                    {"unit_id": unit_id, "events": len(events), "duplicate": True},
                )
                return prior.model_copy(update={"duplicate": True}), [notice]
            try:
                return self._merge_request(
                    rt, kind, instance_id, unit_id, events, meta, last_sequence
                )
            except BaseException:
                # A plugin or the store failed mid-merge: the in-memory state
                # may be half changed, so reload it from the store.
                self._runtimes.pop(agent_id, None)
                raise

        result, notices = self._under_lock(agent_id, merge)
        # Observers run after the commit and outside the agent's lock.
        self._notify(agent_id, notices)
        return result

    def _merge_request(
        self,
        rt: AgentRuntime,
        kind: UnitKind,
        instance_id: str,
        unit_id: str | None,
        events: Sequence[ExperienceEvent],
        meta: IngestMeta | None,
        last_sequence: int | None,
    ) -> tuple[MergeResult, list[Notice]]:
        agent_id = rt.agent_id
        seen = self.store.seen_events(agent_id, [ev.event_id for ev in events])
        ctx = MergeContext(cursor=rt.cursor + 1)
        result = MergeResult(agent_id=agent_id, unit_id=unit_id, events_received=len(events))
        fresh: list[ExperienceEvent] = []
        for ev in events:
            if ev.event_id in seen:
                result.duplicate_event_ids.append(ev.event_id)
                continue
            seen.add(ev.event_id)
            fresh.append(ev)
            result.accepted_event_ids.append(ev.event_id)
        log = [
            LogEntry(ev.event_id, "event", ev.model_dump_json(), unit_id, instance_id, ctx.cursor)
            for ev in fresh
        ]
        ctx.positions = {ev.event_id: i for i, ev in enumerate(fresh)}
        ctx.position_base = len(fresh)
        rt.apply_events(ctx, fresh)
        # The merge judge's decisions, logged with the request: replay reads
        # them instead of asking a judge again.
        log.extend(
            LogEntry(judgement_entry_id(j.event_id), JUDGEMENT_KIND, j.body(), unit_id,
                     instance_id, ctx.cursor)
            for j in ctx.judgements.values()
        )
        if fresh:
            rt.cursor = ctx.cursor
            rt.finish()
        meta = meta or IngestMeta()
        rt.touch_instance(
            instance_id, kind, events, len(fresh), last_sequence,
            protocol=meta.protocol, transport=meta.transport, backlog=meta.backlog,
        )
        ctx.result.into(result)
        result.cursor = rt.cursor
        # The store serializes the result inside commit: no copy needed.
        units = [(unit_id, result)] if unit_id is not None else None
        self._commit(agent_id, rt.changeset(log, units))
        return result, self._summary(kind, instance_id, result, ctx.notices)

    @staticmethod
    def _summary(
        kind: UnitKind, instance_id: str, result: MergeResult, notices: list[Notice]
    ) -> list[Notice]:
        out: list[Notice] = [
            (
                UNITS[kind].event_type,
                instance_id,
                {
                    "unit_id": result.unit_id,
                    "events": result.events_received,
                    "accepted": len(result.accepted_event_ids),
                    "duplicates": len(result.duplicate_event_ids),
                    "cursor": result.cursor,
                },
            )
        ]
        o = result.outcomes
        if result.memories_added or result.memories_merged or o.contradiction:
            out.append(("merge.memories", instance_id,
                        {"added": result.memories_added, "merged": result.memories_merged,
                         "duplicate": o.duplicate, "contradiction": o.contradiction,
                         "distinct": o.distinct}))
        for mo in result.memory_outcomes:
            if mo.outcome == "distinct":
                out.append(("memory.distinct", instance_id,
                            {"event_id": mo.event_id, "memory_id": mo.memory_id,
                             "related_to": mo.related_to, "reason": mo.reason}))
        if result.skills_added or result.skills_updated:
            out.append(("merge.skills", instance_id,
                        {"added": result.skills_added, "updated": result.skills_updated}))
        if result.knowledge_added or result.knowledge_verified or result.knowledge_integrated:
            out.append(("merge.knowledge", instance_id,
                        {"added": result.knowledge_added, "verified": result.knowledge_verified,
                         "integrated": result.knowledge_integrated}))
        return out + notices

    # ------------------------------------------------------------------ reviews

    def decide_review(self, agent_id: str, review_id: str, accept: bool) -> Review:
        """Accept (apply its event) or reject (drop it) an open review.

        Raises :class:`KeyError` for an unknown review; a decided review is
        returned unchanged. The decision is logged, so replay repeats it.
        """
        def decide(rt: AgentRuntime) -> tuple[Review, list[Notice]]:
            review = rt.desk.reviews.get(review_id)
            if review is None:
                raise KeyError(review_id)
            if review.status != "open":
                return review, []
            ctx = MergeContext(cursor=rt.cursor + 1)
            at = utcnow()
            body = json.dumps({"review_id": review_id, "accept": accept, "timestamp": at.isoformat()})
            entry = LogEntry(f"review:{review_id}", "decision", body, None, "hub", ctx.cursor)
            try:
                decided = rt.apply_decision(ctx, review_id, accept, at)
                assert decided is not None
                rt.cursor = ctx.cursor
                rt.finish()
                self._commit(agent_id, rt.changeset([entry]))
            except BaseException:
                self._runtimes.pop(agent_id, None)
                raise
            return decided, ctx.notices

        decided, notices = self._under_lock(agent_id, decide)
        self._notify(agent_id, notices)
        return decided

    # ------------------------------------------------------------------ reads

    def _in_place(self, agent_id: str) -> bool:
        """Whether a read of ``agent_id`` is answered by the store (``Store.reads_in_place``).

        Only while the agent is not in memory (not loaded yet, still loading,
        or unloaded): then nothing of it is uncommitted, and the store holds
        what a load would build.
        """
        return self.store.reads_in_place and agent_id not in self._runtimes

    def state(self, agent_id: str, since: int | None = None) -> AgentState:
        """The agent's merged state, or the part changed after cursor ``since``."""
        with self._lock(agent_id):
            return self._runtime(agent_id).state(since)

    def memories(
        self, agent_id: str, q: str | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[list[Memory], int]:
        """A page of memories (matching normalized text ``q``) and the total count."""
        if (not q or not normalize(q)) and self._in_place(agent_id):
            rows, total = self.store.page_rows(agent_id, "memories", max(0, offset), max(0, limit))
            return [stored_memory(row.body) for row in rows], total
        with self._lock(agent_id):
            found = self._runtime(agent_id).memory.search(q)
        offset = max(0, offset)
        return found[offset : offset + max(0, limit)], len(found)

    def search(self, agent_id: str, query: SearchQuery) -> SearchResults:
        """Ranked search over the agent's merged memories, knowledge and skills."""
        if self._in_place(agent_id):
            found = self.recall.search_in_place(agent_id, query)
            if found is not None:
                return found
        with self._lock(agent_id):
            return self.recall.search(self._runtime(agent_id), query)

    def skills(self, agent_id: str) -> list[Skill]:
        """Every skill, with learning curves."""
        if self._in_place(agent_id):
            rows, _ = self.store.page_rows(agent_id, "skills", 0, sys.maxsize)
            return [stored_skill(row.body) for row in rows]
        with self._lock(agent_id):
            return list(self._runtime(agent_id).skills.skills.values())

    def knowledge(self, agent_id: str, status: str | None = None) -> list[KnowledgeItem]:
        """Knowledge items, all or those with ``status`` (``pending``/``integrated``)."""
        if self._in_place(agent_id):
            rows, _ = self.store.page_rows(agent_id, "knowledge", 0, sys.maxsize)
            items = [stored_knowledge(row.body) for row in rows]
        else:
            with self._lock(agent_id):
                items = list(self._runtime(agent_id).knowledge.items.values())
        return [k for k in items if status is None or k.status == status]

    def instances(self, agent_id: str) -> list[InstanceStatus]:
        """What the hub knows about each instance of the agent."""
        with self._lock(agent_id):
            return list(self._runtime(agent_id).instances.values())

    def reviews(self, agent_id: str, status: str | None = "open") -> list[Review]:
        """Reviews with ``status`` (``None``: all)."""
        with self._lock(agent_id):
            items = list(self._runtime(agent_id).desk.reviews.values())
        return [r for r in items if status is None or r.status == status]

    def agents(self) -> list[str]:
        """Every agent with data in the store or merged since start."""
        # list() snapshots the dict in one step: other threads add and drop agents.
        loaded = [a for a, rt in list(self._runtimes.items()) if rt.cursor > 0]
        return sorted(set(self.store.agents()) | set(loaded))

    def preload(self, agent_ids: Iterable[str] | None = None) -> list[str]:
        """Load agents into memory now (default: every agent in the store).

        An agent is otherwise loaded on its first request, which then waits
        for its memories to be read and indexed; a hub calls this at start-up.
        """
        loaded = []
        for agent_id in list(agent_ids) if agent_ids is not None else self.store.agents():
            with self._lock(agent_id):
                self._runtime(agent_id)
            loaded.append(agent_id)
        return loaded

    def close(self) -> None:
        """Forget the in-memory state and close the store."""
        with self._guard:
            self._runtimes.clear()
        self.store.close()
