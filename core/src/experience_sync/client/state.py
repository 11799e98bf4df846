"""The instance's local state, kept in the outbox database.

A check-in with ``include_full_state`` sends what the instance knows: its
memories (the most recent :data:`MAX_MEMORIES`), the latest report of each
skill, its knowledge (latest per key) and characteristics, and its counters.
The outbox writer updates these tables in the same transaction as the event
rows, so the state and the outbox never disagree after a crash. Rows hold the
event body as recorded (the caller computes the key), so the writer parses
nothing; memories are kept only when a protocol uses the state
(``keep_memories``).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import orjson

from experience_sync.models import (
    InstanceState,
    InstanceStats,
    InstanceSummary,
    KnowledgeData,
    MemoryData,
    SkillData,
)

if TYPE_CHECKING:
    from experience_sync.client.outbox import Counters

#: Memories kept for full-state check-ins (older ones are trimmed).
MAX_MEMORIES = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_memories (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB);
CREATE TABLE IF NOT EXISTS local_skills (name TEXT PRIMARY KEY, body BLOB);
CREATE TABLE IF NOT EXISTS local_knowledge (key TEXT PRIMARY KEY, body BLOB);
CREATE TABLE IF NOT EXISTS local_characteristics (key TEXT PRIMARY KEY, body BLOB);
"""


def _data(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(body)["data"]
    return data


def state_key(event_type: str, data: Any) -> str:
    """The local-state key an event updates: skill name, knowledge key or characteristic key."""
    if event_type == "skill":
        return str(data.name).casefold()
    if event_type == "knowledge":
        return knowledge_key(data.__dict__)
    if event_type == "characteristic":
        return str(data.key)
    return ""


def knowledge_key(data: dict[str, Any]) -> str:
    """The local key of a knowledge item: its id, else its subject, else its content."""
    for name in ("knowledge_id", "subject"):
        value = data.get(name)
        if value:
            return f"{name}:{str(value).strip().casefold()}"
    return "content:" + " ".join(str(data.get("content", "")).casefold().split())


class LocalState:
    """Reads and writes the local-state tables (on a connection it is given)."""

    def __init__(self, conn: sqlite3.Connection, *, keep_memories: bool = True) -> None:
        conn.executescript(_SCHEMA)
        self._conn = conn
        self.keep_memories = keep_memories
        self._writes = 0

    def apply(self, items: list[tuple[str | None, str, bytes]]) -> None:
        """Fold events ``(kind, key, event body)`` into the tables, in the caller's transaction.

        Bodies are stored as recorded; they are parsed only when a check-in
        reads the state, so the writer thread does no JSON work.
        """
        memories: list[tuple[bytes]] = []
        seen_memories = 0
        tables: dict[str, dict[str, bytes]] = {"skill": {}, "knowledge": {}, "characteristic": {}}
        for kind, key, body in items:
            if kind == "memory":
                seen_memories += 1
                if self.keep_memories:
                    memories.append((body,))
            elif kind in tables:
                tables[kind][key] = body
        conn = self._conn
        if seen_memories:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('memories', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (seen_memories,),
            )
        if memories:
            conn.executemany("INSERT INTO local_memories (body) VALUES (?)", memories)
            self._writes += len(memories)
            if self._writes >= 1000:  # trim now and then, not on every commit
                self._writes = 0
                conn.execute(
                    "DELETE FROM local_memories WHERE seq <= "
                    "(SELECT MAX(seq) FROM local_memories) - ?",
                    (MAX_MEMORIES,),
                )
        for kind, table, column in (
            ("skill", "local_skills", "name"),
            ("knowledge", "local_knowledge", "key"),
            ("characteristic", "local_characteristics", "key"),
        ):
            if tables[kind]:
                conn.executemany(
                    f"INSERT OR REPLACE INTO {table} ({column}, body) VALUES (?, ?)",
                    list(tables[kind].items()),
                )

    def skills(self, conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
        """The latest skill reports, by case-folded name."""
        rows = conn.execute("SELECT name, body FROM local_skills").fetchall()
        return {name: _data(body) for name, body in rows}

    def snapshot(self, conn: sqlite3.Connection, counters: Counters) -> InstanceState:
        """The full local state, for a check-in."""
        mem = conn.execute(
            "SELECT body FROM local_memories ORDER BY seq DESC LIMIT ?", (MAX_MEMORIES,)
        ).fetchall()
        skills = conn.execute("SELECT body FROM local_skills ORDER BY name").fetchall()
        know = conn.execute("SELECT body FROM local_knowledge ORDER BY key").fetchall()
        chars = conn.execute("SELECT key, body FROM local_characteristics ORDER BY key")
        return InstanceState(
            memories=[MemoryData.model_validate(_data(b)) for (b,) in reversed(mem)],
            skills=[SkillData.model_validate(_data(b)) for (b,) in skills],
            knowledge=[KnowledgeData.model_validate(_data(b)) for (b,) in know],
            characteristics={k: _data(b).get("value") for k, b in chars.fetchall()},
            stats=stats(counters),
        )

    def summary(self, conn: sqlite3.Connection, counters: Counters, last_seq: int) -> InstanceSummary:
        """Counts and the last sequence, for a check-in without full state."""

        def count(table: str) -> int:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

        row = conn.execute("SELECT value FROM meta WHERE key = 'memories'").fetchone()
        return InstanceSummary(
            memories=int(row[0]) if row else 0,
            skills=count("local_skills"),
            knowledge=count("local_knowledge"),
            last_sequence=last_seq,
            stats=stats(counters),
        )


def stats(counters: Counters) -> InstanceStats:
    """The counters as the wire model."""
    v = counters.values
    return InstanceStats(
        events_recorded=v.get("recorded", 0),
        events_delivered=v.get("delivered", 0),
        events_filtered=v.get("filtered", 0),
        events_refused=v.get("refused", 0),
    )
