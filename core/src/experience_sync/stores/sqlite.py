"""The built-in hub store ``sqlite``: one SQLite file in WAL mode.

URLs follow SQLAlchemy's convention: ``sqlite:///hub.db`` is relative to the
working directory, ``sqlite:////var/lib/hub.db`` is absolute, and
``sqlite:///:memory:`` keeps everything in memory (tests only).

One connection serves every thread behind a lock: the merge engine already
serializes writes per agent and keeps the state in memory, so the store only
appends and upserts, one transaction per ingestion (``synchronous=NORMAL``:
a committed transaction survives a process crash; a power loss may lose the
last few).

The log has no index on event ids: an index keyed by random ids costs a
random B-tree page per event (it made a hub commit 3x slower than the raw
insert of the same rows). Which event ids an agent's log holds is kept in
memory instead (:class:`SeenIds`, 16 bytes an id), read from the log the
first time the agent is asked about, and updated after each commit. One
process writes a store at a time (see ``docs/merging.md``, Storage).

A compaction moves the ids of the entries it removes into ``log_compacted``
(also without an index: read with the log into :class:`SeenIds`), so they
stay known. :meth:`SQLiteStore.backup` copies the file online, through
SQLite's backup API on a connection of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from experience_sync.forgetting import ForgetRecord, redacted_body
from experience_sync.interfaces import Store, TokenRecord
from experience_sync.models import MergeResult
from experience_sync.recall.documents import SearchDoc
from experience_sync.recall.fts import FtsIndex
from experience_sync.stores.state import TABLES, ChangeSet, LogEntry, StoredAgent, StoredRow
from experience_sync.stores.wal import BACKSTOP_PAGES, WalCheckpointer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL DEFAULT 0,
    meta TEXT
);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    unit_id TEXT,
    instance_id TEXT NOT NULL,
    request INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_agent ON log (agent_id, seq);
CREATE TABLE IF NOT EXISTS log_compacted (
    agent_id TEXT NOT NULL,
    entry_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS units (
    agent_id TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (agent_id, unit_id)
);
CREATE TABLE IF NOT EXISTS memories (
    agent_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT,
    embedding BLOB,
    normalized TEXT,
    body TEXT NOT NULL,
    parsed BLOB,
    PRIMARY KEY (agent_id, key)
);
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
"""

_STATE_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    agent_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (agent_id, key)
);
"""

# SQLite's default limit on bound variables is 32766 (999 before 3.32): stay far below.
_CHUNK = 500


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open.

    SQLite ends the transaction itself on some errors (``SQLITE_FULL``); a
    second ``ROLLBACK`` would then raise "no transaction is active" and hide
    the real error, which the caller re-raises.
    """
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # the original error is the one to report
            db.execute("ROLLBACK")


def _digest(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=16).digest()


class SeenIds:
    """A set of event ids in 16 bytes each: BLAKE2b-128 digests.

    Recent digests sit in a Python set; from time to time they are folded
    into two sorted ``uint64`` arrays (the digest's halves) searched with
    :func:`numpy.searchsorted`. Two different ids sharing a 128-bit digest
    is as likely as two UUID4s colliding, which event ids already rely on.
    """

    def __init__(self, event_ids: Iterable[str] = ()) -> None:
        self._hi = np.empty(0, dtype=np.uint64)
        self._lo = np.empty(0, dtype=np.uint64)
        self._recent: set[bytes] = set()
        self.update(event_ids)
        self._fold()

    def __len__(self) -> int:
        return len(self._hi) + len(self._recent)

    def update(self, event_ids: Iterable[str]) -> None:
        """Add ids (adding one already there changes nothing)."""
        self.add_digests(map(_digest, event_ids))

    def add_digests(self, digests: Iterable[bytes]) -> None:
        """Add ids by their digests (see :meth:`seen`)."""
        self._recent.update(digests)
        if len(self._recent) > max(4096, len(self._hi) // 4):
            self._fold()

    def _fold(self) -> None:
        if not self._recent:
            return
        new = np.frombuffer(b"".join(self._recent), dtype=np.uint64).reshape(-1, 2)
        hi = np.concatenate([self._hi, new[:, 0]])
        lo = np.concatenate([self._lo, new[:, 1]])
        order = np.lexsort((lo, hi))
        self._hi, self._lo = hi[order], lo[order]
        self._recent = set()

    def seen(self, event_ids: Sequence[str], digests: Sequence[bytes] | None = None) -> set[str]:
        """The ids among ``event_ids`` that were added (``digests``: theirs, if computed)."""
        if not event_ids:
            return set()
        if digests is None:
            digests = [_digest(e) for e in event_ids]
        recent = self._recent
        out = {e for e, d in zip(event_ids, digests, strict=True) if d in recent}
        if len(self._hi):
            q = np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(-1, 2)
            left = np.searchsorted(self._hi, q[:, 0], side="left")
            right = np.searchsorted(self._hi, q[:, 0], side="right")
            for i in np.flatnonzero(right > left).tolist():
                if q[i, 1] in self._lo[left[i] : right[i]]:
                    out.add(event_ids[i])
        return out


def path_from_url(url: str) -> str:
    """The file path of a ``sqlite:///...`` URL (SQLAlchemy's convention)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"{url!r} is not a sqlite:/// URL (e.g. sqlite:///hub.db)")
    path = url[len(prefix) :]
    if not path:
        raise ValueError(f"{url!r} names no file")
    return path


class SQLiteStore(Store):
    """The hub's embedded store: log, materialized state, applied units and tokens."""

    name = "sqlite"
    text_index = True
    #: Memory rows keep their parse (``memories.parsed``).
    keeps_parsed = True

    def __init__(self, url: str) -> None:
        self.url = url
        path = path_from_url(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._seen: dict[str, SeenIds] = {}
        # Digests of the ids the last seen_events asked about (see commit).
        self._digests: dict[str, bytes] = {}
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        # Index pages of the log and state tables stay hot between commits.
        self._db.execute("PRAGMA cache_size=-65536")
        # Checkpoints run on a thread of their own, not in a commit (stores/wal.py).
        self._checkpointer: WalCheckpointer | None = None
        if path != ":memory:":
            self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            self._checkpointer = WalCheckpointer(path)
        # Every statement is CREATE ... IF NOT EXISTS: safe to run on each open.
        tables = "".join(_STATE_TABLE.format(name=t) for t in TABLES if t != "memories")
        self._db.executescript(_SCHEMA + tables)
        # Stores made before the log lost its event-id index (see above).
        self._db.execute("DROP INDEX IF EXISTS log_entry")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(memories)")}
        if "normalized" not in columns:  # a store created before the column existed
            self._db.execute("ALTER TABLE memories ADD COLUMN normalized TEXT")
        if "parsed" not in columns:  # a store created before the column existed
            self._db.execute("ALTER TABLE memories ADD COLUMN parsed BLOB")
        # The search index (FTS5) lives in the same file and is written in the
        # same transaction as the state it indexes.
        self._fts = FtsIndex(self._db)
        # Freed cells are zeroed where that costs no extra I/O; a forget
        # zeroes everything it frees (``secure_delete=ON`` while it runs).
        self._db.execute("PRAGMA secure_delete=FAST")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS forgets (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "agent_id TEXT NOT NULL, forget_id TEXT NOT NULL, body TEXT NOT NULL)"
        )
        self._in_forget = False
        # Reads in place go through a connection of their own (WAL readers do
        # not wait for the writer): made on first use.
        self._path = path
        self._read_lock = threading.Lock()
        self._reader: tuple[sqlite3.Connection, FtsIndex] | None = None

    @property
    def checkpointer(self) -> WalCheckpointer | None:
        """The thread that checkpoints the store's WAL (``None`` in memory, or closed)."""
        return self._checkpointer

    # ------------------------------------------------------------------ state

    @contextlib.contextmanager
    def _own_transaction(self) -> Iterator[sqlite3.Connection]:
        """The store's connection in a read transaction, under its lock (a ``:memory:`` store has no other)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _own_snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own inside one read transaction, closed after (``:memory:``: the store's).

        For a long read (an agent's load reads every row of it: 28 s at 1M
        memories): the store's connection and the reader stay free, so commits
        of other agents, token checks and reads in place do not wait for it.
        """
        if self._path == ":memory:":
            with self._own_transaction() as db:
                yield db
            return
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("BEGIN")
            yield db
            db.execute("COMMIT")
        finally:
            db.close()

    def load_agent(self, agent_id: str) -> StoredAgent:
        with self._own_snapshot() as db:
            row = db.execute(
                "SELECT cursor, meta FROM agents WHERE agent_id = ?", (agent_id,)
            ).fetchone()
            out = StoredAgent(cursor=row[0], meta=row[1]) if row else StoredAgent()
            for table in TABLES:
                if table == "memories":
                    cur = db.execute(
                        "SELECT key, version, body, content_hash, embedding, normalized, parsed "
                        "FROM memories WHERE agent_id = ? ORDER BY rowid",
                        (agent_id,),
                    )
                    out.rows[table] = [StoredRow(*r) for r in cur]
                else:
                    cur = db.execute(
                        f"SELECT key, version, body FROM {table} WHERE agent_id = ? "
                        "ORDER BY rowid",
                        (agent_id,),
                    )
                    out.rows[table] = [StoredRow(k, v, b) for k, v, b in cur]
        with self._lock:
            # The agent's event ids too, now: the first request after a hub
            # start would otherwise read them all (0.3 s at 140k events).
            # Through the store's connection, under its lock: a commit adds
            # to the set once it is made (see commit).
            self._seen_ids(agent_id)
        return out

    # ------------------------------------------------------------------ reads in place

    #: A page of memories, the skills, the knowledge and a search are read
    #: from the file while an agent loads (its own connection: a WAL reader).
    reads_in_place = True

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[tuple[sqlite3.Connection, FtsIndex]]:
        """A connection and its search index inside one read transaction (one committed state)."""
        if self._path == ":memory:":  # one database, one connection
            with self._own_transaction() as db:
                yield db, self._fts
            return
        with self._read_lock:
            if self._reader is None:
                db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA busy_timeout=10000")
                self._reader = (db, FtsIndex(db))
            db, fts = self._reader
            db.execute("BEGIN")
            try:
                yield db, fts
            finally:
                db.execute("COMMIT")

    def agent_cursor(self, agent_id: str) -> int:
        with self._snapshot() as (db, _):
            row = db.execute("SELECT cursor FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        return int(row[0]) if row else 0

    def read_rows(self, agent_id: str, table: str, keys: Sequence[str]) -> list[StoredRow]:
        if table not in TABLES:
            raise ValueError(f"no state table {table!r}")
        keys = list(dict.fromkeys(keys))
        out: list[StoredRow] = []
        with self._snapshot() as (db, _):
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                out += [
                    StoredRow(k, v, b)
                    for k, v, b in db.execute(
                        f"SELECT key, version, body FROM {table} "
                        f"WHERE agent_id = ? AND key IN ({marks})",
                        (agent_id, *chunk),
                    )
                ]
        return out

    def page_rows(
        self, agent_id: str, table: str, offset: int, limit: int
    ) -> tuple[list[StoredRow], int]:
        if table not in TABLES:
            raise ValueError(f"no state table {table!r}")
        with self._snapshot() as (db, _):
            (total,) = db.execute(
                f"SELECT count(*) FROM {table} WHERE agent_id = ?", (agent_id,)
            ).fetchone()
            rows = [
                StoredRow(k, v, b)
                for k, v, b in db.execute(
                    f"SELECT key, version, body FROM {table} WHERE agent_id = ? "
                    "ORDER BY rowid LIMIT ? OFFSET ?",
                    (agent_id, max(0, limit), max(0, offset)),
                )
            ]
        return rows, int(total)

    def save_parsed(self, agent_id: str, parsed: Mapping[str, bytes]) -> None:
        """Keep the parses a load had to make (:attr:`StoredRow.parsed`), by memory id.

        A cache of what the text gives: no version or cursor changes, and a
        memory gone since is skipped (one changed since is checked against its
        text at the next load).
        """
        if not parsed:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "UPDATE memories SET parsed = ? WHERE agent_id = ? AND key = ?",
                    [(blob, agent_id, key) for key, blob in parsed.items()],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def agents(self) -> list[str]:
        with self._lock:
            cur = self._db.execute(
                "SELECT agent_id FROM agents UNION SELECT DISTINCT agent_id FROM log "
                "ORDER BY 1"
            )
            return [r[0] for r in cur]

    def _seen_ids(self, agent_id: str) -> SeenIds:
        seen = self._seen.get(agent_id)
        if seen is None:
            cur = self._db.execute(
                "SELECT entry_id FROM log WHERE agent_id = ? "
                "UNION ALL SELECT entry_id FROM log_compacted WHERE agent_id = ?",
                (agent_id, agent_id),
            )
            seen = self._seen[agent_id] = SeenIds(r[0] for r in cur)
        return seen

    def seen_events(self, agent_id: str, event_ids: Sequence[str]) -> set[str]:
        with self._lock:
            ids = list(event_ids)
            digests = list(map(_digest, ids))
            # The engine commits these ids next: their digests serve again there.
            self._digests = dict(zip(ids, digests, strict=True))
            return self._seen_ids(agent_id).seen(ids, digests)

    def applied_unit(self, agent_id: str, unit_id: str) -> MergeResult | None:
        with self._lock:
            row = self._db.execute(
                "SELECT result FROM units WHERE agent_id = ? AND unit_id = ?",
                (agent_id, unit_id),
            ).fetchone()
        return MergeResult.model_validate_json(row[0]) if row else None

    def commit(self, agent_id: str, changes: ChangeSet) -> None:
        with self._lock:
            db = self._db
            seen = self._seen_ids(agent_id) if changes.log or changes.seen else None
            if seen is not None:
                ids = [e.entry_id for e in changes.log]
                known, self._digests = self._digests, {}
                digests = [known.get(i) or _digest(i) for i in ids]
                again = seen.seen(ids, digests)
                if again or len(set(ids)) < len(ids):
                    # What a unique index would say: the log holds each event once.
                    repeated = sorted(again) or sorted({i for i in ids if ids.count(i) > 1})
                    raise sqlite3.IntegrityError(
                        f"UNIQUE constraint failed: log entry {repeated[0]!r} is already logged"
                    )
            if not self._in_forget:  # a forget commits the rebuilt state in its own transaction
                db.execute("BEGIN IMMEDIATE")
            try:
                # The index is complete for a new (or just reset) agent; for
                # one indexed before, only if it was complete already. An
                # agent stored before search existed stays unindexed here
                # until the engine reindexes it on load.
                row = db.execute(
                    "SELECT cursor FROM agents WHERE agent_id = ?", (agent_id,)
                ).fetchone()
                index_complete = (
                    row is None or not row[0] or self._fts.cursor(agent_id) is not None
                )
                if changes.log:
                    db.executemany(
                        "INSERT INTO log (agent_id, entry_id, kind, unit_id, instance_id, "
                        "request, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (agent_id, e.entry_id, e.kind, e.unit_id, e.instance_id,
                             e.request, e.body)
                            for e in changes.log
                        ],
                    )
                for table, rows in changes.rows.items():
                    if table not in TABLES:
                        raise ValueError(f"unknown state table {table!r}")
                    if not rows:
                        continue
                    if table == "memories":
                        db.executemany(
                            "INSERT INTO memories (agent_id, key, version, content_hash, "
                            "embedding, normalized, body, parsed) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                            "ON CONFLICT (agent_id, key) DO UPDATE SET "
                            "version = excluded.version, content_hash = excluded.content_hash, "
                            "embedding = excluded.embedding, normalized = excluded.normalized, "
                            "body = excluded.body, "
                            "parsed = COALESCE(excluded.parsed, memories.parsed)",
                            [
                                (agent_id, r.key, r.version, r.content_hash, r.embedding,
                                 r.normalized, r.body, r.parsed)
                                for r in rows
                            ],
                        )
                    else:
                        db.executemany(
                            f"INSERT INTO {table} (agent_id, key, version, body) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT (agent_id, key) DO UPDATE SET "
                            "version = excluded.version, body = excluded.body",
                            [(agent_id, r.key, r.version, r.body) for r in rows],
                        )
                db.execute(
                    "INSERT INTO agents (agent_id, cursor, meta) VALUES (?, ?, ?) "
                    "ON CONFLICT (agent_id) DO UPDATE SET cursor = excluded.cursor, "
                    "meta = COALESCE(excluded.meta, agents.meta)",
                    (agent_id, changes.cursor, changes.meta),
                )
                if changes.units:
                    db.executemany(
                        "INSERT OR REPLACE INTO units (agent_id, unit_id, result) "
                        "VALUES (?, ?, ?)",
                        [(agent_id, unit_id, result.model_dump_json())
                         for unit_id, result in changes.units],
                    )
                if changes.seen:
                    db.executemany(
                        "INSERT INTO log_compacted (agent_id, entry_id) VALUES (?, ?)",
                        [(agent_id, i) for i in changes.seen],
                    )
                if changes.documents:
                    self._fts.upsert(agent_id, changes.documents)
                if index_complete:
                    self._fts.set_cursor(agent_id, changes.cursor)
                if not self._in_forget:
                    db.execute("COMMIT")
            except BaseException:
                _rollback(db)  # never hide the real error (a full disk) behind this one
                raise
            if seen is not None:
                seen.add_digests(digests)
                seen.update(changes.seen)
            if self._checkpointer is not None:
                self._checkpointer.committed()

    # ------------------------------------------------------------------ compaction

    def compact(
        self, agent_id: str, snapshot: LogEntry, expect_version: int | None = None
    ) -> int:
        through = snapshot.request
        with self._lock:
            db = self._db
            seen = self._seen_ids(agent_id)
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT MAX(seq), COUNT(*) FROM log WHERE agent_id = ? AND request <= ?",
                    (agent_id, through),
                ).fetchone()
                head, removed = row[0], int(row[1])
                if head is None:
                    db.execute("ROLLBACK")
                    return 0
                # Earlier snapshots are replaced, not remembered: only event
                # and decision ids must stay known.
                db.execute(
                    "INSERT INTO log_compacted (agent_id, entry_id) SELECT agent_id, entry_id "
                    "FROM log WHERE agent_id = ? AND request <= ? AND kind != 'snapshot'",
                    (agent_id, through),
                )
                db.execute(
                    "DELETE FROM log WHERE agent_id = ? AND request <= ?", (agent_id, through)
                )
                # The snapshot takes the last removed seq: before every entry it
                # does not cover, as the log is in arrival order.
                db.execute(
                    "INSERT INTO log (seq, agent_id, entry_id, kind, unit_id, instance_id, "
                    "request, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (head, agent_id, snapshot.entry_id, snapshot.kind, snapshot.unit_id,
                     snapshot.instance_id, snapshot.request, snapshot.body),
                )
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            seen.update([snapshot.entry_id])
            return removed

    def iter_compacted(self, agent_id: str) -> Iterator[str]:
        for _, entry_id in self._pages(
            "SELECT rowid, entry_id FROM log_compacted WHERE agent_id = ? AND rowid > ? "
            "ORDER BY rowid LIMIT 5000",
            agent_id, 0,
        ):
            yield entry_id

    def rewrite_log(self, agent_id: str, bodies: Mapping[str, str]) -> int:
        if not bodies:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                # One pass over the agent's log (no index on entry ids, see above).
                db.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS rewrite (entry_id TEXT PRIMARY KEY, body TEXT)"
                )
                db.execute("DELETE FROM temp.rewrite")
                db.executemany(
                    "INSERT OR REPLACE INTO temp.rewrite VALUES (?, ?)", list(bodies.items())
                )
                cur = db.execute(
                    "UPDATE log SET body = r.body FROM temp.rewrite AS r "
                    "WHERE log.agent_id = ? AND log.entry_id = r.entry_id",
                    (agent_id,),
                )
                count = cur.rowcount
                db.execute("DELETE FROM temp.rewrite")
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            return count

    # ------------------------------------------------------------------ backup

    def backup(self, target: str | Path) -> int:
        """Copy the store, as one consistent snapshot, into the new file ``target``.

        The copy runs on a connection of its own through SQLite's online
        backup API in one step: a read transaction, which in WAL mode never
        blocks the hub's writer, so a running hub keeps serving (commits
        land in the WAL meanwhile and are not in the copy). The copy is a
        store file like the original: open it with ``sqlite:///<target>``.
        Returns the number of pages copied.
        """
        path = path_from_url(self.url)
        if path == ":memory:":
            raise ValueError("an in-memory store has no file to back up")
        out = Path(target)
        if out.exists():
            raise FileExistsError(f"{out} exists: a backup never overwrites a file")
        out.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(path, isolation_level=None)
        try:
            src.execute("PRAGMA busy_timeout=10000")
            dst = sqlite3.connect(out, isolation_level=None)
            try:
                src.backup(dst)
                pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
                # The copy is served as a store later: WAL like the original.
                dst.execute("PRAGMA journal_mode=WAL")
            finally:
                dst.close()
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        finally:
            src.close()
        return pages

    def _pages(self, sql: str, agent_id: str, after: object) -> Iterator[tuple[Any, ...]]:
        # Rows in pages along their first column (``sql`` takes the agent and
        # the last key seen): a long table never sits in memory at once, and
        # the lock is not held while the caller works on a page.
        while True:
            with self._lock:
                rows = self._db.execute(sql, (agent_id, after)).fetchall()
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    def iter_units(self, agent_id: str) -> Iterator[tuple[str, MergeResult]]:
        for unit_id, result in self._pages(
            "SELECT unit_id, result FROM units WHERE agent_id = ? AND unit_id > ? "
            "ORDER BY unit_id LIMIT 2000",
            agent_id, "",
        ):
            yield unit_id, MergeResult.model_validate_json(result)

    def iter_log(self, agent_id: str) -> Iterator[LogEntry]:
        for _, entry_id, kind, body, unit_id, instance_id, request in self._pages(
            "SELECT seq, entry_id, kind, body, unit_id, instance_id, request FROM log "
            "WHERE agent_id = ? AND seq > ? ORDER BY seq LIMIT 2000",
            agent_id, 0,
        ):
            yield LogEntry(entry_id, kind, body, unit_id, instance_id, request)

    def reset_state(self, agent_id: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Applied units and instance statuses are not derived from the
                # log: they stay, so re-sent batches are still recognised.
                for table in TABLES:
                    if table != "instances":
                        self._db.execute(f"DELETE FROM {table} WHERE agent_id = ?", (agent_id,))
                self._db.execute(
                    "UPDATE agents SET cursor = 0, meta = NULL WHERE agent_id = ?", (agent_id,)
                )
                self._fts.clear(agent_id)
                self._db.execute("COMMIT")
            except BaseException:
                _rollback(self._db)
                raise

    # ------------------------------------------------------------------ search

    def search_text(
        self,
        agent_id: str,
        text: str,
        kinds: Sequence[str],
        knowledge_status: str,
        limit: int,
    ) -> list[tuple[tuple[str, str], float]]:
        # Read by the reader connection: a search does not wait for a commit,
        # nor for an agent's load reading its rows.
        with self._snapshot() as (_, fts):
            return fts.lexical(agent_id, text, kinds, knowledge_status, limit)

    def search_cursor(self, agent_id: str) -> int | None:
        with self._snapshot() as (_, fts):
            return fts.cursor(agent_id)

    def reindex(self, agent_id: str, documents: Sequence[SearchDoc], cursor: int) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._fts.clear(agent_id)
                self._fts.upsert(agent_id, documents)
                self._fts.set_cursor(agent_id, cursor)
                self._db.execute("COMMIT")
            except BaseException:
                _rollback(self._db)
                raise

    # ------------------------------------------------------------------ forgetting

    def forget(
        self,
        agent_id: str,
        entry_ids: Sequence[str],
        forget_id: str,
        changes: ChangeSet,
        record: ForgetRecord,
        bodies: Mapping[str, str] | None = None,
    ) -> None:
        with self._lock:
            db = self._db
            db.execute("PRAGMA secure_delete=ON")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    # One pass over the agent's log (no index on entry ids, see above).
                    for start in range(0, len(entry_ids), 20_000):
                        chunk = json.dumps(list(entry_ids[start : start + 20_000]))
                        db.execute(
                            "UPDATE log SET kind = 'forgotten', body = ? WHERE agent_id = ? "
                            "AND entry_id IN (SELECT value FROM json_each(?))",
                            (redacted_body(forget_id), agent_id, chunk),
                        )
                    db.executemany(
                        "UPDATE log SET body = ? WHERE agent_id = ? AND entry_id = ?",
                        [(body, agent_id, entry_id) for entry_id, body in (bodies or {}).items()],
                    )
                    for table in TABLES:
                        if table != "instances":
                            db.execute(f"DELETE FROM {table} WHERE agent_id = ?", (agent_id,))
                    db.execute(
                        "UPDATE agents SET cursor = 0 WHERE agent_id = ?", (agent_id,)
                    )
                    self._fts.clear(agent_id)
                    db.execute(
                        "INSERT INTO forgets (agent_id, forget_id, body) VALUES (?, ?, ?)",
                        (agent_id, forget_id, record.model_dump_json()),
                    )
                    self._in_forget = True
                    try:
                        self.commit(agent_id, changes)
                    finally:
                        self._in_forget = False
                    db.execute("COMMIT")
                except BaseException:
                    _rollback(db)
                    raise
                # What is left of the text: the index's old segments (merged
                # away, deleted entries dropped), then the WAL's page images.
                self._fts.optimize(agent_id)
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.execute("PRAGMA secure_delete=FAST")

    def forget_records(self, agent_id: str | None = None) -> list[ForgetRecord]:
        with self._lock:
            if agent_id is None:
                rows = self._db.execute("SELECT body FROM forgets ORDER BY seq").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT body FROM forgets WHERE agent_id = ? ORDER BY seq", (agent_id,)
                ).fetchall()
        return [ForgetRecord.model_validate_json(r[0]) for r in rows]

    # ------------------------------------------------------------------ tokens

    def put_token(self, record: TokenRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tokens (token_id, token_hash, agent_id, instance_id, "
                "scope, created_at, revoked) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.token_id,
                    record.token_hash,
                    record.agent_id,
                    record.instance_id,
                    record.scope,
                    record.created_at.isoformat(),
                    int(record.revoked),
                ),
            )

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        # Through the reader: a request's token check does not wait for commits.
        with self._snapshot() as (db, _):
            row = db.execute(
                "SELECT token_id, token_hash, agent_id, instance_id, scope, created_at, revoked "
                "FROM tokens WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
        return _token(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT token_id, token_hash, agent_id, instance_id, scope, created_at, revoked "
                "FROM tokens ORDER BY created_at, token_id"
            ).fetchall()
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE tokens SET revoked = 1 WHERE token_id = ?", (token_id,)
            )
            return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                # First, so that the store's own connection closes last and
                # checkpoints what is left.
                self._checkpointer.close()
                self._checkpointer = None
            with self._read_lock:
                if self._reader is not None:
                    self._reader[0].close()
                    self._reader = None
            self._db.close()


# A scope this version does not know is read as write (the oldest tokens had none).
_SCOPES: dict[str, Literal["write", "read", "review", "admin"]] = {
    "write": "write", "read": "read", "review": "review", "admin": "admin",
}


def _token(row: tuple[str, str, str, str, str, str, int]) -> TokenRecord:
    token_id, token_hash, agent_id, instance_id, scope, created_at, revoked = row
    return TokenRecord(
        token_id=token_id,
        token_hash=token_hash,
        agent_id=agent_id,
        instance_id=instance_id,
        scope=_SCOPES.get(scope, "write"),
        created_at=datetime.fromisoformat(created_at),
        revoked=bool(revoked),
    )
