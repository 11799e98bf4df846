"""The instance's local state, kept in the outbox database.

A check-in with ``include_full_state`` sends what the instance knows: its
memories (the most recent :data:`MAX_MEMORIES`), the latest report of each
skill, its knowledge (latest per key) and characteristics, and its counters.
The outbox writer updates these tables in the same transaction as the event
rows, so the state and the outbox never disagree after a crash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
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


def knowledge_key(data: dict[str, Any]) -> str:
    """The local key of a knowledge item: its id, else its subject, else its content."""
    for name in ("knowledge_id", "subject"):
        value = data.get(name)
        if value:
            return f"{name}:{str(value).strip().casefold()}"
    return "content:" + " ".join(str(data.get("content", "")).casefold().split())


class LocalState:
    """Reads and writes the local-state tables (on a connection it is given)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        self._conn = conn
        self._writes = 0

    def apply(self, items: Iterable[tuple[str, bytes]], conn: sqlite3.Connection | None = None) -> None:
        """Fold events (``(event_type, body)``) into the tables; inside the caller's transaction."""
        memories: list[tuple[bytes]] = []
        skills: dict[str, bytes] = {}
        knowledge: dict[str, bytes] = {}
        chars: dict[str, bytes] = {}
        for event_type, body in items:
            if event_type == "interaction":
                continue
            data = orjson.loads(body)["data"]
            if event_type == "memory":
                memories.append((orjson.dumps(data),))
            elif event_type == "skill":
                skills[str(data["name"]).casefold()] = orjson.dumps(data)
            elif event_type == "knowledge":
                knowledge[knowledge_key(data)] = orjson.dumps(data)
            elif event_type == "characteristic":
                chars[str(data["key"])] = orjson.dumps(data)
        if conn is None:
            conn = self._conn
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
        for table, key, rows in (
            ("local_skills", "name", skills),
            ("local_knowledge", "key", knowledge),
            ("local_characteristics", "key", chars),
        ):
            if rows:
                conn.executemany(
                    f"INSERT OR REPLACE INTO {table} ({key}, body) VALUES (?, ?)",
                    list(rows.items()),
                )

    def skills(self, conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
        """The latest skill reports, by case-folded name."""
        rows = conn.execute("SELECT name, body FROM local_skills").fetchall()
        return {name: orjson.loads(body) for name, body in rows}

    def snapshot(self, conn: sqlite3.Connection, counters: Counters) -> InstanceState:
        """The full local state, for a check-in."""
        mem = conn.execute(
            "SELECT body FROM local_memories ORDER BY seq DESC LIMIT ?", (MAX_MEMORIES,)
        ).fetchall()
        skills = conn.execute("SELECT body FROM local_skills ORDER BY name").fetchall()
        know = conn.execute("SELECT body FROM local_knowledge ORDER BY key").fetchall()
        chars = conn.execute("SELECT key, body FROM local_characteristics ORDER BY key")
        return InstanceState(
            memories=[MemoryData.model_validate_json(b) for (b,) in reversed(mem)],
            skills=[SkillData.model_validate_json(b) for (b,) in skills],
            knowledge=[KnowledgeData.model_validate_json(b) for (b,) in know],
            characteristics={k: orjson.loads(b).get("value") for k, b in chars.fetchall()},
            stats=stats(counters),
        )

    def summary(self, conn: sqlite3.Connection, counters: Counters, last_seq: int) -> InstanceSummary:
        """Counts and the last sequence, for a check-in without full state."""

        def count(table: str) -> int:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

        return InstanceSummary(
            memories=count("local_memories"),
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
