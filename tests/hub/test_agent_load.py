"""Loading an agent from stored parses gives the state reading every text again gives.

A memory row keeps what the similarity method read from its text
(``StoredRow.parsed``, ``similarity.dump_parsed``); a hub start reads it back
instead of parsing every memory again, and builds memories from the rows it
wrote without validating them. Whatever path a load takes, the loaded
memories, the similarity index and every later merge decision must be those
of the old load (``Memory.model_validate_json`` and ``_parse`` of each row).
"""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.merge import similarity
from experience_sync.hub.merge.memory import MemoryMerger
from experience_sync.models import EventsRequest, Memory
from experience_sync.plugins import get_plugin_manager
from experience_sync.stores.state import ChangeSet, StoredRow

DATA = Path(__file__).resolve().parent.parent / "data"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _pairs() -> list[dict[str, Any]]:
    out = []
    for name in ("dedup_pairs.jsonl", "dedup_pairs_holdout.jsonl"):
        out += [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    return out


def _request(texts: list[str], instance: str, start: int) -> EventsRequest:
    events = [
        {
            "event_id": f"{instance}-{start + i:06d}",
            "timestamp": (T0 + timedelta(seconds=start + i)).isoformat(),
            "source_instance": instance,
            "event_type": "memory",
            "priority": 0.7,
            "data": {"content": t, "tags": ["t", instance], "importance": 0.5 + (i % 5) / 10},
        }
        for i, t in enumerate(texts)
    ]
    return EventsRequest.model_validate({"instance_id": instance, "events": events})


def _index_state(merger: MemoryMerger) -> dict[str, Any]:
    sim = merger.similarity
    assert isinstance(sim, similarity.JaccardSimilarity)
    mem = sim._mem
    return {
        "ids": list(mem.ids),
        "slots": dict(mem.slots),
        "sigs": list(mem.sigs),
        "lowercase": set(mem.lowercase),
        "names": set(mem.names),
        "voices": {k: [v] if isinstance(v, int) else list(v) for k, v in mem.voices.items()},
        "postings": {k: list(v) for k, v in sim._postings.items()},
    }


def _old_load(rows: list[StoredRow]) -> MemoryMerger:
    """What a load did before stored parses: validate each row, read each text again."""
    merger = MemoryMerger(MergeStrategyConfig(), get_plugin_manager())
    assert merger.similarity is not None
    batch = []
    for row in rows:
        m = Memory.model_validate_json(row.body)
        merger.memories[m.memory_id] = m
        merger.normalized[m.memory_id] = row.normalized or ""
        merger.by_hash.setdefault(m.normalized_hash, m.memory_id)
        batch.append((m.memory_id, row.normalized or "", None, m.content))
    similarity._parse.cache_clear()
    for item in batch:
        merger.similarity.add(*item)
    return merger


@pytest.fixture
def built(tmp_path: Path) -> tuple[str, list[str]]:
    """A store of memories from the labelled pairs (names, numbers, negations, case), and texts to merge after."""
    pairs = _pairs()
    rng = random.Random(5)
    rng.shuffle(pairs)
    first = [p["a"] for p in pairs] + [p["b"] for p in pairs[: len(pairs) // 2]]
    later = [p["b"] for p in pairs[len(pairs) // 2 :]] + [p["a"].upper() for p in pairs[:40]]
    url = f"sqlite:///{tmp_path}/hub.db"
    engine = MergeEngine(open_store(url), MergeStrategyConfig())
    for n, start in enumerate(range(0, len(first), 50)):
        engine.ingest_events("a", _request(first[start : start + 50], f"i{n % 3}", start))
    engine.close()
    return url, later


def _rows(url: str) -> list[StoredRow]:
    store = open_store(url)
    try:
        return store.load_agent("a").rows["memories"]
    finally:
        store.close()


def test_every_memory_row_carries_its_parse(built: tuple[str, list[str]]) -> None:
    url, _ = built
    rows = _rows(url)
    assert rows and all(r.parsed is not None for r in rows)
    for r in rows:
        m = Memory.model_validate_json(r.body)
        back = similarity.load_parsed(r.parsed or b"", m.content)
        assert back is not None
        parsed = similarity._parse.__wrapped__(r.normalized or "", m.content)
        plain, initial, lowercase = back
        assert plain == parsed.plain
        assert initial == parsed.initial
        assert frozenset(lowercase) == parsed.lowercase


def _compare_loads(url: str, later: list[str], tmp_path: Path) -> None:
    rows = _rows(url)
    old = _old_load(rows)
    engine = MergeEngine(open_store(url), MergeStrategyConfig())
    engine.preload(["a"])
    new = engine._runtimes["a"].memory
    # The same memories, in the same order, equal field for field.
    assert list(new.memories) == list(old.memories)
    for mid, m in old.memories.items():
        assert new.memories[mid] == m
        assert new.memories[mid].model_dump_json() == m.model_dump_json()
    assert new.normalized == old.normalized and new.by_hash == old.by_hash
    assert _index_state(new) == _index_state(old)
    # The same decisions for what comes next: the old load's state merges the
    # same events in a copy of the store.
    copy = tmp_path / "copy.db"
    with sqlite3.connect(url.removeprefix("sqlite:///")) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    again = MergeEngine(open_store(f"sqlite:///{copy}"), MergeStrategyConfig())
    again.preload(["a"])
    rt = again._runtimes["a"]
    rt.memory.memories, rt.memory.normalized, rt.memory.by_hash = old.memories, old.normalized, old.by_hash
    rt.memory.similarity = old.similarity
    for start in range(0, len(later), 40):
        request = _request(later[start : start + 40], "late", 100_000 + start)
        a = engine.ingest_events("a", request)
        b = again.ingest_events("a", request)
        assert a.model_dump(exclude={"duration_ms"}) == b.model_dump(exclude={"duration_ms"})
    assert a.memories_merged or a.conflicts_detected or a.memories_added
    assert engine.state("a", None).memories == again.state("a", None).memories
    engine.close()
    again.close()


def test_load_from_stored_parses_equals_the_old_load(
    built: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, later = built
    _compare_loads(url, later, tmp_path)


def test_a_store_without_parses_loads_the_same_and_keeps_them(
    built: tuple[str, list[str]], tmp_path: Path
) -> None:
    # A store written before the column existed (or a parse of other code,
    # or of another text): the texts are read again, and the parses stored.
    url, later = built
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM memories ORDER BY rowid")]
        db.execute("UPDATE memories SET parsed = NULL WHERE rowid % 3 = 0")
        db.execute(
            "UPDATE memories SET parsed = CAST(replace(CAST(parsed AS TEXT), ?, 'other') AS BLOB) "
            "WHERE rowid % 3 = 1",
            (similarity.parse_version(),),
        )
        # Another memory's parse: its CRC does not match this text.
        db.execute(
            "UPDATE memories SET parsed = (SELECT parsed FROM memories m2 WHERE m2.key = ?) "
            "WHERE key = ?",
            (keys[0], keys[1]),
        )
    _compare_loads(url, later, tmp_path)
    rows = _rows(url)
    assert all(
        similarity.load_parsed(r.parsed or b"", Memory.model_validate_json(r.body).content)
        for r in rows
    )


def test_a_row_of_another_shape_is_validated() -> None:
    m = Memory(
        memory_id="m1", content="x", normalized_hash="h", created_at=T0, updated_at=T0,
        superseded=[{"content": "y", "instance_id": "i", "event_id": "e", "timestamp": T0}],
    )
    from experience_sync.hub.merge.memory import stored_memory

    assert stored_memory(m.model_dump_json()) == m
    plain = m.model_copy(update={"superseded": []})
    assert stored_memory(plain.model_dump_json()) == plain
    odd = json.loads(plain.model_dump_json())
    odd["created_at"] = "2026-01-01T02:00:00+02:00"
    assert stored_memory(json.dumps(odd)).created_at == T0
    with pytest.raises(ValueError):
        stored_memory(json.dumps({**odd, "extra": 1}))


def test_a_load_in_small_chunks_and_batches_is_the_same(
    built: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rows are read, freed and their new parses stored a chunk at a time:
    # chunk and batch edges change nothing.
    from experience_sync.hub.merge import memory as memory_module

    url, later = built
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute("UPDATE memories SET parsed = NULL WHERE rowid % 2 = 0")
    monkeypatch.setattr(memory_module, "LOAD_CHUNK", 7)
    monkeypatch.setattr(memory_module, "SAVE_PARSED_BATCH", 5)
    _compare_loads(url, later, tmp_path)
    assert all(r.parsed is not None for r in _rows(url))


def test_a_consumed_load_empties_the_rows_it_read(built: tuple[str, list[str]]) -> None:
    url, _ = built
    rows = _rows(url)
    keys = [r.key for r in rows]
    merger = MemoryMerger(MergeStrategyConfig(), get_plugin_manager())
    merger.load(rows, consume=True)
    assert rows == [] and list(merger.memories) == keys
    kept = _rows(url)
    merger = MemoryMerger(MergeStrategyConfig(), get_plugin_manager())
    merger.load(kept)
    assert [r.key for r in kept] == keys


def test_a_postgresql_load_reads_and_keeps_the_parses(
    built: tuple[str, list[str]], postgres_url: str
) -> None:
    # The same agent in PostgreSQL: a third of its rows without a parse, a
    # third with one of other code. Its load equals the old load, and stores
    # the parses it made, which the next load reads back.
    from experience_sync_postgres import PostgresStore

    url, _ = built
    rows = _rows(url)
    version = similarity.parse_version()
    for i, r in enumerate(rows):
        if i % 3 == 0:
            r.parsed = None
        elif i % 3 == 1 and r.parsed is not None:
            r.parsed = r.parsed.replace(version.encode(), b"other")
    store = PostgresStore(postgres_url)
    try:
        store.commit("a", ChangeSet(cursor=1, rows={"memories": rows}))
        old = _old_load(_rows(url))
        engine = MergeEngine(store, MergeStrategyConfig())
        engine.preload(["a"])
        new = engine._runtimes["a"].memory
        assert list(new.memories) == list(old.memories)
        assert new.memories == old.memories
        assert _index_state(new) == _index_state(old)
        stored = store.load_agent("a").rows["memories"]
        assert all(
            similarity.load_parsed(r.parsed or b"", Memory.model_validate_json(r.body).content)
            for r in stored
        )
        saved: list[int] = []
        store.save_parsed = lambda agent_id, parsed: saved.append(len(parsed))  # type: ignore[method-assign]
        again = MergeEngine(store, MergeStrategyConfig())
        again.preload(["a"])
        assert saved == [] and _index_state(again._runtimes["a"].memory) == _index_state(old)
    finally:
        store.close()


def test_a_memory_read_by_an_older_text_reading_is_read_again(tmp_path: Path) -> None:
    # A store written when identifiers were split where digits meet letters
    # ("3f2a9b1c" read as "3 f 2 a 9 b 1 c"): its stale parse has the memory
    # normalized again at load, so the same text sent again is the same
    # memory (not a second one), and the row is rewritten with the new reading.
    from experience_sync.text import content_hash, normalize

    text = "Deploy of build 3f2a9b1c failed on the staging cluster."
    old_norm = "deploy of build 3 f 2 a 9 b 1 c failed on the staging cluster"
    assert normalize(text) != old_norm
    url = f"sqlite:///{tmp_path}/hub.db"
    engine = MergeEngine(open_store(url), MergeStrategyConfig())
    engine.ingest_events("a", _request([text, "The cache warms up in ten minutes."], "i1", 0))
    engine.close()
    with sqlite3.connect(tmp_path / "hub.db") as db:
        (key, body) = db.execute(
            "SELECT key, body FROM memories WHERE normalized LIKE 'deploy%'"
        ).fetchone()
        doc = json.loads(body)
        doc["normalized_hash"] = content_hash(old_norm)
        db.execute(
            "UPDATE memories SET body = ?, normalized = ?, content_hash = ?, "
            "parsed = CAST(replace(CAST(parsed AS TEXT), ?, 'older') AS BLOB) WHERE key = ?",
            (json.dumps(doc), old_norm, content_hash(old_norm), similarity.parse_version(), key),
        )
    engine = MergeEngine(open_store(url), MergeStrategyConfig())
    result = engine.ingest_events("a", _request([text], "i2", 10))
    assert (result.memories_added, result.memories_merged) == (0, 1)
    assert len(engine.state("a", None).memories) == 2
    engine.close()
    with sqlite3.connect(tmp_path / "hub.db") as db:
        norm, digest = db.execute(
            "SELECT normalized, content_hash FROM memories WHERE key = ?", (key,)
        ).fetchone()
    assert (norm, digest) == (normalize(text), content_hash(normalize(text)))
