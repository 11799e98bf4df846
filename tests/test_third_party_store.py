"""A third-party store, written importing only ``experience_sync.api`` and
``experience_sync.testing``, passes the store contract suite and serves a hub.

``DictStore`` keeps everything in Python dicts (a shared ``Storage`` per
name, so opening the store again sees what was committed); it is written
from the documented contract, not from the built-in stores. The
``register_plugin`` fixture comes from ``experience_sync.testing``, enabled in
``tests/conftest.py`` by ``pytest_plugins = ["experience_sync.testing"]`` as
a plugin's own suite would.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest

from experience_sync.api import (
    TABLES,
    ChangeSet,
    EventsRequest,
    ExperienceEvent,
    LogEntry,
    MergeResult,
    Register,
    Store,
    StoredAgent,
    StoredRow,
    TokenRecord,
    hookimpl,
)
from experience_sync.testing import StoreContract, StoreFactory, run_in_thread


class DuplicateEntryError(Exception):
    """A commit would log an entry id the agent's log already holds."""


@dataclasses.dataclass
class Storage:
    """What every handle on one named store shares."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    cursors: dict[str, int] = dataclasses.field(default_factory=dict)
    meta: dict[str, str | None] = dataclasses.field(default_factory=dict)
    log: dict[str, dict[str, LogEntry]] = dataclasses.field(default_factory=dict)
    rows: dict[tuple[str, str], dict[str, StoredRow]] = dataclasses.field(default_factory=dict)
    units: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    tokens: dict[str, TokenRecord] = dataclasses.field(default_factory=dict)


_STORAGES: dict[str, Storage] = {}


class DictStore(Store):
    """A single-writer store in memory. ``dict://<name>`` names the storage."""

    name = "dict"

    def __init__(self, url: str) -> None:
        self.storage = _STORAGES.setdefault(url.removeprefix("dict://"), Storage())

    def load_agent(self, agent_id: str) -> StoredAgent:
        s = self.storage
        with s.lock:
            return StoredAgent(
                cursor=s.cursors.get(agent_id, 0),
                meta=s.meta.get(agent_id),
                rows={t: list(s.rows.get((agent_id, t), {}).values()) for t in TABLES},
            )

    def agents(self) -> list[str]:
        with self.storage.lock:
            return sorted(set(self.storage.cursors) | set(self.storage.log))

    def seen_events(self, agent_id: str, event_ids: Sequence[str]) -> set[str]:
        with self.storage.lock:
            log = self.storage.log.get(agent_id, {})
            return {i for i in event_ids if i in log}

    def applied_unit(self, agent_id: str, unit_id: str) -> MergeResult | None:
        with self.storage.lock:
            body = self.storage.units.get(agent_id, {}).get(unit_id)
        return None if body is None else MergeResult.model_validate_json(body)

    def iter_units(self, agent_id: str) -> Iterator[tuple[str, MergeResult]]:
        with self.storage.lock:
            units = list(self.storage.units.get(agent_id, {}).items())
        for unit_id, body in units:
            yield unit_id, MergeResult.model_validate_json(body)

    def commit(self, agent_id: str, changes: ChangeSet) -> None:
        s = self.storage
        with s.lock:
            # Check everything first: a refused commit writes nothing.
            unknown = set(changes.rows) - set(TABLES)
            if unknown:
                raise ValueError(f"unknown state tables: {sorted(unknown)}")
            log = s.log.get(agent_id, {})
            ids = [e.entry_id for e in changes.log]
            if len(set(ids)) != len(ids) or any(i in log for i in ids):
                raise DuplicateEntryError(f"agent {agent_id!r} already logged one of {ids}")
            s.log.setdefault(agent_id, {}).update((e.entry_id, e) for e in changes.log)
            for table, rows in changes.rows.items():
                stored = s.rows.setdefault((agent_id, table), {})
                for row in rows:
                    stored[row.key] = dataclasses.replace(row)  # a rewrite keeps its place
            s.units.setdefault(agent_id, {}).update(
                (unit_id, result.model_dump_json()) for unit_id, result in changes.units
            )
            s.cursors[agent_id] = changes.cursor
            if changes.meta is not None:
                s.meta[agent_id] = changes.meta

    def iter_log(self, agent_id: str) -> Iterator[LogEntry]:
        with self.storage.lock:
            entries = list(self.storage.log.get(agent_id, {}).values())
        yield from entries

    def reset_state(self, agent_id: str) -> None:
        s = self.storage
        with s.lock:
            for table in TABLES:
                if table != "instances":
                    s.rows.pop((agent_id, table), None)
            if agent_id in s.cursors:
                s.cursors[agent_id] = 0
            s.meta.pop(agent_id, None)

    def put_token(self, record: TokenRecord) -> None:
        with self.storage.lock:
            self.storage.tokens[record.token_id] = dataclasses.replace(record)

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        with self.storage.lock:
            for record in self.storage.tokens.values():
                if record.token_hash == token_hash:
                    return dataclasses.replace(record)
        return None

    def list_tokens(self) -> list[TokenRecord]:
        with self.storage.lock:
            records = [dataclasses.replace(r) for r in self.storage.tokens.values()]
        return sorted(records, key=lambda r: (r.created_at, r.token_id))

    def revoke_token(self, token_id: str) -> bool:
        with self.storage.lock:
            record = self.storage.tokens.get(token_id)
            if record is None:
                return False
            self.storage.tokens[token_id] = dataclasses.replace(record, revoked=True)
            return True


class DictStorePlugin:
    """What the plugin's entry point would name."""

    @hookimpl
    def experience_sync_register_stores(self, register: Register) -> None:
        register("dict", DictStore)


@pytest.fixture
def storage_name() -> Iterator[str]:
    name = uuid.uuid4().hex
    yield name
    _STORAGES.pop(name, None)


class TestDictStore(StoreContract):
    """Every test of the contract, on ``DictStore``."""

    @pytest.fixture
    def make_store(self, storage_name: str) -> StoreFactory:
        return lambda: DictStore(f"dict://{storage_name}")

    @pytest.fixture
    def integrity_error(self, store: Store) -> type[Exception]:
        return DuplicateEntryError


class TestDictStoreByURL(StoreContract):
    """The same, opened by URL through the plugin's registration."""

    @pytest.fixture
    def store_url(self, storage_name: str, register_plugin: Callable[..., str]) -> str:
        register_plugin(DictStorePlugin(), name="dict-store")
        return f"dict://{storage_name}"


def test_a_hub_serves_on_the_third_party_store(
    storage_name: str, register_plugin: Callable[..., str]
) -> None:
    register_plugin(DictStorePlugin(), name="dict-store")
    url = f"dict://{storage_name}"
    event = ExperienceEvent.model_validate(
        {"source_instance": "i1", "event_type": "memory", "data": {"content": "Likes green tea"}}
    )
    body = EventsRequest(instance_id="i1", events=[event]).model_dump(mode="json")
    with run_in_thread(url, auth=False) as hub:
        r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=body)
        assert r.status_code == 200 and r.json()["accepted_event_ids"] == [event.event_id]
    with run_in_thread(url, auth=False) as hub:  # a new hub on the same storage
        state = httpx.get(f"{hub.url}/v1/agents/a1/state").json()
        assert [m["content"] for m in state["memories"]] == ["Likes green tea"]
        found = httpx.get(f"{hub.url}/v1/agents/a1/search", params={"q": "green tea"}).json()
        assert [h["text"] for h in found["hits"]] == ["Likes green tea"]


def test_a_store_that_keeps_no_parses_gets_none_with_its_rows(
    storage_name: str, register_plugin: Callable[..., str]
) -> None:
    """``keeps_parsed`` false: the hub does not read a memory's text into a
    parse only for the store to drop it."""
    register_plugin(DictStorePlugin(), name="dict-store")
    url = f"dict://{storage_name}"
    assert not DictStore(url).keeps_parsed
    events = [
        ExperienceEvent.model_validate(
            {"source_instance": "i1", "event_type": "memory", "data": {"content": text}}
        )
        for text in ("Likes green tea", "Works from Lisbon on Fridays")
    ]
    body = EventsRequest(instance_id="i1", events=events).model_dump(mode="json")
    with run_in_thread(url, auth=False) as hub:
        r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=body)
        assert r.status_code == 200 and r.json()["memories_added"] == 2
    rows = list(DictStore(url).storage.rows[("a1", "memories")].values())
    assert len(rows) == 2
    assert [row.parsed for row in rows] == [None, None]
