"""The PostgreSQL store's text index: full-text search documents beside the state.

One table, ``xs_search_docs``, holds a row per search document of every agent
(``agent_id``, ``kind``, ``key``; unique through ``xs_key_hash(key)`` as the
state tables are), with the document's text and a generated ``tsvector``
column (``to_tsvector('english', text)``: PostgreSQL's English Snowball
stemmer and stop words) under a GIN index. ``xs_search_cursors`` records, per
agent, the agent cursor through which the index is complete.

Written in the agent's commit transaction (after the commit's version check
and under the agent's row lock), so the index never disagrees with the state
after a crash, and hubs sharing the database never interleave two commits'
documents. Each document row also carries the cursor of the commit (or
reindex) that wrote it: a reindex built from a state another hub has since
moved past keeps the newer documents, so it can never roll the index back.

The index cursor only moves forward with a commit when the index was complete
at the state the commit replaced (its cursor equals the agent's previous
cursor), or the agent is new; otherwise (a database made before search
existed) it stays behind and the next hub to load the agent reindexes it.

Ranking is BM25, as FTS5's ``bm25()`` in the SQLite store: the query's words
(:func:`experience_sync.api.query_terms`, stop words dropped) are stemmed by
``to_tsvector('english', ...)`` and a document matches when it holds any of
them (OR); each matched lexeme adds ``idf * tf * (k1 + 1) / (tf + k1 * (1 - b
+ b * dl / avgdl))`` with ``k1 = 1.2``, ``b = 0.75``, ``idf = ln(1 + (N - df +
0.5) / (df + 0.5))`` over the agent's documents. ``tf`` is the number of the
lexeme's positions in the document and ``dl`` its number of distinct lexemes
(FTS5 counts tokens), so scores are close to, not equal to, SQLite's.
PostgreSQL's ``ts_rank_cd`` was not used: it has no inverse document
frequency, so a short document holding the query's two commonest words beat
the one holding all three.

The ``text`` column holds what is indexed: the document's text as
:func:`experience_sync.recall.documents.index_text` spells it, as the SQLite store's FTS5
table indexes it (an identifier such as ``rotate_keys_checkout_flow`` as one
fused token plus those of its words the text does not already say:
PostgreSQL's parser, like FTS5's, splits it at the underscores, so a skill's
name would otherwise count its words once more than its uses say them).
Hits are built from the hub's live state, never from this column.
``xs_search_meta`` records the index version (:data:`INDEX_VERSION`); a
database indexed by an older version has its index cursors dropped when the
store opens it, so a hub reindexes each agent when it next loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from experience_sync.api import KINDS, SearchDoc, index_text, query_terms

__all__ = [
    "INDEX_VERSION",
    "SEARCH_SCHEMA",
    "clear",
    "commit_documents",
    "cursor_of",
    "lexical",
    "reindex",
    "upgrade",
]

#: What the ``text`` column holds. 1: the document's text. 2: ``index_text`` of it.
INDEX_VERSION = 2

SEARCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS xs_search_docs (
    agent_id TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    status TEXT NOT NULL,
    text TEXT NOT NULL,
    cursor BIGINT NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED,
    dl INTEGER GENERATED ALWAYS AS (length(to_tsvector('english'::regconfig, text))) STORED
);
CREATE UNIQUE INDEX IF NOT EXISTS xs_search_docs_key
    ON xs_search_docs (agent_id, kind, xs_key_hash(key));
CREATE INDEX IF NOT EXISTS xs_search_docs_tsv ON xs_search_docs USING GIN (tsv);
CREATE TABLE IF NOT EXISTS xs_search_cursors (
    agent_id TEXT COLLATE "C" PRIMARY KEY,
    cursor BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS xs_search_meta (
    name TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);
"""

Cursor = psycopg.Cursor[Any]

_UPSERT = (
    "INSERT INTO xs_search_docs (agent_id, kind, key, status, text, cursor) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (agent_id, kind, xs_key_hash(key)) "
    "DO UPDATE SET status = excluded.status, text = excluded.text, cursor = excluded.cursor "
)


def upgrade(cur: Cursor) -> None:
    """Bring an index written by an older version up to :data:`INDEX_VERSION`.

    Its cursors are dropped, so each agent's index counts as incomplete and
    the next hub to load the agent reindexes it (with this version's text).
    Call inside the schema transaction, after :data:`SEARCH_SCHEMA`.
    """
    row = cur.execute("SELECT value FROM xs_search_meta WHERE name = 'index_version'").fetchone()
    if row is not None and int(row[0]) >= INDEX_VERSION:
        return
    new = row is None and cur.execute("SELECT 1 FROM xs_search_cursors LIMIT 1").fetchone() is None
    if not new:
        cur.execute("DELETE FROM xs_search_cursors")
    cur.execute(
        "INSERT INTO xs_search_meta (name, value) VALUES ('index_version', %s) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (INDEX_VERSION,),
    )


def _rows(agent_id: str, docs: Sequence[SearchDoc], cursor: int) -> list[tuple[Any, ...]]:
    # A text column cannot hold NUL, which free text may (ids and keys cannot);
    # no word has one, so a space indexes the same words.
    return [
        (agent_id, d.kind, d.key, d.status, index_text(d.text.replace("\x00", " ")), cursor)
        for d in docs
    ]


def _latest(documents: Sequence[SearchDoc]) -> list[SearchDoc]:
    latest: dict[tuple[str, str], SearchDoc] = {}
    for doc in documents:
        latest[doc.doc_key] = doc  # the last version of a key wins
    return list(latest.values())


def commit_documents(
    cur: Cursor, agent_id: str, documents: Sequence[SearchDoc], previous: int, cursor: int
) -> None:
    """Write a commit's documents and move the index cursor from ``previous`` to ``cursor``.

    Call inside the commit's transaction, with the agent's row locked.
    """
    docs = _latest(documents)
    if docs:
        cur.executemany(_UPSERT, _rows(agent_id, docs, cursor))
    cur.execute(
        "UPDATE xs_search_cursors SET cursor = %s WHERE agent_id = %s AND cursor = %s",
        (cursor, agent_id, previous),
    )
    if cur.rowcount == 0 and previous == 0:
        # A new agent: nothing came before this commit.
        cur.execute(
            "INSERT INTO xs_search_cursors (agent_id, cursor) VALUES (%s, %s) "
            "ON CONFLICT (agent_id) DO NOTHING",
            (agent_id, cursor),
        )


def reindex(cur: Cursor, agent_id: str, documents: Sequence[SearchDoc], cursor: int) -> None:
    """Make the index hold ``documents`` (the agent's state at ``cursor``), inside a transaction.

    Documents written since ``cursor`` by another hub's commits are newer and
    stay; the index is then complete at the agent's current cursor.
    """
    row = cur.execute(
        "SELECT cursor FROM xs_agents WHERE agent_id = %s FOR UPDATE", (agent_id,)
    ).fetchone()
    current = int(row[0]) if row else 0
    docs = _latest(documents)
    if docs:
        cur.executemany(
            _UPSERT + "WHERE xs_search_docs.cursor <= excluded.cursor", _rows(agent_id, docs, cursor)
        )
    # What the state at ``cursor`` does not hold and no later commit wrote.
    cur.execute(
        "DELETE FROM xs_search_docs d WHERE d.agent_id = %s AND d.cursor <= %s "
        "AND NOT EXISTS (SELECT 1 FROM unnest(%s::text[], %s::text[]) AS k(kind, key) "
        "WHERE k.kind = d.kind AND k.key = d.key)",
        (agent_id, cursor, [d.kind for d in docs], [d.key for d in docs]),
    )
    cur.execute(
        "INSERT INTO xs_search_cursors (agent_id, cursor) VALUES (%s, %s) "
        "ON CONFLICT (agent_id) DO UPDATE SET cursor = excluded.cursor",
        (agent_id, max(current, cursor)),
    )


def clear(cur: Cursor, agent_id: str) -> None:
    """Drop the agent's documents: its state is empty (cursor 0), and so is its index."""
    cur.execute("DELETE FROM xs_search_docs WHERE agent_id = %s", (agent_id,))
    cur.execute(
        "INSERT INTO xs_search_cursors (agent_id, cursor) VALUES (%s, 0) "
        "ON CONFLICT (agent_id) DO UPDATE SET cursor = 0",
        (agent_id,),
    )


def lexical(
    conn: psycopg.Connection[Any],
    agent_id: str,
    text: str,
    kinds: Sequence[str],
    knowledge_status: str,
    limit: int,
) -> list[tuple[tuple[str, str], float]]:
    """The best BM25 matches, best first, as ``((kind, key), score)``; higher is better."""
    terms = query_terms(text)
    if not terms or limit <= 0 or not kinds:
        return []
    where = ["TRUE"]  # the agent is the join's
    params: list[object] = [terms, agent_id, agent_id, agent_id]
    if set(kinds) != set(KINDS):
        where.append("d.kind = ANY(%s)")
        params.append(list(kinds))
    if "knowledge" in kinds and knowledge_status != "all":
        where.append("(d.kind <> 'knowledge' OR d.status = %s)")
        params.append(knowledge_status)
    params.append(limit)
    with conn.transaction():
        # The planner's estimate of this small query is high enough to start
        # the JIT compiler, which costs far more than the query itself.
        conn.execute("SET LOCAL jit = off")
        rows = conn.execute(_BM25.format(where=" AND ".join(where)), params).fetchall()
    return [((str(kind), str(key)), float(score)) for kind, key, score in rows]


# The CTEs are MATERIALIZED so each lexeme's document frequency is counted
# once, not once per matching row.
# BM25 (k1 = 1.2, b = 0.75) over the query's stemmed lexemes: a lexeme's
# document frequency is counted through the GIN index, its frequency in a
# document is the number of its positions there, a document's length is its
# number of distinct lexemes (``dl``), and N and the average length are the
# agent's. Every document of the agent counts for N and the frequencies,
# whatever its kind or status, as in the SQLite store's FTS5 table.
_BM25 = """
WITH lexemes AS MATERIALIZED (
    SELECT DISTINCT l.lexeme, to_tsquery('simple', quote_literal(l.lexeme)) AS q
    FROM unnest(%s::text[]) AS t(term),
         unnest(to_tsvector('english'::regconfig, t.term)) AS l
), stats AS MATERIALIZED (
    SELECT count(*)::float8 AS n, coalesce(avg(dl), 1)::float8 AS avgdl
    FROM xs_search_docs WHERE agent_id = %s
), freq AS MATERIALIZED (
    SELECT x.lexeme, x.q, (
        SELECT count(*) FROM xs_search_docs f WHERE f.agent_id = %s AND f.tsv @@ x.q
    )::float8 AS df
    FROM lexemes x
)
SELECT d.kind, d.key, sum(
    ln(1 + (s.n - freq.df + 0.5) / (freq.df + 0.5))
    * (tf.tf * 2.2) / (tf.tf + 1.2 * (0.25 + 0.75 * d.dl / greatest(s.avgdl, 1)))
) AS score
FROM freq
JOIN xs_search_docs d ON d.agent_id = %s AND d.tsv @@ freq.q
CROSS JOIN stats s
CROSS JOIN LATERAL (
    SELECT coalesce(cardinality(u.positions), 1)::float8 AS tf
    FROM unnest(d.tsv) AS u WHERE u.lexeme = freq.lexeme
) AS tf
WHERE {where}
GROUP BY d.kind, d.key
ORDER BY score DESC, d.kind, d.key
LIMIT %s
"""


def cursor_of(conn: psycopg.Connection[Any], agent_id: str) -> int | None:
    """The agent cursor the index is complete at (``None``: never indexed)."""
    row = conn.execute(
        "SELECT cursor FROM xs_search_cursors WHERE agent_id = %s", (agent_id,)
    ).fetchone()
    return None if row is None else int(row[0])
