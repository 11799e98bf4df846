"""The merge path's caches give what the work they save would give."""

from __future__ import annotations

import json

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


_SENTENCE = st.lists(st.sampled_from(_WORDS + ["manages", "billing", "Queens", "in", "Brooklyn."]),
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
