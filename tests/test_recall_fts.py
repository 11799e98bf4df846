"""``FtsIndex``: a contentless FTS5 index that stays exactly the index of its documents.

The FTS5 table holds only terms; removing a document's terms needs the terms
it indexed (``index_text`` of the stored text). These tests check that after
every kind of write the index is term for term the one a fresh build of the
remaining documents makes, that rewriting a document with the text it has
leaves the index untouched, and that an index of version 2 (text in the FTS5
table) is upgraded when opened and searches as a fresh one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from experience_sync.recall.documents import SearchDoc, index_text
from experience_sync.recall.fts import INDEX_VERSION, FtsIndex

AGENT = "agent-f"
KINDS = ["memory", "knowledge", "skill"]

DOCS = [
    SearchDoc("memory", "m1", "The payments API is down every Sunday night", confidence=0.5),
    SearchDoc("memory", "m2", "Retry a failed payment once, then ask for another card"),
    SearchDoc("memory", "m3", "Set max_retries to 3 for the nightly export job"),
    SearchDoc("knowledge", "k1", "refund delay: Refunds take five business days",
              status="integrated"),
    SearchDoc("knowledge", "k2", "refund policy: Refunds over 500 need a manager",
              status="pending"),
    SearchDoc("knowledge", "event:e1", "Card refunds are instant on weekends", status="pending",
              local=True, seq=4),
    SearchDoc("skill", "payments_api", "payments_api. used for: charging a card; refunds"),
]
QUERIES = ["payments api down", "refund", "card", "max_retries", "payments_api", "nightly job",
           "manager refunds", "weekend card refunds"]


def _index(path: Path) -> tuple[sqlite3.Connection, FtsIndex]:
    conn = sqlite3.connect(path, isolation_level=None)
    return conn, FtsIndex(conn)


def _tag(conn: sqlite3.Connection) -> str:
    return str(conn.execute("SELECT tag FROM recall_agents WHERE agent_id = ?", (AGENT,))
               .fetchone()[0])


def _terms(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """Every indexed term with its number of documents and of occurrences."""
    fts = f"recall_fts_{_tag(conn)}"
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.v USING fts5vocab(main, {fts}, 'row')")
    rows = conn.execute("SELECT term, doc, cnt FROM temp.v ORDER BY term").fetchall()
    conn.execute("DROP TABLE temp.v")
    return [(str(t), int(d), int(c)) for t, d, c in rows]


def _searches(index: FtsIndex) -> dict[str, object]:
    out: dict[str, object] = {}
    for q in QUERIES:
        out[q] = index.lexical(AGENT, q, KINDS, "all", 20)
        out[q + " (integrated)"] = index.lexical(AGENT, q, KINDS, "integrated", 20)
        out[q + " (knowledge)"] = index.lexical(AGENT, q, ["knowledge"], "pending", 20)
    return out


def _fresh(path: Path, docs: list[SearchDoc]) -> sqlite3.Connection:
    conn, index = _index(path)
    index.upsert(AGENT, docs)
    return conn


def test_every_write_leaves_the_index_of_the_remaining_documents(tmp_path: Path) -> None:
    conn, index = _index(tmp_path / "a.db")
    index.upsert(AGENT, DOCS)
    # rewritten: one with new text, one with the same text and new fields
    index.upsert(AGENT, [
        SearchDoc("memory", "m1", "The payments API is back on Sundays", confidence=0.9),
        SearchDoc("memory", "m2", DOCS[1].text, confidence=0.8, instances=["i1", "i2"]),
    ])
    assert index.delete(AGENT, [("memory", "m3"), ("memory", "missing")]) == 1
    assert index.drop_local(AGENT, before_seq=5) == [("knowledge", "event:e1")]
    index.upsert(AGENT, [SearchDoc("memory", f"x{i}", f"Filler note number {i} about queues",
                                   updated=f"2026-01-0{i}") for i in range(1, 4)])
    assert set(index.evict(AGENT, "memory", keep=3)) == {("memory", "m1"), ("memory", "m2")}
    remaining = list(index.docs(AGENT, [d.doc_key for d in DOCS] + [
        ("memory", f"x{i}") for i in range(1, 4)]).values())
    fresh = _fresh(tmp_path / "b.db", remaining)
    assert _terms(conn) == _terms(fresh)
    assert _searches(index) == _searches(FtsIndex(fresh))
    fts = f"recall_fts_{_tag(conn)}"
    conn.execute(f"INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)")
    index.drop_merged(AGENT)
    assert _terms(conn) == []
    index.upsert(AGENT, DOCS[:2])
    index.clear(AGENT)
    assert _terms(conn) == [] and index.count(AGENT) == 0


def test_the_same_text_again_changes_only_the_fields(tmp_path: Path) -> None:
    conn, index = _index(tmp_path / "a.db")
    index.upsert(AGENT, DOCS)
    fts = f"recall_fts_{_tag(conn)}"
    before = conn.execute(f"SELECT id, block FROM {fts}_data ORDER BY id").fetchall()
    index.upsert(AGENT, [SearchDoc("memory", "m2", DOCS[1].text, confidence=0.8,
                                   instances=["i1", "i2"], updated="2026-02-01")])
    assert conn.execute(f"SELECT id, block FROM {fts}_data ORDER BY id").fetchall() == before
    doc = index.docs(AGENT, [("memory", "m2")])[("memory", "m2")]
    assert (doc.confidence, doc.instances, doc.updated) == (0.8, ["i1", "i2"], "2026-02-01")
    # a knowledge item integrated since: found under its new status, terms unchanged
    index.upsert(AGENT, [SearchDoc("knowledge", "k2", DOCS[4].text, status="integrated")])
    assert conn.execute(f"SELECT id, block FROM {fts}_data ORDER BY id").fetchall() == before
    assert ("knowledge", "k2") in dict(index.lexical(AGENT, "manager", KINDS, "integrated", 5))


_V2_FTS = ("CREATE VIRTUAL TABLE {fts} USING fts5(text UNINDEXED, terms, kind UNINDEXED, "
           "status UNINDEXED, tokenize='porter unicode61 remove_diacritics 2')")
_V2_DOCS = ("CREATE TABLE {table} (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL,"
            " status TEXT NOT NULL, confidence REAL NOT NULL, tags TEXT NOT NULL,"
            " instances TEXT NOT NULL, verifications INTEGER NOT NULL,"
            " updated TEXT NOT NULL, body TEXT NOT NULL, local INTEGER NOT NULL,"
            " seq INTEGER NOT NULL, embedding BLOB, UNIQUE (kind, key))")


def _write_v2(path: Path, docs: list[SearchDoc]) -> None:
    """An index file exactly as index version 2 wrote it."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE recall_agents (agent_id TEXT PRIMARY KEY, tag TEXT NOT NULL "
                 "UNIQUE, cursor INTEGER)")
    conn.execute("CREATE TABLE recall_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO recall_meta VALUES ('index_version', 2)")
    conn.execute("INSERT INTO recall_agents VALUES (?, 'feedc0de00000000', 7)", (AGENT,))
    fts, table = "recall_fts_feedc0de00000000", "recall_docs_feedc0de00000000"
    conn.execute(_V2_FTS.format(fts=fts))
    conn.execute(_V2_DOCS.format(table=table))
    for i, d in enumerate(docs, start=1):
        conn.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, '[]', '[]', 0, '', '', ?, ?, "
                     "NULL)", (i, d.kind, d.key, d.status, d.confidence, int(d.local), d.seq))
        conn.execute(f"INSERT INTO {fts} (rowid, text, terms, kind, status) VALUES (?, ?, ?, ?, ?)",
                     (i, d.text, index_text(d.text), d.kind, "local" if d.local else d.status))
    conn.commit()
    conn.close()


def test_a_version_2_index_is_upgraded_and_searches_as_a_fresh_one(tmp_path: Path) -> None:
    _write_v2(tmp_path / "old.db", DOCS)
    conn, index = _index(tmp_path / "old.db")
    assert conn.execute("SELECT value FROM recall_meta WHERE name = 'index_version'"
                        ).fetchone() == (INDEX_VERSION,)
    assert index.cursor(AGENT) == 7
    fresh = _fresh(tmp_path / "new.db", DOCS)
    assert _searches(index) == _searches(FtsIndex(fresh))
    assert _terms(conn) == _terms(fresh)
    assert {k: d.text for k, d in index.docs(AGENT, [d.doc_key for d in DOCS]).items()} == {
        d.doc_key: d.text for d in DOCS}
    # and it keeps working as a version 3 index
    index.upsert(AGENT, [SearchDoc("memory", "m1", "Payments now run on Sundays too")])
    assert index.lexical(AGENT, "down sunday", ["memory"], "all", 5)[0][0] == ("memory", "m1")
    assert not index.lexical(AGENT, "down", ["memory"], "all", 5)
    terms = _terms(conn)
    conn.close()
    conn, index = _index(tmp_path / "old.db")  # the upgrade ran once: nothing is rebuilt
    assert _terms(conn) == terms and index.count(AGENT) == len(DOCS)
