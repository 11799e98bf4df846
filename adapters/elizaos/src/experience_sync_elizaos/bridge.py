"""The bridge service: receives events from the ElizaOS plugin and records them.

The TypeScript plugin ``@experience-sync/elizaos-plugin`` posts batches of
forwarded events to ``POST /v1/elizaos/events`` with ``Authorization: Bearer
<bridge secret>``. The bridge maps them (:mod:`experience_sync_elizaos.mapping`)
and records them through an ``ExperienceSyncManager``, whose durable outbox
delivers them to the hub as one instance. A request is answered 200 only
after its events are in the outbox, so the plugin retries anything else.

The plugin's provider reads back what the fleet learned through
``/v1/elizaos/search`` (:mod:`experience_sync_elizaos.recall`).

Delivery is at-least-once: the plugin retries a batch whose answer it did
not get, and the bridge remembers the ids of the events it has recorded (in
SQLite next to the outbox) so a retried batch is not counted twice.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from experience_sync_elizaos.mapping import (
    KNOWN_TYPES,
    MappingOptions,
    SkillRecord,
    map_event,
    record,
)
from experience_sync_elizaos.recall import add_search_routes, error_response, read_capped_body

log = logging.getLogger("experience_sync_elizaos.bridge")

#: Wire schema name the plugin sends; other major versions are refused.
WIRE_SCHEMA = "experience-sync-elizaos/1"
#: Most events accepted in one request (the plugin batches 50 by default).
MAX_EVENTS_PER_REQUEST = 1000
#: Largest request body accepted (413 beyond); 1,000 events of 2,000-character texts fit.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Ids of recorded events kept for de-duplicating retried batches.
SEEN_IDS_KEPT = 200_000


class ForwardedEvent(BaseModel):
    """One event as the plugin forwards it: ``id``, ``type``, and its fields."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=300)
    type: str = Field(min_length=1, max_length=100)
    timestamp: float | None = None


class AgentRef(BaseModel):
    """The ElizaOS agent the events come from."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)


class ForwardedBatch(BaseModel):
    """Body of ``POST /v1/elizaos/events``."""

    model_config = ConfigDict(extra="ignore")

    schema_: str = Field(default=WIRE_SCHEMA, alias="schema")
    agent: AgentRef = Field(default_factory=AgentRef)
    events: list[ForwardedEvent] = Field(max_length=MAX_EVENTS_PER_REQUEST)


class SeenEvents:
    """Ids of recorded events, in SQLite, so a retried batch is recorded once."""

    def __init__(self, path: str | Path | None) -> None:
        target = str(path) if path is not None else ":memory:"
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, at REAL NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS skill_rates (name TEXT PRIMARY KEY, "
            "uses INTEGER NOT NULL, successes INTEGER NOT NULL)"
        )
        self._inserts = 0

    def contains(self, event_id: str) -> bool:
        """Whether the event was already recorded."""
        row = self._db.execute("SELECT 1 FROM seen WHERE id = ?", (event_id,)).fetchone()
        return row is not None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the ``add`` calls of one request into one commit."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            # Commit even on error: the events added so far were recorded.
            self._db.execute("COMMIT")
        if self._inserts > SEEN_IDS_KEPT // 10:
            self._prune()

    @contextmanager
    def event(self) -> Iterator[None]:
        """Undo what one event counted (skill rates) if recording it fails."""
        self._db.execute("SAVEPOINT event")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK TO event")
            raise
        finally:
            self._db.execute("RELEASE event")

    def add(self, event_id: str) -> None:
        """Remember a recorded event."""
        self._db.execute("INSERT OR IGNORE INTO seen (id, at) VALUES (?, ?)", (event_id, time.time()))
        self._inserts += 1

    def observe_skill(self, name: str, success: bool) -> float:
        """Count one use of a skill; returns its success rate so far (kept across restarts)."""
        key = name.casefold()
        self._db.execute(
            "INSERT INTO skill_rates (name, uses, successes) VALUES (?, 1, ?) "
            "ON CONFLICT(name) DO UPDATE SET uses = uses + 1, successes = successes + ?",
            (key, int(success), int(success)),
        )
        uses, successes = self._db.execute(
            "SELECT uses, successes FROM skill_rates WHERE name = ?", (key,)
        ).fetchone()
        return float(successes) / float(uses)

    def _prune(self) -> None:
        self._inserts = 0
        self._db.execute(
            "DELETE FROM seen WHERE rowid <= (SELECT MAX(rowid) FROM seen) - ?", (SEEN_IDS_KEPT,)
        )

    def close(self) -> None:
        """Close the database."""
        self._db.close()


_error = error_response


def create_bridge_app(
    manager: Any,
    instance_id: str,
    secret: str,
    *,
    options: MappingOptions | None = None,
    seen_path: str | Path | None = None,
) -> FastAPI:
    """The bridge as an ASGI app.

    :param manager: an ``ExperienceSyncManager`` already initialised for
        ``instance_id`` (``initialize_sync``).
    :param instance_id: the instance the ElizaOS events are recorded as.
    :param secret: the bearer secret the plugin must present.
    :param options: what the mapping keeps.
    :param seen_path: SQLite file remembering recorded event ids (in memory if
        ``None``: retries are then de-duplicated only while the process lives).
    :returns: the FastAPI application.
    """
    if not secret:
        raise ValueError("the bridge needs a non-empty secret")
    opts = options or MappingOptions()
    seen = SeenEvents(seen_path)
    lock = threading.Lock()
    expected = f"Bearer {secret}".encode()
    counters = {"requests": 0, "events": 0, "recorded": 0, "duplicates": 0, "ignored": 0}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        seen.close()

    app = FastAPI(
        title="experience-sync ElizaOS bridge", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.manager = manager
    app.state.instance_id = instance_id
    app.state.counters = counters

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "instance_id": instance_id, "schema": WIRE_SCHEMA}

    @app.get("/v1/elizaos/status", response_model=None)
    def status(request: Request) -> Any:
        if not authorized(request):
            return _error(401, "missing or wrong bearer secret")
        out: dict[str, Any] = {"instance_id": instance_id, "bridge": dict(counters)}
        try:
            sync = manager.status(instance_id)
            out["sync"] = sync.model_dump(mode="json") if hasattr(sync, "model_dump") else sync
        except Exception as exc:  # status is informational; never fail the request
            out["sync_error"] = str(exc)
        return out

    @app.post("/v1/elizaos/events", response_model=None)
    async def events(request: Request) -> Any:
        if not authorized(request):
            return _error(401, "missing or wrong bearer secret")
        raw = await read_capped_body(request, MAX_BODY_BYTES)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            batch = ForwardedBatch.model_validate_json(raw)
        except ValidationError as exc:
            details = [
                {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                for e in exc.errors()[:20]
            ]
            if any(e["type"] == "too_long" and e["loc"] == ("events",) for e in exc.errors()):
                return _error(413, f"at most {MAX_EVENTS_PER_REQUEST} events per request")
            return _error(422, "invalid event batch", details)
        if batch.schema_.split(".")[0] != WIRE_SCHEMA:
            return _error(422, f"unsupported schema {batch.schema_!r}; expected {WIRE_SCHEMA!r}")
        # Recording may block on a full outbox: keep it off the event loop.
        return await run_in_threadpool(_ingest, batch)

    add_search_routes(app, manager, instance_id, authorized)

    def _ingest(batch: ForwardedBatch) -> Any:
        agent = batch.agent.model_dump()
        result = {"received": len(batch.events), "recorded": 0, "duplicates": 0, "ignored": 0}
        with lock, seen.transaction():
            counters["requests"] += 1
            for ev in batch.events:
                if seen.contains(ev.id):
                    result["duplicates"] += 1
                    continue
                payload = ev.model_dump()
                records = map_event(payload, agent, opts) if ev.type in KNOWN_TYPES else []
                try:
                    with seen.event():
                        for rec in records:
                            rate = (seen.observe_skill(rec.name, rec.success)
                                    if isinstance(rec, SkillRecord) else None)
                            record(manager, instance_id, rec, proficiency=rate)
                except Exception as exc:
                    # Nothing after this event is recorded; the plugin retries
                    # the batch and the events recorded so far are skipped.
                    log.warning("recording ElizaOS event %s failed: %s", ev.id, exc)
                    _tally(counters, result)
                    return _error(503, f"could not record event {ev.id}: {exc}", result)
                seen.add(ev.id)
                if records:
                    result["recorded"] += len(records)
                else:
                    result["ignored"] += 1
            _tally(counters, result)
        return result

    return app


def _tally(counters: dict[str, int], result: dict[str, int]) -> None:
    counters["events"] += result["received"]
    counters["recorded"] += result["recorded"]
    counters["duplicates"] += result["duplicates"]
    counters["ignored"] += result["ignored"]
