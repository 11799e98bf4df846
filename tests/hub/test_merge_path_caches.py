"""The merge path's caches give what the work they save would give."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from experience_sync.hub.merge.similarity import JaccardSimilarity, _Memories, _parse
from experience_sync.recall import fts
from experience_sync.stores.sqlite import SQLiteStore
from experience_sync.stores.state import ChangeSet, LogEntry
from experience_sync.text import normalize

_WORDS = ["Alice", "alice", "Bob", "paris", "Paris", "the", "deploy", "Friday", "not", "3", "é", "Ünïcode"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(st.text(max_size=6), st.sampled_from(_WORDS)), max_size=4)))
def test_json_list_is_json_dumps(lists: list[list[str]]) -> None:
    for values in lists + lists:  # each list twice: once dumped, once remembered
        assert fts._json_list(values) == json.dumps(values)


def test_json_list_never_mixes_values_that_compare_equal() -> None:
    # 1 == True == 1.0: only lists of strings are remembered.
    for values in ([1], [True], [1.0], ["1"], [None], [[1]], ["a", 1]):
        assert fts._json_list(values) == json.dumps(values)  # type: ignore[arg-type]


_SENTENCE = st.lists(st.sampled_from([*_WORDS, "manages", "billing", "Queens", "in", "Brooklyn."]),
                     min_size=1, max_size=8).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(_SENTENCE, min_size=1, max_size=12))
def test_add_after_match_keeps_the_signature_a_fresh_index_makes(texts: list[str]) -> None:
    # The signature add() reuses from the match just before it is the one
    # the vocabulary gives at add time, also when a memory between the two
    # taught the index new words or names.
    method = JaccardSimilarity()
    fresh = _Memories()
    for i, text in enumerate(texts):
        norm = normalize(text)
        method.match(norm, None, text)
        if i % 3:  # another memory joins between the match and the add
            other = texts[i - 1].upper() if i % 3 == 1 else texts[i - 1].title()
            if i % 2:
                method.add(f"o{i}", normalize(other), None, other)
            else:  # as a load adds: past the signature kept from the match
                method.add_stored([(f"o{i}", normalize(other), None, other)], [None])
            fresh.put(f"o{i}", fresh.signature(normalize(other), other), other, normalize(other))
        method.add(f"m{i}", norm, None, text)
        expected = fresh.signature(norm, text)
        fresh.put(f"m{i}", expected, text, norm)
        assert method._mem.sigs[method._mem.slots[f"m{i}"]] == expected
        assert method._mem.lowercase == fresh.lowercase
        assert method._mem.names == fresh.names
    assert _parse.cache_info().currsize > 0


def test_commit_rechecks_ids_whatever_seen_events_asked(tmp_path: object) -> None:
    # The digests seen_events computed serve the commit that follows; a
    # commit of other ids (or of none asked before) computes its own.
    store = SQLiteStore("sqlite:///:memory:")
    try:
        assert store.seen_events("a", ["e1", "e2"]) == set()
        store.commit("a", ChangeSet(cursor=1, log=[LogEntry("e1", "event", "{}", None, "i", 1)]))
        store.commit("a", ChangeSet(cursor=2, log=[LogEntry("e3", "event", "{}", None, "i", 2)]))
        assert store.seen_events("b", ["e1"]) == set()
        store.commit("a", ChangeSet(cursor=3, log=[LogEntry("e2", "event", "{}", None, "i", 3)]))
        assert store.seen_events("a", ["e1", "e2", "e3", "e4"]) == {"e1", "e2", "e3"}
    finally:
        store.close()


def test_memories_share_one_fields_set_that_nothing_changes() -> None:
    from experience_sync.hub.merge.memory import _ALL_FIELDS_SET, _construct
    from experience_sync.models import Memory

    at = datetime(2024, 5, 1, tzinfo=timezone.utc)
    m = Memory(memory_id="m1", content="The cache restarts nightly.", normalized_hash="h",
               created_at=at, updated_at=at)
    a, b = _construct(dict(m.__dict__)), _construct(dict(m.__dict__))
    assert a.model_fields_set is b.model_fields_set is _ALL_FIELDS_SET
    assert a.model_dump_json() == m.model_dump_json()
    assert a.model_dump_json(exclude_unset=True) == m.model_dump_json()
    copied = a.model_copy(update={"content": "other"})
    a.importance = 0.25  # pydantic adds the name, which the set holds already
    assert copied.model_fields_set is not _ALL_FIELDS_SET
    assert set(Memory.model_fields) == _ALL_FIELDS_SET
    partial = _construct({"memory_id": "m2", "content": "x"})
    assert partial.model_fields_set == {"memory_id", "content"}


def test_voice_slots_one_or_many_match_and_drop_as_a_list_would() -> None:
    method = JaccardSimilarity()
    passive = "The cache is restarted by the worker."
    active = "The worker restarts the cache."
    for mid in ("p1", "p2", "p3"):
        method.add(mid, normalize(passive), None, passive)
    assert method.match(normalize(active), None, active).memory_id == "p1"  # type: ignore[union-attr]
    method.remove("p1")
    assert method.match(normalize(active), None, active).memory_id == "p2"  # type: ignore[union-attr]
    method.remove("p2")
    method.remove("p3")
    assert method.match(normalize(active), None, active) is None
    assert method._mem.voices == {}
    method.add("p4", normalize(passive), None, passive)
    assert method.match(normalize(active), None, active).memory_id == "p4"  # type: ignore[union-attr]
    method.remove("p4")
    assert method._mem.voices == {}
