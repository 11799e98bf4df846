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

The FTS5 table is contentless (``content=''``): it holds the index of the
terms and nothing else, and the document's text, kind and status live once,
in its row of the documents table (a query's filters join it). A contentless
table removes a document's terms when given the terms it indexed, which are
``index_text`` of the stored text. A document written again with the text it
already has (a memory reinforced by another instance) changes only its row
of the documents table: its terms stay as they are. Index pages are 8,000
bytes (``pgsz``; FTS5's default is 4,050): a commit writes and merges half
as many segment rows.

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
#: 3: a contentless FTS5 table of ``index_text``; the text, kind and status in
#: the documents table.
INDEX_VERSION = 3

#: Words a query drops before matching (they would match nearly every document).
STOP_WORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "s", "t", "don"]
)
# "down", "not", "no", "off", "out", "up" carry meaning in agents' memories
# ("payments down", "do not retry"): keep them.
STOP_WORDS = STOP_WORDS - {"down", "not", "no", "off", "out", "up", "nor", "only"}

_WORD = re.compile(r"\w+", re.UNICODE)
_TOKENIZE = "porter unicode61 remove_diacritics 2"
#: FTS5 index page size in bytes (FTS5's default is 4,050).
_PAGE_SIZE = 8000


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


# ``json.dumps`` of the lists documents repeat (a memory's tags, its
# instances): most documents share a few, and dumping one costs more than
# finding it. Cleared when it grows past ``_LISTS_MAX`` distinct lists.
_LISTS: dict[tuple[str, ...], str] = {}
_LISTS_MAX = 4096


def _json_list(values: list[str]) -> str:
    """``json.dumps(values)``, remembered for the lists seen before."""
    key = tuple(values)
    try:
        return _LISTS[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable item: never remembered
        return json.dumps(values)
    text = json.dumps(values)
    # Only lists of strings: a string equals no other kind of value, so a
    # list found here dumps as the one stored (``[1]`` would find ``[True]``).
    if all(type(v) is str for v in key):
        if len(_LISTS) >= _LISTS_MAX:
            _LISTS.clear()
        _LISTS[key] = text
    return text


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
                    self._upgrade_agent(f"recall_fts_{tag}", f"recall_docs_{tag}")
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

    def _upgrade_agent(self, fts: str, table: str) -> None:
        conn = self.conn
        self._create_docs(table)
        columns = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
        if "text" not in columns:
            # Versions 1 and 2 kept the text in the FTS5 table (its column ``text``).
            conn.execute(f"ALTER TABLE {table} ADD COLUMN text TEXT NOT NULL DEFAULT ''")
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (fts,)).fetchone()
            if exists:
                conn.executemany(
                    f"UPDATE {table} SET text = ? WHERE id = ?",
                    conn.execute(f"SELECT text, rowid FROM {fts}").fetchall(),
                )
        conn.execute(f"DROP TABLE IF EXISTS {fts}")
        self._create_fts(fts)
        conn.executemany(
            f"INSERT INTO {fts} (rowid, terms) VALUES (?, ?)",
            [(r[0], index_text(str(r[1]))) for r in conn.execute(f"SELECT id, text FROM {table}")],
        )

    def _create_fts(self, fts: str) -> None:
        # Only the terms (``index_text`` of the text); the text is the documents table's.
        self.conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5("
            f"terms, content='', tokenize='{_TOKENIZE}')"
        )
        self.conn.execute(f"INSERT INTO {fts} ({fts}, rank) VALUES ('pgsz', {_PAGE_SIZE})")

    def _create_docs(self, table: str) -> None:
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " id INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL,"
            " status TEXT NOT NULL, confidence REAL NOT NULL, tags TEXT NOT NULL,"
            " instances TEXT NOT NULL, verifications INTEGER NOT NULL,"
            " updated TEXT NOT NULL, body TEXT NOT NULL, local INTEGER NOT NULL,"
            " seq INTEGER NOT NULL, embedding BLOB, text TEXT NOT NULL DEFAULT '',"
            " UNIQUE (kind, key))"
        )

    def _remove_terms(self, fts: str, rows: Iterable[tuple[int, str]]) -> None:
        """Remove documents' terms, given their ids and stored texts (a contentless table's delete)."""
        self.conn.executemany(
            f"INSERT INTO {fts} ({fts}, rowid, terms) VALUES ('delete', ?, ?)",
            [(row_id, index_text(text)) for row_id, text in rows],
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
                self._create_docs(f"recall_docs_{tag}")
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
        new rows inserted with ``executemany``. A document whose text is the
        one stored keeps its terms: only its row of fields is updated.
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
        new_rows = []
        updates = []
        stale: list[tuple[int, str]] = []  # (id, the stored text) of documents whose text changed
        terms = []
        next_id = None
        for key, doc in latest.items():
            vector = embeddings.get(key) if embeddings else None
            fields = (
                doc.status, float(doc.confidence), _json_list(doc.tags),
                _json_list(doc.instances), doc.verifications, doc.updated, doc.body,
                int(doc.local), doc.seq, vector, doc.text,
            )
            found = existing.get(key)
            if found is None:
                if next_id is None:
                    (top,) = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
                    next_id = int(top) + 1
                row_id, next_id = next_id, next_id + 1
                new_rows.append((row_id, doc.kind, doc.key, *fields))
                terms.append((row_id, index_text(doc.text)))
                continue
            row_id, stored_text = found
            updates.append((*fields, row_id))
            if stored_text != doc.text:
                stale.append(found)
                terms.append((row_id, index_text(doc.text)))
        if stale:
            self._remove_terms(fts, stale)
        if updates:
            conn.executemany(
                f"UPDATE {table} SET status = ?, confidence = ?, tags = ?, instances = ?,"
                " verifications = ?, updated = ?, body = ?, local = ?, seq = ?, embedding = ?,"
                " text = ? WHERE id = ?",
                updates,
            )
        if new_rows:
            conn.executemany(
                f"INSERT INTO {table} (id, kind, key, status, confidence, tags, instances,"
                " verifications, updated, body, local, seq, embedding, text)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                new_rows,
            )
        if terms:
            conn.executemany(f"INSERT INTO {fts} (rowid, terms) VALUES (?, ?)", terms)

    def _ids(self, table: str, keys: list[DocKey]) -> Iterator[tuple[DocKey, tuple[int, str]]]:
        """``((kind, key), (id, text))`` of the stored ones of ``keys``."""
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
                    f"SELECT key, id, text FROM {table} WHERE kind = ? AND key IN ({marks})",
                    [kind, *chunk],
                ):
                    yield (kind, str(row[0])), (int(row[1]), str(row[2]))

    def delete(self, agent_id: str, keys: Iterable[DocKey]) -> int:
        """Remove documents; returns how many there were."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return 0
        fts, table = tables
        removed = 0
        for kind, key in keys:
            row = self.conn.execute(
                f"DELETE FROM {table} WHERE kind = ? AND key = ? RETURNING id, text", (kind, key)
            ).fetchone()
            if row is not None:
                self._remove_terms(fts, [(int(row[0]), str(row[1]))])
                removed += 1
        return removed

    def clear(self, agent_id: str) -> None:
        """Remove every document of the agent and forget its cursor."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return
        fts, table = tables
        self.conn.execute(f"INSERT INTO {fts} ({fts}) VALUES ('delete-all')")
        self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("UPDATE recall_agents SET cursor = NULL WHERE agent_id = ?", (agent_id,))

    def drop_merged(self, agent_id: str) -> list[DocKey]:
        """Remove every document that is not local (a pull that replaces the whole state)."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return []
        fts, table = tables
        rows = self.conn.execute(
            f"DELETE FROM {table} WHERE local = 0 RETURNING id, kind, key, text"
        ).fetchall()
        self._remove_terms(fts, [(int(r[0]), str(r[3])) for r in rows])
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
            f"DELETE FROM {table} WHERE local = 1 AND seq < ? RETURNING id, kind, key, text",
            (before_seq,),
        ).fetchall()
        self._remove_terms(fts, [(int(r[0]), str(r[3])) for r in rows])
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
            " RETURNING id, kind, key, text",
            (kind, max(0, keep)),
        ).fetchall()
        self._remove_terms(fts, [(int(r[0]), str(r[3])) for r in rows])
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
        where = []
        params: list[object] = [expression]
        if set(kinds) != {"memory", "knowledge", "skill"}:
            where.append("d.kind IN (" + ", ".join("?" * len(kinds)) + ")")
            params.extend(kinds)
        if "knowledge" in kinds and knowledge_status != "all":
            # A local document (recorded here, not merged yet) passes as the replica shows it.
            where.append("(d.kind != 'knowledge' OR d.local = 1 OR d.status = ?)")
            params.append(knowledge_status)
        params.append(limit)
        if not where:
            # The best ``limit`` matches first (FTS5 answers ORDER BY rank LIMIT
            # without scoring into a sort of its own), then their keys, in one statement.
            sql = (
                f"SELECT d.kind, d.key, m.rank FROM (SELECT rowid, rank FROM {fts} "
                f"WHERE {fts} MATCH ? ORDER BY rank LIMIT ?) AS m "
                f"JOIN {table} AS d ON d.id = m.rowid ORDER BY m.rank"
            )
        else:
            # The filters are the documents table's: each match in rank order is
            # looked up by id until ``limit`` pass.
            sql = (
                f"SELECT d.kind, d.key, {fts}.rank FROM {fts} JOIN {table} AS d "
                f"ON d.id = {fts}.rowid WHERE {fts} MATCH ? AND {' AND '.join(where)} "
                f"ORDER BY {fts}.rank LIMIT ?"
            )
        rows = self.conn.execute(sql, params).fetchall()
        # bm25() is lower-is-better and negative; report it as a positive score.
        return [((str(kind), str(key)), -float(rank)) for kind, key, rank in rows]

    def docs(self, agent_id: str, keys: Iterable[DocKey]) -> dict[DocKey, SearchDoc]:
        """The stored documents of ``keys`` (missing ones left out), one query per kind."""
        tables = self._tables(agent_id, create=False)
        if tables is None:
            return {}
        _, table = tables
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
                    f" d.verifications, d.updated, d.body, d.local, d.seq, d.text"
                    f" FROM {table} d WHERE d.kind = ? AND d.key IN ({marks})",
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
