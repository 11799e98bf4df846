"""A BM25 text index in SQLite FTS5, shared by the SQLite hub store and every replica.

Each agent gets its own pair of tables (an FTS5 table and a table of document
fields, named after a hash of the agent id), so a query ranks one agent's
documents exactly as a bare FTS5 query over them would, however many agents
share the file. The caller owns the connection, its lock and its
transactions: the SQLite store writes documents inside the commit of the
state they index, so the index and the state never disagree after a crash.

Text is tokenized by FTS5's ``porter unicode61`` tokenizer (Unicode word
characters, case and diacritics folded, English Porter stemming: *payments*
finds *payment*). What is indexed is the document's text as
:func:`~experience_sync.recall.documents.index_text` spells it (an identifier
such as ``payments_api`` as one fused token plus those of its words the text
does not already say); the text itself is kept beside it, unindexed, for the
hits. A query is the OR of its words without English stop words (an
identifier: its fused token and its words), ranked by FTS5's ``bm25()``.

An index written by an older version (:data:`INDEX_VERSION`) is rebuilt from
the texts it holds when it is opened, in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from .documents import DocKey, SearchDoc, identifier_terms, index_text

__all__ = [
    "INDEX_VERSION",
    "STOP_WORDS",
    "FtsIndex",
    "fts5_available",
    "match_expression",
    "query_terms",
]

#: The layout of the index and the text it holds. 1: the document's text,
#: indexed as is. 2: the text unindexed, and indexed as ``index_text`` spells it.
INDEX_VERSION = 2

#: Words a query drops before matching (they would match nearly every document).
STOP_WORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "s", "t", "don"]
)
# "down", "not", "no", "off", "out", "up" carry meaning in agents' memories
# ("payments down", "do not retry"): keep them.
STOP_WORDS = STOP_WORDS - {"down", "not", "no", "off", "out", "up", "nor", "only"}

_WORD = re.compile(r"\w+", re.UNICODE)
_TOKENIZE = "porter unicode61 remove_diacritics 2"


def fts5_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite build has FTS5."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.xs_fts5_probe USING fts5(x)")
        conn.execute("DROP TABLE temp.xs_fts5_probe")
    except sqlite3.OperationalError:
        return False
    return True


def query_terms(text: str) -> list[str]:
    """The words of a query that take part in matching (stop words dropped unless all are).

    An identifier (``payments_api``) takes part as its fused token
    (``paymentsapi``, as :func:`~experience_sync.recall.documents.index_text`
    indexes it) and as its words.
    """
    words = [t for w in _WORD.findall(text) for t in identifier_terms(w.casefold())]
    kept = [w for w in words if w not in STOP_WORDS]
    return list(dict.fromkeys(kept or words))[:64]


def match_expression(text: str) -> str | None:
    """The FTS5 MATCH expression of a query (``None`` when it has no words)."""
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _tag(agent_id: str) -> str:
    return hashlib.sha256(agent_id.encode()).hexdigest()[:16]


class FtsIndex:
    """The search documents of many agents in one SQLite database.

    :param conn: an open connection; the index creates its tables on it.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        if not fts5_available(conn):
            raise RuntimeError("this SQLite build has no FTS5: search needs SQLite with FTS5")
        self.conn = conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS recall_agents ("
            " agent_id TEXT PRIMARY KEY, tag TEXT NOT NULL UNIQUE, cursor INTEGER)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS recall_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        )
        self._tags: dict[str, str] = {}
        self._upgrade()

    def _version(self) -> int:
        row = self.conn.execute(
            "SELECT value FROM recall_meta WHERE name = 'index_version'"
        ).fetchone()
        if row is not None:
            return int(row[0])
        # No version recorded: an index from before versions (1) if it holds agents.
        return 1 if self.conn.execute("SELECT 1 FROM recall_agents LIMIT 1").fetchone() else 0

    def _upgrade(self) -> None:
        """Rebuild every agent's FTS5 table written by an older version, in one transaction."""
        if self._version() >= INDEX_VERSION:
            return
        conn = self.conn
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN IMMEDIATE")
        try:
            if self._version() < INDEX_VERSION:  # another process may have done it meanwhile
                for (tag,) in conn.execute("SELECT tag FROM recall_agents").fetchall():
                    fts = f"recall_fts_{tag}"
                    exists = conn.execute(
                        "SELECT 1 FROM sqlite_master WHERE name = ?", (fts,)
                    ).fetchone()
                    # Version 1 indexed (text, kind UNINDEXED, status UNINDEXED).
                    rows = (
                        conn.execute(f"SELECT rowid, text, kind, status FROM {fts}").fetchall()
                        if exists else []
                    )
                    conn.execute(f"DROP TABLE IF EXISTS {fts}")
                    self._create_fts(fts)
                    conn.executemany(
                        f"INSERT INTO {fts} (rowid, text, terms, kind, status) VALUES (?, ?, ?, ?, ?)",
                        [(r[0], r[1], index_text(str(r[1])), r[2], r[3]) for r in rows],
                    )
                conn.execute(
                    "INSERT OR REPLACE INTO recall_meta (name, value) VALUES ('index_version', ?)",
                    (INDEX_VERSION,),
                )
            if own:
                conn.execute("COMMIT")
        except BaseException:
            if own and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _create_fts(self, fts: str) -> None:
        # ``text`` is what a hit shows; ``terms`` (``index_text`` of it) is what matches.
        self.conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5("
            f"text UNINDEXED, terms, kind UNINDEXED, status UNINDEXED, tokenize='{_TOKENIZE}')"
        )

    # ------------------------------------------------------------------ tables

    def _tables(self, agent_id: str, create: bool) -> tuple[str, str] | None:
        tag = self._tags.get(agent_id)
        if tag is None:
            row = self.conn.execute(
                "SELECT tag FROM recall_agents WHERE agent_id = ?", (agent_id,)
            ).fetchone()
            if row is None:
                if not create:
                    return None
                tag = _tag(agent_id)
                self.conn.execute(
                    "INSERT INTO recall_agents (agent_id, tag, cursor) VALUES (?, ?, NULL)",
                    (agent_id, tag),
                )
                self._create_fts(f"recall_fts_{tag}")
                self.conn.execute(
                    f"CREATE TABLE IF NOT EXISTS recall_docs_{tag} ("
                    " id INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL,"
                    " status TEXT NOT NULL, confidence REAL NOT NULL, tags TEXT NOT NULL,"
                    " instances TEXT NOT NULL, verifications INTEGER NOT NULL,"
                    " updated TEXT NOT NULL, body TEXT NOT NULL, local INTEGER NOT NULL,"
                    " seq INTEGER NOT NULL, embedding BLOB, UNIQUE (kind, key))"
                )
            else:
                tag = str(row[0])
            self._tags[agent_id] = tag
        return f"recall_fts_{tag}", f"recall_docs_{tag}"

    # ------------------------------------------------------------------ writes

    def upsert(
        self,
        agent_id: str,
        docs: Iterable[SearchDoc],
        embeddings: dict[DocKey, bytes] | None = None,
    ) -> None:
        """Insert or replace documents (and their vectors, when given).

        Written in a few statements per call, whatever the number of
        documents: existing rows are found in one query, then updated and
        new rows inserted with ``executemany``.
        """
        tables = self._tables(agent_id, create=True)
        assert tables is not None
        fts, table = tables
        latest: dict[DocKey, SearchDoc] = {}
        for doc in docs:
            latest[doc.doc_key] = doc  # the last version of a key wins
        if not latest:
            return
        conn = self.conn
        existing = dict(self._ids(table, list(latest)))
        rows = []
        fts_rows = []
        next_id = None
        for key, doc in latest.items():
            row_id = existing.get(key)
            if row_id is None:
                if next_id is None:
                    (top,) = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
                    next_id = int(top) + 1
                row_id, next_id = next_id, next_id + 1
            vector = embeddings.get(key) if embeddings else None
            rows.append((
                row_id, doc.kind, doc.key, doc.status, float(doc.confidence),
                json.dumps(doc.tags), json.dumps(doc.instances), doc.verifications,
                doc.updated, doc.body, int(doc.local), doc.seq, vector,
            ))
            fts_rows.append((
                row_id, doc.text, index_text(doc.text), doc.kind,
                "local" if doc.local else doc.status,
            ))
        if existing:
            conn.executemany(f"DELETE FROM {fts} WHERE rowid = ?", [(i,) for i in existing.values()])
        conn.executemany(
            f"INSERT OR REPLACE INTO {table} (id, kind, key, status, confidence, tags, instances,"
            " verifications, updated, body, local, seq, embedding)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            f"INSERT INTO {fts} (rowid, text, terms, kind, status) VALUES (?, ?, ?, ?, ?)",
            fts_rows,
        )

    def _ids(self, table: str, keys: list[DocKey]) -> Iterator[tuple[DocKey, int]]:
        # Per kind, keys in chunks: ``kind = ? AND key IN (...)`` walks the
        # (kind, key) index.
        by_kind: dict[str, list[str]] = {}
        for kind, key in keys:
            by_kind.setdefault(kind, []).append(key)
        for kind, names in by_kind.items():
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for row in self.conn.execute(
                    f"SELECT key, id FROM {table} WHERE kind = ? AND key IN ({marks})",
                    [kind, *chunk],
                ):
                    yield (kind, str(row[0])), int(row[1])

    def delete(self, agent_id: str, keys: Iterable[DocKey]) -> int:
        """Remove documents; returns how many there were."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return 0
        fts, table = tables
        removed = 0
        for kind, key in keys:
            row = self.conn.execute(
                f"DELETE FROM {table} WHERE kind = ? AND key = ? RETURNING id", (kind, key)
            ).fetchone()
            if row is not None:
                self.conn.execute(f"DELETE FROM {fts} WHERE rowid = ?", (row[0],))
                removed += 1
        return removed

    def clear(self, agent_id: str) -> None:
        """Remove every document of the agent and forget its cursor."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return
        fts, table = tables
        self.conn.execute(f"DELETE FROM {fts}")
        self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("UPDATE recall_agents SET cursor = NULL WHERE agent_id = ?", (agent_id,))

    def drop_merged(self, agent_id: str) -> list[DocKey]:
        """Remove every document that is not local (a pull that replaces the whole state)."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return []
        fts, table = tables
        rows = self.conn.execute(
            f"DELETE FROM {table} WHERE local = 0 RETURNING id, kind, key"
        ).fetchall()
        self.conn.executemany(f"DELETE FROM {fts} WHERE rowid = ?", [(r[0],) for r in rows])
        return [(str(r[1]), str(r[2])) for r in rows]

    def optimize(self, agent_id: str) -> None:
        """Merge the agent's index segments into one, dropping deleted documents' terms.

        FTS5 records a deletion as a marker in a new segment; the deleted
        terms stay in the older segments until they are merged. A forget
        runs this so that no trace of what it removed stays in the index.
        """
        tables = self._tables(agent_id, create=False)
        if tables is not None:
            fts = tables[0]
            self.conn.execute(f"INSERT INTO {fts} ({fts}) VALUES ('optimize')")

    def set_cursor(self, agent_id: str, cursor: int) -> None:
        """Record the agent cursor the documents reflect."""
        self._tables(agent_id, create=True)
        self.conn.execute(
            "UPDATE recall_agents SET cursor = ? WHERE agent_id = ?", (cursor, agent_id)
        )

    def cursor(self, agent_id: str) -> int | None:
        """The agent cursor the documents reflect (``None``: never indexed)."""
        row = self.conn.execute(
            "SELECT cursor FROM recall_agents WHERE agent_id = ?", (agent_id,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def drop_local(self, agent_id: str, before_seq: int) -> list[DocKey]:
        """Remove local documents whose event sequence is below ``before_seq``."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return []
        fts, table = tables
        rows = self.conn.execute(
            f"DELETE FROM {table} WHERE local = 1 AND seq < ? RETURNING id, kind, key",
            (before_seq,),
        ).fetchall()
        self.conn.executemany(f"DELETE FROM {fts} WHERE rowid = ?", [(r[0],) for r in rows])
        return [(str(r[1]), str(r[2])) for r in rows]

    def evict(self, agent_id: str, kind: str, keep: int) -> list[DocKey]:
        """Keep the ``keep`` most recently updated merged documents of ``kind``."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return []
        fts, table = tables
        rows = self.conn.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"
            " WHERE kind = ? AND local = 0 ORDER BY updated DESC LIMIT -1 OFFSET ?)"
            " RETURNING id, kind, key",
            (kind, max(0, keep)),
        ).fetchall()
        self.conn.executemany(f"DELETE FROM {fts} WHERE rowid = ?", [(r[0],) for r in rows])
        return [(str(r[1]), str(r[2])) for r in rows]

    # ------------------------------------------------------------------ reads

    def lexical(
        self,
        agent_id: str,
        text: str,
        kinds: Sequence[str],
        knowledge_status: str,
        limit: int,
    ) -> list[tuple[DocKey, float]]:
        """The best BM25 matches, best first, as ``((kind, key), score)``; higher is better."""
        tables = self._tables(agent_id, create=False)
        expression = match_expression(text)
        if tables is None or expression is None or limit <= 0:
            return []
        fts, table = tables
        where = [f"{fts} MATCH ?"]
        params: list[object] = [expression]
        if set(kinds) != {"memory", "knowledge", "skill"}:
            where.append("kind IN (" + ", ".join("?" * len(kinds)) + ")")
            params.extend(kinds)
        if "knowledge" in kinds and knowledge_status != "all":
            where.append("(kind != 'knowledge' OR status IN (?, 'local'))")
            params.append(knowledge_status)
        params.append(limit)
        # The best ``limit`` matches first (FTS5 answers ORDER BY rank LIMIT
        # without scoring into a sort of its own), then their keys, in one statement.
        rows = self.conn.execute(
            f"SELECT d.kind, d.key, m.rank FROM (SELECT rowid, rank FROM {fts} "
            f"WHERE {' AND '.join(where)} ORDER BY rank LIMIT ?) AS m "
            f"JOIN {table} AS d ON d.id = m.rowid ORDER BY m.rank",
            params,
        ).fetchall()
        # bm25() is lower-is-better and negative; report it as a positive score.
        return [((str(kind), str(key)), -float(rank)) for kind, key, rank in rows]

    def docs(self, agent_id: str, keys: Iterable[DocKey]) -> dict[DocKey, SearchDoc]:
        """The stored documents of ``keys`` (missing ones left out), one query per kind."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return {}
        fts, table = tables
        by_kind: dict[str, list[str]] = {}
        for kind, key in keys:
            by_kind.setdefault(kind, []).append(key)
        out: dict[DocKey, SearchDoc] = {}
        for kind, names in by_kind.items():
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for row in self.conn.execute(
                    f"SELECT d.key, d.status, d.confidence, d.tags, d.instances,"
                    f" d.verifications, d.updated, d.body, d.local, d.seq, f.text"
                    f" FROM {table} d JOIN {fts} f ON f.rowid = d.id"
                    f" WHERE d.kind = ? AND d.key IN ({marks})",
                    [kind, *chunk],
                ):
                    key = str(row[0])
                    out[(kind, key)] = SearchDoc(
                        kind=kind, key=key, text=str(row[10]), status=str(row[1]),
                        confidence=float(row[2]), tags=json.loads(row[3]),
                        instances=json.loads(row[4]), verifications=int(row[5]),
                        updated=str(row[6]), body=str(row[7]), local=bool(row[8]),
                        seq=int(row[9]),
                    )
        return out

    def embeddings(self, agent_id: str) -> Iterator[tuple[DocKey, bytes]]:
        """Every stored vector of the agent, as ``((kind, key), float32 bytes)``."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return
        _, table = tables
        rows = self.conn.execute(
            f"SELECT kind, key, embedding FROM {table} WHERE embedding IS NOT NULL"
        ).fetchall()
        for kind, key, blob in rows:
            yield (str(kind), str(key)), bytes(blob)

    def count(self, agent_id: str, kind: str | None = None) -> int:
        """How many documents the agent has (of one kind)."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return 0
        _, table = tables
        if kind is None:
            row = self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        else:
            row = self.conn.execute(
                f"SELECT count(*) FROM {table} WHERE kind = ?", (kind,)
            ).fetchone()
        return int(row[0])
