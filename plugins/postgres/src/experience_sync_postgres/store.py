"""The ``postgresql`` hub store: the log and state in PostgreSQL, shared by several hubs.

URLs are libpq's: ``postgresql://user:password@host:5432/dbname`` (``postgres://``
too), with any libpq parameter in the query string, e.g.
``?sslmode=require`` or ``?options=-csearch_path%3Dxs`` to keep the tables in
their own schema. The tables are created on first use (``xs_`` prefix).

Unlike the SQLite store, several hub processes may write one database, even
for the same agent. Each agent has a row in ``xs_agents`` with a write
``version``. :meth:`PostgresStore.commit` locks that row first (an upsert that
returns the version), refuses with :class:`~experience_sync.errors.StaleStateError`
a change set derived from another version, then writes the log, the state
rows and the units and adds one to the version, all in one transaction. The
merge engine compares versions before trusting its in-memory state and merges
a refused request again on the reloaded agent (see ``docs/postgres.md``).

The store keeps its own text index for search (``text_index = True``):
``xs_search_docs`` with a ``tsvector`` column under a GIN index, written in
the commit transaction and ranked by BM25 in SQL (see :mod:`.search_index`).

It reads in place (``reads_in_place = True``): a page of memories, the
skills, the knowledge and a search of an agent this hub has not loaded are
read from the database, each in one read-only ``REPEATABLE READ``
transaction, so they see the last state any hub committed.

Event-id uniqueness per agent is the log's unique index ``(agent_id,
entry_id)``: a commit that would log an id twice fails whole with
:class:`psycopg.errors.UniqueViolation`, whatever process wrote it first.
A compaction moves the ids of the entries it removes into
``xs_log_compacted``, which :meth:`PostgresStore.seen_events` reads too.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import psycopg
from psycopg_pool import ConnectionPool

from experience_sync.api import (
    TABLES,
    ChangeSet,
    ForgetRecord,
    LogEntry,
    MergeResult,
    SearchDoc,
    StaleStateError,
    Store,
    StoredAgent,
    StoredRow,
    TokenRecord,
    mask_url,
    redacted_body,
)
from experience_sync_postgres import search_index

__all__ = ["DEFAULT_POOL_SIZE", "PostgresStore"]

#: Connections per store (override: ``EXPERIENCE_SYNC_POSTGRES_POOL_SIZE``).
DEFAULT_POOL_SIZE = 10
#: Seconds to wait for the server when the store opens, and for a free connection.
CONNECT_TIMEOUT = 10.0
# Rows per page of iter_log / iter_units, and per fetch of load_agent's
# memories; keys per statement of save_parsed and read_rows.
_PAGE = 2000
# PostgreSQL's LIMIT is a bigint: a larger limit (the engine asks for
# sys.maxsize rows to mean all of them) is clamped to it.
_MAX_LIMIT = 2**63 - 1
# Keys compare byte-wise (COLLATE "C"), as in SQLite, so pages and orders do
# not depend on the database's locale.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS xs_agents (
    agent_id TEXT COLLATE "C" PRIMARY KEY,
    cursor BIGINT NOT NULL DEFAULT 0,
    meta TEXT,
    version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS xs_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    entry_id TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    unit_id TEXT,
    instance_id TEXT NOT NULL,
    request BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS xs_log_entry ON xs_log (agent_id, entry_id);
CREATE INDEX IF NOT EXISTS xs_log_agent ON xs_log (agent_id, seq);
CREATE TABLE IF NOT EXISTS xs_log_compacted (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    agent_id TEXT COLLATE "C" NOT NULL,
    entry_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (agent_id, entry_id)
);
CREATE TABLE IF NOT EXISTS xs_units (
    agent_id TEXT COLLATE "C" NOT NULL,
    unit_id TEXT COLLATE "C" NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (agent_id, unit_id)
);
CREATE TABLE IF NOT EXISTS xs_memories (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    agent_id TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    content_hash TEXT,
    embedding BYTEA,
    normalized TEXT,
    body TEXT NOT NULL,
    parsed BYTEA,
    PRIMARY KEY (agent_id, key)
);
CREATE TABLE IF NOT EXISTS xs_forgets (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    forget_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS xs_tokens (
    token_id TEXT COLLATE "C" PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
"""
# seq keeps the order rows were first written (an upsert keeps it), which is
# the order load_agent returns them in, as SQLite's rowid does.
#
# A key is unique per agent through its SHA-256, not the key itself: a B-tree
# entry holds at most 2704 bytes, and these keys may be longer (a skill or
# knowledge id and a knowledge subject have no length cap; a characteristic
# key of 500 four-byte characters with an agent id of 200 is over 2700 bytes).
_STATE_TABLE = """
CREATE TABLE IF NOT EXISTS xs_{name} (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL
);
"""
_STATE_KEY_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS xs_{name}_key ON xs_{name} (agent_id, xs_key_hash(key))"
)
# convert_to is only STABLE because it looks the encoding up by name; with a
# fixed 'UTF8' its result never changes, so the wrapper may be IMMUTABLE (an
# index expression must be).
_KEY_HASH_FUNCTION = (
    "CREATE FUNCTION xs_key_hash(key text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT "
    "PARALLEL SAFE AS $$ SELECT sha256(convert_to(key, 'UTF8')) $$"
)
# Any constant: serializes schema creation between hubs starting together.
_SCHEMA_LOCK = 0x78735F7067  # "xs_pg"


def _pool_size() -> int:
    raw = os.environ.get("EXPERIENCE_SYNC_POSTGRES_POOL_SIZE")
    if not raw:
        return DEFAULT_POOL_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(
            f"EXPERIENCE_SYNC_POSTGRES_POOL_SIZE must be a positive integer, not {raw!r}"
        )
    return size


def _create_schema(conn: psycopg.Connection[Any]) -> None:
    state_tables = [t for t in TABLES if t != "memories"]
    tables = "".join(_STATE_TABLE.format(name=t) for t in state_tables)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for statement in (_SCHEMA + tables).split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT to_regprocedure('xs_key_hash(text)')").fetchone()
        if row is None or row[0] is None:
            conn.execute(_KEY_HASH_FUNCTION)
        # The text index (a database made before search gets it here; its
        # agents are indexed when a hub first loads them).
        for statement in search_index.SEARCH_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        search_index.upgrade(conn.cursor())
        # A database made before memory rows kept their parse (StoredRow.parsed):
        # the column is added empty (no table rewrite), and each agent's first
        # load fills it. Looked up first: ALTER TABLE would lock the table
        # against every other hub even when there is nothing to add.
        has_parsed = conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = 'xs_memories'::regclass "
            "AND attname = 'parsed' AND NOT attisdropped"
        ).fetchone()
        if has_parsed is None:
            conn.execute("ALTER TABLE xs_memories ADD COLUMN parsed BYTEA")
        for table in state_tables:
            # A database made by an earlier version has the primary key
            # (agent_id, key), which refuses long keys: key on seq instead.
            old_key = conn.execute(
                "SELECT 1 FROM pg_constraint c JOIN pg_attribute a "
                "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
                "WHERE c.conrelid = %s::regclass AND c.contype = 'p' AND a.attname = 'key'",
                (f"xs_{table}",),
            ).fetchone()
            if old_key is not None:
                conn.execute(
                    f"ALTER TABLE xs_{table} DROP CONSTRAINT xs_{table}_pkey, "
                    "ADD PRIMARY KEY (seq)"
                )
            conn.execute(_STATE_KEY_INDEX.format(name=table))


def _utc(conn: psycopg.Connection[Any]) -> None:
    # Token times come back in UTC whatever the server's time zone.
    conn.execute("SET TIME ZONE 'UTC'")


class PostgresStore(Store):
    """The hub store in PostgreSQL: log, materialized state, applied units and tokens.

    :param url: a libpq URL (``postgresql://user@host:5432/dbname``).
    :param pool_size: most connections open at once (default
        :data:`DEFAULT_POOL_SIZE`, or ``EXPERIENCE_SYNC_POSTGRES_POOL_SIZE``).

    Thread-safe: each call takes a connection from a pool. Raises
    :class:`ConnectionError` when the server cannot be reached in
    :data:`CONNECT_TIMEOUT` seconds.
    """

    name = "postgresql"
    #: Search documents live in ``xs_search_docs`` (see :mod:`.search_index`).
    text_index = True
    #: Memory rows keep their parse (``xs_memories.parsed``).
    keeps_parsed = True

    def __init__(self, url: str, pool_size: int | None = None) -> None:
        self.url = url
        size = pool_size if pool_size is not None else _pool_size()
        # One plain connection first: an unreachable server or a bad URL
        # fails here at once with libpq's message, not after the pool's retries.
        try:
            with psycopg.connect(
                url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
            ) as conn:
                _create_schema(conn)
        except psycopg.Error as exc:
            raise ConnectionError(
                f"cannot use the PostgreSQL store at {mask_url(url)}: {exc}"
            ) from exc
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True},
            configure=_utc,
            check=ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT,
            open=False,
            name="experience-sync",
        )
        self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        # A forget runs commit() on its own connection, inside its transaction.
        self._outer = threading.local()

    # ------------------------------------------------------------------ state

    def load_agent(self, agent_id: str) -> StoredAgent:
        with self._pool.connection() as conn, conn.transaction():
            # One snapshot: the version and every row as of one instant.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute(
                "SELECT cursor, meta, version FROM xs_agents WHERE agent_id = %s", (agent_id,)
            ).fetchone()
            out = StoredAgent(cursor=row[0], meta=row[1], version=row[2]) if row else StoredAgent()
            for table in TABLES:
                if table == "memories":
                    # A server-side cursor, a page at a time: the client never
                    # holds the whole result as well as the rows made from it.
                    with conn.cursor(name="xs_load_memories") as pages:
                        pages.itersize = _PAGE
                        pages.execute(
                            "SELECT key, version, body, content_hash, embedding, normalized, "
                            "parsed FROM xs_memories WHERE agent_id = %s ORDER BY seq",
                            (agent_id,),
                        )
                        out.rows[table] = [
                            StoredRow(
                                k,
                                v,
                                b,
                                h,
                                bytes(e) if e is not None else None,
                                n,
                                bytes(p) if p is not None else None,
                            )
                            for k, v, b, h, e, n, p in pages
                        ]
                else:
                    cur = conn.execute(
                        f"SELECT key, version, body FROM xs_{table} WHERE agent_id = %s "
                        "ORDER BY seq",
                        (agent_id,),
                    )
                    out.rows[table] = [StoredRow(k, v, b) for k, v, b in cur]
            return out

    def save_parsed(self, agent_id: str, parsed: Mapping[str, bytes]) -> None:
        """Keep the parses a load had to make (``xs_memories.parsed``), by memory id.

        A cache of what the text gives: the agent's version does not move (no
        other hub need reload), and a memory gone since is skipped. One
        another hub rewrote since may get the parse of its old text, which the
        next load finds does not match and makes again. Each page holds the
        agent's row lock, as a commit does, so the two never lock memory rows
        in opposite orders (a deadlock); a commit waits a page at most.
        """
        if not parsed:
            return
        keys = list(parsed)
        with self._pool.connection() as conn:
            for start in range(0, len(keys), _PAGE):
                page = keys[start : start + _PAGE]
                with conn.transaction():
                    conn.execute(
                        "SELECT 1 FROM xs_agents WHERE agent_id = %s FOR UPDATE", (agent_id,)
                    )
                    conn.execute(
                        "UPDATE xs_memories AS m SET parsed = r.parsed "
                        "FROM unnest(%s::text[], %s::bytea[]) AS r(key, parsed) "
                        "WHERE m.agent_id = %s AND m.key = r.key",
                        (page, [parsed[k] for k in page], agent_id),
                    )

    # ------------------------------------------------------------------ reads in place

    #: A page of memories, the skills, the knowledge and a search of an agent
    #: this hub has not loaded are read from the database: the last state any
    #: hub committed, as a load would build it.
    reads_in_place = True

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in a read-only transaction: its statements see one state."""
        with self._pool.connection() as conn, conn.transaction():
            # REPEATABLE READ: the snapshot is taken at the first statement and
            # kept, so a commit of another hub between two statements (the
            # count and the page, or two chunks of keys) is not half seen.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    def agent_cursor(self, agent_id: str) -> int:
        # One statement (autocommit): one committed state already.
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT cursor FROM xs_agents WHERE agent_id = %s", (agent_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def read_rows(self, agent_id: str, table: str, keys: Sequence[str]) -> list[StoredRow]:
        _check_table(table)
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        if table == "memories":
            # The primary key (agent_id, key).
            sql = (
                "SELECT key, version, body FROM xs_memories WHERE agent_id = %s AND key = ANY(%s)"
            )
        else:
            # These tables are unique on (agent_id, xs_key_hash(key)), not on
            # the key: look the hashes up through that index (the ARRAY is
            # computed once, before the scan), then compare the keys.
            sql = (
                f"SELECT key, version, body FROM xs_{table} WHERE agent_id = %s "
                "AND xs_key_hash(key) = ANY(ARRAY(SELECT xs_key_hash(k) FROM unnest(%s::text[]) "
                "AS k)) AND key = ANY(%s)"
            )
        out: list[StoredRow] = []
        with self._snapshot() as conn:
            for start in range(0, len(keys), _PAGE):
                chunk = keys[start : start + _PAGE]
                params = (agent_id, chunk) if table == "memories" else (agent_id, chunk, chunk)
                out += [StoredRow(k, v, b) for k, v, b in conn.execute(sql, params)]
        return out

    def page_rows(
        self, agent_id: str, table: str, offset: int, limit: int
    ) -> tuple[list[StoredRow], int]:
        _check_table(table)
        with self._snapshot() as conn:
            row = conn.execute(
                f"SELECT count(*) FROM xs_{table} WHERE agent_id = %s", (agent_id,)
            ).fetchone()
            total = int(row[0]) if row else 0
            # ORDER BY seq: load_agent's order. Only key, version and body
            # (a memory's embedding and parse are for the load).
            cur = conn.execute(
                f"SELECT key, version, body FROM xs_{table} WHERE agent_id = %s "
                "ORDER BY seq LIMIT %s OFFSET %s",
                (agent_id, min(max(0, limit), _MAX_LIMIT), min(max(0, offset), _MAX_LIMIT)),
            )
            rows = [StoredRow(k, v, b) for k, v, b in cur]
        return rows, total

    def agents(self) -> list[str]:
        # Every commit writes the agent's row, so the log holds no other agent.
        with self._pool.connection() as conn:
            cur = conn.execute("SELECT agent_id FROM xs_agents ORDER BY agent_id")
            return [r[0] for r in cur]

    def agent_version(self, agent_id: str) -> int:
        """The agent's write version (0 if unknown): several processes write this store."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT version FROM xs_agents WHERE agent_id = %s", (agent_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def seen_events(self, agent_id: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        with self._pool.connection() as conn:
            ids = list(event_ids)
            cur = conn.execute(
                "SELECT entry_id FROM xs_log WHERE agent_id = %s AND entry_id = ANY(%s) "
                "UNION ALL SELECT entry_id FROM xs_log_compacted "
                "WHERE agent_id = %s AND entry_id = ANY(%s)",
                (agent_id, ids, agent_id, ids),
            )
            return {r[0] for r in cur}

    def applied_unit(self, agent_id: str, unit_id: str) -> MergeResult | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT result FROM xs_units WHERE agent_id = %s AND unit_id = %s",
                (agent_id, unit_id),
            ).fetchone()
        return MergeResult.model_validate_json(row[0]) if row else None

    def commit(self, agent_id: str, changes: ChangeSet) -> None:
        for table in changes.rows:
            _check_table(table)
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Lock the agent's row (created if new) for the whole transaction:
            # commits to one agent are serialized across every process, and
            # the version read here is the one this commit replaces.
            cur.execute(
                "INSERT INTO xs_agents AS a (agent_id) VALUES (%s) ON CONFLICT (agent_id) "
                "DO UPDATE SET version = a.version RETURNING a.version, a.cursor",
                (agent_id,),
            )
            row = cur.fetchone()
            assert row is not None
            version, previous = int(row[0]), int(row[1])
            if changes.expect_version is not None and version != changes.expect_version:
                raise StaleStateError(
                    f"agent {agent_id!r} is at version {version}, the changes were made "
                    f"at {changes.expect_version}: another process committed first"
                )
            if changes.log:
                # COPY is the fastest bulk insert; the unique index still refuses
                # an entry id the log holds (the transaction then rolls back).
                with cur.copy(
                    "COPY xs_log (agent_id, entry_id, kind, unit_id, instance_id, request, body) "
                    "FROM STDIN"
                ) as copy:
                    for e in changes.log:
                        copy.write_row(
                            (
                                agent_id,
                                e.entry_id,
                                e.kind,
                                e.unit_id,
                                e.instance_id,
                                e.request,
                                e.body,
                            )
                        )
            for table, rows in changes.rows.items():
                if not rows:
                    continue
                if table == "memories":
                    cur.executemany(
                        "INSERT INTO xs_memories (agent_id, key, version, content_hash, "
                        "embedding, normalized, body, parsed) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (agent_id, key) DO UPDATE SET "
                        "version = excluded.version, content_hash = excluded.content_hash, "
                        "embedding = excluded.embedding, normalized = excluded.normalized, "
                        "body = excluded.body, "
                        # No parse: the row's text did not change, its parse stays.
                        "parsed = COALESCE(excluded.parsed, xs_memories.parsed)",
                        [
                            (
                                agent_id,
                                r.key,
                                r.version,
                                r.content_hash,
                                r.embedding,
                                r.normalized,
                                r.body,
                                r.parsed,
                            )
                            for r in rows
                        ],
                    )
                else:
                    cur.executemany(
                        f"INSERT INTO xs_{table} (agent_id, key, version, body) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (agent_id, xs_key_hash(key)) "
                        "DO UPDATE SET "
                        "version = excluded.version, body = excluded.body",
                        [(agent_id, r.key, r.version, r.body) for r in rows],
                    )
            if changes.seen:
                cur.executemany(
                    "INSERT INTO xs_log_compacted (agent_id, entry_id) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    [(agent_id, i) for i in changes.seen],
                )
            if changes.units:
                cur.executemany(
                    "INSERT INTO xs_units (agent_id, unit_id, result) VALUES (%s, %s, %s) "
                    "ON CONFLICT (agent_id, unit_id) DO UPDATE SET result = excluded.result",
                    [
                        (agent_id, unit_id, result.model_dump_json())
                        for unit_id, result in changes.units
                    ],
                )
            search_index.commit_documents(
                cur, agent_id, changes.documents, previous, changes.cursor
            )
            cur.execute(
                "UPDATE xs_agents SET cursor = %s, meta = COALESCE(%s, meta), "
                "version = version + 1 WHERE agent_id = %s",
                (changes.cursor, changes.meta, agent_id),
            )

    def _pages(self, sql: str, agent_id: str, after: object) -> Iterator[tuple[Any, ...]]:
        # Keyset pages along the first column (``sql`` takes the agent and the
        # last key seen): a long table never sits in memory at once, and no
        # connection is held while the caller works on a page.
        while True:
            with self._pool.connection() as conn:
                rows = conn.execute(sql, (agent_id, after)).fetchall()
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    def iter_units(self, agent_id: str) -> Iterator[tuple[str, MergeResult]]:
        for unit_id, result in self._pages(
            "SELECT unit_id, result FROM xs_units WHERE agent_id = %s AND unit_id > %s "
            f"ORDER BY unit_id LIMIT {_PAGE}",
            agent_id,
            "",
        ):
            yield unit_id, MergeResult.model_validate_json(result)

    def iter_log(self, agent_id: str) -> Iterator[LogEntry]:
        # Commits to one agent are serialized by its row lock, so the order
        # of seq is the order they committed in.
        for _, entry_id, kind, body, unit_id, instance_id, request in self._pages(
            "SELECT seq, entry_id, kind, body, unit_id, instance_id, request FROM xs_log "
            f"WHERE agent_id = %s AND seq > %s ORDER BY seq LIMIT {_PAGE}",
            agent_id,
            0,
        ):
            yield LogEntry(entry_id, kind, body, unit_id, instance_id, request)

    # ------------------------------------------------------------------ compaction

    def compact(
        self, agent_id: str, snapshot: LogEntry, expect_version: int | None = None
    ) -> int:
        through = snapshot.request
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # The agent's row lock serializes this with every commit to it.
            cur.execute(
                "SELECT version FROM xs_agents WHERE agent_id = %s FOR UPDATE", (agent_id,)
            )
            row = cur.fetchone()
            if row is None:
                return 0
            if expect_version is not None and int(row[0]) != expect_version:
                raise StaleStateError(
                    f"agent {agent_id!r} is at version {row[0]}, the snapshot was read at "
                    f"{expect_version}: another process committed first"
                )
            cur.execute(
                "SELECT MAX(seq), COUNT(*) FROM xs_log WHERE agent_id = %s AND request <= %s",
                (agent_id, through),
            )
            head, removed = cur.fetchone() or (None, 0)
            if head is None:
                return 0
            cur.execute(
                "INSERT INTO xs_log_compacted (agent_id, entry_id) SELECT agent_id, entry_id "
                "FROM xs_log WHERE agent_id = %s AND request <= %s AND kind <> 'snapshot' "
                "ON CONFLICT DO NOTHING",
                (agent_id, through),
            )
            cur.execute(
                "DELETE FROM xs_log WHERE agent_id = %s AND request <= %s", (agent_id, through)
            )
            # The last removed seq: before every entry the snapshot does not cover.
            cur.execute(
                "INSERT INTO xs_log (seq, agent_id, entry_id, kind, unit_id, instance_id, "
                "request, body) OVERRIDING SYSTEM VALUE "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (head, agent_id, snapshot.entry_id, snapshot.kind, snapshot.unit_id,
                 snapshot.instance_id, snapshot.request, snapshot.body),
            )
            return int(removed)

    def iter_compacted(self, agent_id: str) -> Iterator[str]:
        for _, entry_id in self._pages(
            "SELECT seq, entry_id FROM xs_log_compacted WHERE agent_id = %s AND seq > %s "
            f"ORDER BY seq LIMIT {_PAGE}",
            agent_id,
            0,
        ):
            yield entry_id

    def rewrite_log(self, agent_id: str, bodies: Mapping[str, str]) -> int:
        if not bodies:
            return 0
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "UPDATE xs_log AS l SET body = r.body FROM unnest(%s::text[], %s::text[]) "
                "AS r(entry_id, body) WHERE l.agent_id = %s AND l.entry_id = r.entry_id",
                (list(bodies), list(bodies.values()), agent_id),
            )
            return cur.rowcount

    def reset_state(self, agent_id: str) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT 1 FROM xs_agents WHERE agent_id = %s FOR UPDATE", (agent_id,))
            # Applied units and instance statuses are not derived from the
            # log: they stay, so re-sent batches are still recognised.
            for table in TABLES:
                if table != "instances":
                    conn.execute(f"DELETE FROM xs_{table} WHERE agent_id = %s", (agent_id,))
            with conn.cursor() as cur:
                search_index.clear(cur, agent_id)
            conn.execute(
                "UPDATE xs_agents SET cursor = 0, meta = NULL, version = version + 1 "
                "WHERE agent_id = %s",
                (agent_id,),
            )

    # ------------------------------------------------------------------ search

    def search_text(
        self,
        agent_id: str,
        text: str,
        kinds: Sequence[str],
        knowledge_status: str,
        limit: int,
    ) -> list[tuple[tuple[str, str], float]]:
        """``ts_rank_cd``-ranked matches (see :mod:`experience_sync_postgres.search_index`)."""
        with self._pool.connection() as conn:
            return search_index.lexical(conn, agent_id, text, kinds, knowledge_status, limit)

    def search_cursor(self, agent_id: str) -> int | None:
        with self._pool.connection() as conn:
            return search_index.cursor_of(conn, agent_id)

    def reindex(self, agent_id: str, documents: Sequence[SearchDoc], cursor: int) -> None:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            search_index.reindex(cur, agent_id, documents, cursor)

    # ------------------------------------------------------------------ forgetting

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        # The forget's connection while it commits (its transaction() nests
        # as a savepoint), else one from the pool.
        outer: psycopg.Connection[Any] | None = getattr(self._outer, "conn", None)
        if outer is not None:
            yield outer
            return
        with self._pool.connection() as conn:
            yield conn

    def forget(
        self,
        agent_id: str,
        entry_ids: Sequence[str],
        forget_id: str,
        changes: ChangeSet,
        record: ForgetRecord,
        bodies: Mapping[str, str] | None = None,
    ) -> None:
        with self._pool.connection() as conn:
            with conn.transaction(), conn.cursor() as cur:
                row = cur.execute(
                    "SELECT version FROM xs_agents WHERE agent_id = %s FOR UPDATE", (agent_id,)
                ).fetchone()
                version = int(row[0]) if row else 0
                if changes.expect_version is not None and version != changes.expect_version:
                    raise StaleStateError(
                        f"agent {agent_id!r} is at version {version}, the forget was planned "
                        f"at {changes.expect_version}: another process committed first"
                    )
                cur.execute(
                    "UPDATE xs_log SET kind = 'forgotten', body = %s "
                    "WHERE agent_id = %s AND entry_id = ANY(%s)",
                    (redacted_body(forget_id), agent_id, list(entry_ids)),
                )
                cur.executemany(
                    "UPDATE xs_log SET body = %s WHERE agent_id = %s AND entry_id = %s",
                    [(body, agent_id, entry_id) for entry_id, body in (bodies or {}).items()],
                )
                for table in TABLES:
                    if table != "instances":
                        cur.execute(f"DELETE FROM xs_{table} WHERE agent_id = %s", (agent_id,))
                search_index.clear(cur, agent_id)
                cur.execute("UPDATE xs_agents SET cursor = 0 WHERE agent_id = %s", (agent_id,))
                cur.execute(
                    "INSERT INTO xs_forgets (agent_id, forget_id, body) VALUES (%s, %s, %s)",
                    (agent_id, forget_id, record.model_dump_json()),
                )
                self._outer.conn = conn
                try:
                    self.commit(agent_id, changes)
                finally:
                    self._outer.conn = None
            # The rewritten rows' old versions are dead tuples: make their
            # space reusable now (VACUUM FULL would rewrite the files; see
            # docs/postgres.md).
            for table in ("xs_log", "xs_search_docs", "xs_memories", "xs_knowledge",
                          "xs_skills", "xs_characteristics", "xs_reviews"):
                conn.execute(f"VACUUM {table}")

    def forget_records(self, agent_id: str | None = None) -> list[ForgetRecord]:
        with self._pool.connection() as conn:
            if agent_id is None:
                rows = conn.execute("SELECT body FROM xs_forgets ORDER BY seq").fetchall()
            else:
                rows = conn.execute(
                    "SELECT body FROM xs_forgets WHERE agent_id = %s ORDER BY seq", (agent_id,)
                ).fetchall()
        return [ForgetRecord.model_validate_json(r[0]) for r in rows]

    # ------------------------------------------------------------------ tokens

    def put_token(self, record: TokenRecord) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO xs_tokens (token_id, token_hash, agent_id, instance_id, scope, "
                "created_at, revoked) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (token_id) DO UPDATE SET token_hash = excluded.token_hash, "
                "agent_id = excluded.agent_id, instance_id = excluded.instance_id, "
                "scope = excluded.scope, created_at = excluded.created_at, "
                "revoked = excluded.revoked",
                (
                    record.token_id,
                    record.token_hash,
                    record.agent_id,
                    record.instance_id,
                    record.scope,
                    record.created_at,
                    record.revoked,
                ),
            )

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT token_id, token_hash, agent_id, instance_id, scope, created_at, revoked "
                "FROM xs_tokens WHERE token_hash = %s",
                (token_hash,),
            ).fetchone()
        return _token(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT token_id, token_hash, agent_id, instance_id, scope, created_at, revoked "
                "FROM xs_tokens ORDER BY created_at, token_id"
            ).fetchall()
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE xs_tokens SET revoked = TRUE WHERE token_id = %s", (token_id,)
            )
            return cur.rowcount > 0

    def close(self) -> None:
        self._pool.close()


# A scope this version does not know is read as write (the oldest tokens had none).
_SCOPES: dict[str, Literal["write", "read", "review", "admin"]] = {
    "write": "write", "read": "read", "review": "review", "admin": "admin",
}


def _token(row: tuple[Any, ...]) -> TokenRecord:
    token_id, token_hash, agent_id, instance_id, scope, created_at, revoked = row
    assert isinstance(created_at, datetime)
    return TokenRecord(
        token_id=token_id,
        token_hash=token_hash,
        agent_id=agent_id,
        instance_id=instance_id,
        scope=_SCOPES.get(scope, "write"),
        created_at=created_at.astimezone(timezone.utc),
        revoked=bool(revoked),
    )


def _check_table(table: str) -> None:
    """A state table's name, checked before it goes into SQL (``ValueError`` naming it)."""
    if table not in TABLES:
        raise ValueError(f"unknown state table {table!r}")
