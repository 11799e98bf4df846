"""Memory similarity: ``jaccard`` and ``embedding``, their guards, and the
labelled pairs in ``tests/data/dedup_pairs.jsonl``."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experience_sync import hookimpl
from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.merge.similarity import (
    DEFAULT_JACCARD_THRESHOLD,
    EmbeddingSimilarity,
    JaccardSimilarity,
    contradiction,
    jaccard,
    make_signature,
    outcome,
)
from experience_sync.interfaces import Embedder, FloatArray, SimilarityMatch, SimilarityMethod
from experience_sync.plugins import get_plugin_manager
from experience_sync.text import name_tokens, normalize
from experience_sync.vectors import NumpyIndex

PAIRS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "dedup_pairs.jsonl").read_text("utf-8").splitlines()
    if line.strip()
]
MUST_MERGE = {
    "case", "punctuation", "whitespace", "unicode", "word_order", "contraction", "number_word"
}
MUST_NOT_MERGE = {"negation", "number", "name", "place", "different"}
REASONS = {"negation": "negation", "number": "number", "name": "name", "place": "name"}


def pairs(*categories: str) -> list[dict[str, Any]]:
    return [p for p in PAIRS if p["category"] in categories]


def create(method: str, config: MergeStrategyConfig) -> SimilarityMethod:
    sim: SimilarityMethod = get_plugin_manager().registry.create(
        "similarity_methods", method, config
    )
    return sim


def match_pair(
    sim: SimilarityMethod, a: str, b: str, embed: Callable[[str], FloatArray | None]
) -> SimilarityMatch | None:
    sim.add("a", normalize(a), embed(a), a)
    return sim.match(normalize(b), embed(b), b)


def no_embedding(text: str) -> None:
    return None


# --------------------------------------------------------------------------- the labelled set


def test_labelled_set_covers_every_category() -> None:
    counts: dict[str, int] = {}
    for p in PAIRS:
        counts[p["category"]] = counts.get(p["category"], 0) + 1
    assert len(PAIRS) >= 80
    assert all(counts.get(c, 0) >= 4 for c in MUST_MERGE | MUST_NOT_MERGE | {"paraphrase"})


@pytest.mark.parametrize("pair", pairs(*MUST_MERGE), ids=lambda p: p["category"])
def test_variants_merge_under_the_default_config(pair: dict[str, Any]) -> None:
    config = MergeStrategyConfig()
    sim = create(config.similarity_method, config)
    found = match_pair(sim, pair["a"], pair["b"], no_embedding)
    assert found is not None and found.is_duplicate, (pair, found)
    assert found.memory_id == "a"


@pytest.mark.parametrize("pair", pairs(*MUST_NOT_MERGE), ids=lambda p: p["category"])
def test_changed_facts_never_merge_under_the_default_config(pair: dict[str, Any]) -> None:
    config = MergeStrategyConfig()
    sim = create(config.similarity_method, config)
    found = match_pair(sim, pair["a"], pair["b"], no_embedding)
    assert found is None or not found.is_duplicate, (pair, found)
    assert sim.best_match(normalize(pair["b"]), None, pair["b"]) is None
    reason = REASONS.get(pair["category"])
    if reason is not None:  # reported as a conflict, not silently added
        assert found is not None, pair
        # A changed day or month is a changed date of the same claim.
        assert found.contradiction in ({reason, "date"} if reason == "name" else {reason}), (
            pair, found,
        )


def test_default_threshold_is_the_measured_one() -> None:
    """Every must-merge pair scores 1.0; unguarded distinct facts stay below the default."""
    for p in pairs(*MUST_MERGE):
        a, b = (make_signature(normalize(t), t) for t in (p["a"], p["b"]))
        assert jaccard(a.tokens, b.tokens) == 1.0
    for p in pairs("different"):
        a, b = (make_signature(normalize(t), t) for t in (p["a"], p["b"]))
        assert jaccard(a.tokens, b.tokens) < DEFAULT_JACCARD_THRESHOLD


# --------------------------------------------------------------------------- semantic embedder

# A deterministic stand-in for a sentence-embedding model: it maps words to
# concepts (so paraphrases share them) and hashes the concepts. No model can be
# downloaded here; any real Embedder plugs in the same way.
_CONCEPTS = {
    "prefers": "like", "likes": "like", "like": "like", "loves": "like", "enjoys": "like",
    "editor": "editor", "ide": "editor", "mode": "theme", "theme": "theme",
    "concise": "short", "brief": "short", "short": "short", "answers": "reply", "replies": "reply",
    "restart": "restart", "reboot": "restart", "check": "inspect", "checking": "inspect",
    "look": "inspect", "customer": "customer", "client": "customer", "cancel": "end", "end": "end",
    "wants": "like", "would": "", "build": "build", "builds": "build", "slow": "long", "long": "long",
    "time": "", "take": "", "is": "", "dislikes": "dislike", "hates": "dislike",
    "lengthy": "long", "meetings": "meeting", "learning": "learn", "studying": "learn",
    "closed": "closed", "shuts": "closed",
}
_STOP = {"the", "a", "an", "in", "on", "to", "of", "at", "then", "before", "user", "and"}


class ConceptEmbedder(Embedder):
    """Bag of concepts, hashed into 64 signed buckets."""

    name = "concepts"
    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> FloatArray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for tok in normalize(text).split():
                concept = _CONCEPTS.get(tok, tok)
                if not concept or tok in _STOP:
                    continue
                h = zlib.crc32(concept.encode())
                out[row, h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-9)
        return out


class ConceptPlugin:
    @hookimpl
    def experience_sync_register_embedders(self, register: Any) -> None:
        register("concepts", lambda config=None: ConceptEmbedder())


@pytest.fixture
def semantic(register_plugin: Callable[..., str]) -> tuple[SimilarityMethod, Embedder]:
    register_plugin(ConceptPlugin(), name="concepts")
    config = MergeStrategyConfig(similarity_method="embedding", embedder="concepts")
    registry = get_plugin_manager().registry
    embedder: Embedder = registry.create("embedders", config.embedder, config)
    return create(config.similarity_method, config), embedder


def one(embedder: Embedder) -> Callable[[str], FloatArray]:
    return lambda text: embedder.embed([text])[0]


@pytest.mark.parametrize("pair", pairs("paraphrase"), ids=lambda p: p["b"][:30])
def test_paraphrases_merge_with_a_semantic_embedder(
    pair: dict[str, Any], semantic: tuple[SimilarityMethod, Embedder]
) -> None:
    sim, embedder = semantic
    assert sim.needs_embeddings
    found = match_pair(sim, pair["a"], pair["b"], one(embedder))
    assert found is not None, pair
    if found.contradiction == "word":
        # One content word swapped ("learning" / "studying"): the guards
        # cannot tell a synonym from another thing, so both are kept
        # (distinct), never merged into one nor treated as a contradiction.
        assert outcome(found.contradiction) == "distinct"
        return
    assert found.is_duplicate, (pair, found)


def test_paraphrases_do_not_merge_lexically() -> None:
    config = MergeStrategyConfig()
    merged = [
        p for p in pairs("paraphrase")
        if (m := match_pair(create("jaccard", config), p["a"], p["b"], no_embedding)) and m.is_duplicate
    ]
    assert merged == []


@pytest.mark.parametrize(
    "pair", pairs("negation", "number", "name", "place"), ids=lambda p: p["category"]
)
def test_guards_hold_with_a_semantic_embedder(
    pair: dict[str, Any], semantic: tuple[SimilarityMethod, Embedder]
) -> None:
    sim, embedder = semantic
    found = match_pair(sim, pair["a"], pair["b"], one(embedder))
    assert found is None or not found.is_duplicate, (pair, found)


# --------------------------------------------------------------------------- behaviour


def test_best_match_wins_not_the_first() -> None:
    sim = JaccardSimilarity(MergeStrategyConfig(similarity_threshold=0.5))
    texts = {
        "m1": "the user likes green tea with milk in the morning",
        "m2": "the user likes green tea with milk and honey in the morning",
        "m3": "the user likes green tea with lemon",
    }
    for mid, text in texts.items():
        sim.add(mid, normalize(text), None, text)
    query = "the user likes green tea with milk and honey in the morning always"
    assert sim.best_match(normalize(query), None, query) == ("m2", pytest.approx(10 / 11))


def test_embedding_best_match_wins_and_vectors_are_not_recomputed(
    semantic: tuple[SimilarityMethod, Embedder],
) -> None:
    sim, embedder = semantic
    assert isinstance(sim, EmbeddingSimilarity) and isinstance(embedder, ConceptEmbedder)
    texts = ["The user likes the dark theme.", "The user likes the dark theme in the editor."]
    vectors = embedder.embed(texts)
    sim.add_many([(f"m{i}", normalize(t), vectors[i], t) for i, t in enumerate(texts)])
    calls = embedder.calls
    query = "In the IDE the user prefers dark mode."
    (found,) = sim.match_many([(normalize(query), embedder.embed([query])[0], query)])
    assert found == SimilarityMatch("m1", pytest.approx(1.0, abs=1e-5))
    assert embedder.calls == calls + 1  # only the query was embedded


def test_remove_forgets_a_memory() -> None:
    for sim in (JaccardSimilarity(), EmbeddingSimilarity(index_factory=NumpyIndex)):
        vec = np.ones(8, dtype=np.float32) / np.sqrt(8)
        sim.add("m1", "alice owns billing", vec, "Alice owns billing")
        assert sim.best_match("alice owns billing", vec, "Alice owns billing") is not None
        sim.remove("m1")
        assert sim.best_match("alice owns billing", vec, "Alice owns billing") is None


def test_embedding_needs_vectors() -> None:
    sim = EmbeddingSimilarity(index_factory=NumpyIndex)
    with pytest.raises(ValueError, match="needs an embedding"):
        sim.add("m1", "x", None)


@pytest.mark.parametrize(("threshold", "lengths"), [(0.6, (3, 9)), (0.8, (10, 30))])
def test_jaccard_index_finds_what_a_full_scan_finds(
    threshold: float, lengths: tuple[int, int]
) -> None:
    """The inverted index with prefix and count filtering never misses a match."""
    rng = random.Random(7)
    # English words without digits, negations or names: no guard fires.
    vocab = [
        "apple", "river", "stone", "cloud", "paper", "table", "garden", "window", "engine",
        "market", "letter", "bridge", "planet", "forest", "candle", "pocket", "ladder",
        "button", "mirror", "basket", "rocket", "silver", "winter", "summer", "orange",
        "yellow", "purple", "little", "gentle", "simple", "narrow", "hollow", "shadow",
        "meadow", "harbor", "valley", "castle", "tunnel", "wallet", "carpet", "blanket",
        "pillow", "kettle", "bottle", "marble", "pencil", "circle", "square", "thunder",
        "lantern", "trumpet", "violin", "saddle", "anchor", "feather", "pepper", "ginger",
        "walnut",
    ]
    stored = [" ".join(rng.sample(vocab, rng.randint(*lengths))) for _ in range(400)]
    sim = JaccardSimilarity(MergeStrategyConfig(similarity_threshold=threshold))
    for i, text in enumerate(stored):
        sim.add(f"m{i}", text, None)
    sets = [frozenset(t.split()) for t in stored]
    for _ in range(300):
        base = rng.choice(stored).split()
        words = [w for w in base if rng.random() > 0.2] + rng.sample(vocab, rng.randint(0, 2))
        query = " ".join(words)
        q = frozenset(words)
        # What a full scan finds among the stored memories no guard objects
        # to (a word swapped for another is a distinct memory, never a match).
        q_sig = make_signature(query)
        scores = [
            jaccard(q, s) if contradiction(q_sig, make_signature(t)) is None else 0.0
            for s, t in zip(sets, stored, strict=True)
        ]
        best = max(scores)
        found = sim.best_match(query, None)
        if best >= threshold:
            assert found is not None and found[1] == pytest.approx(best)
        else:
            assert found is None


def test_normalization_forms() -> None:
    assert normalize("\uff34\uff48\uff45  \ufb01le\u00a0costs 1,000.50!") == "the file costs 1000.50"
    assert normalize("bil\u200bling caf\u00e9") == normalize("billing cafe\u0301")
    assert normalize("Don\u2019t") == "dont"
    assert normalize("at 3pm") == normalize("at 3 PM") == "at 3 pm"
    # An identifier is one word: letters and digits alternate more than once.
    assert normalize("Build 3F2A9B1C on k8s, 10kg") == "build 3f2a9b1c on k8s 10 kg"
    assert name_tokens("Alice moved to London.") == {"alice", "london"}
    assert name_tokens("Restart the worker in Dublin.") == {"dublin"}
    assert name_tokens("THE USER LIVES IN PARIS") == set()


def test_hook_experience_sync_register_similarity_methods() -> None:
    registry = get_plugin_manager().registry
    assert {"jaccard", "embedding"} <= set(registry.names("similarity_methods"))
    assert isinstance(registry.create("similarity_methods", "jaccard", None), JaccardSimilarity)


def test_hook_experience_sync_register_embedders() -> None:
    embedder = get_plugin_manager().registry.create("embedders", "hashing", None)
    vectors = embedder.embed(["The user likes tea.", "the user LIKES tea"])
    assert vectors.shape == (2, embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], vectors[1])  # embeds the normalized text
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_hook_experience_sync_register_vector_indexes() -> None:
    index = get_plugin_manager().registry.create("vector_indexes", "numpy", 4)
    index.add([5, 9], np.eye(4, dtype=np.float32)[:2])
    scores, ids = index.search(np.eye(4, dtype=np.float32)[1:2], 3)
    assert ids.tolist() == [[9, 5, -1]] and scores[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("pair", pairs(*MUST_MERGE), ids=lambda p: p["category"])
def test_variants_merge_under_embedding_whatever_the_vectors(pair: dict[str, Any]) -> None:
    """Models embed raw text (a full-width variant can land far away): same tokens still merge."""

    def unrelated(text: str) -> FloatArray:
        rng = np.random.default_rng(zlib.crc32(text.encode()))
        v = rng.standard_normal(16).astype(np.float32)
        return v / np.linalg.norm(v)

    sim = EmbeddingSimilarity(MergeStrategyConfig(), index_factory=NumpyIndex)
    found = match_pair(sim, pair["a"], pair["b"], unrelated)
    assert found is not None and found.is_duplicate, (pair, found)


def test_jaccard_compacts_after_many_removals() -> None:
    sim = JaccardSimilarity()
    texts = [
        f"memory about topic {chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)} kept"
        for i in range(1500)
    ]
    for i, text in enumerate(texts):
        sim.add(f"m{i}", normalize(text), None)
    for i in range(1200):
        sim.remove(f"m{i}")
    assert len(sim) == 300
    assert sim.best_match(normalize(texts[10]), None) is None
    assert sim.best_match(normalize(texts[1400]), None) == ("m1400", 1.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_jaccard_after_removals_answers_as_an_index_built_afresh(seed: int) -> None:
    """Whatever was removed, and whenever postings were compacted, the index
    answers every query (duplicates and contradictions, with their scores and
    reasons) as an index built from the surviving memories alone: what a hub
    restarted at that moment loads. Texts with numbers make contradictions;
    lower case only, so no name is learned from a removed memory."""
    rng = random.Random(seed)
    words = ["refunds", "take", "days", "orders", "ship", "within", "hours", "the", "team",
             "meets", "at", "on", "cache", "expires", "after", "minutes", "tickets", "close"]

    def text() -> str:
        picked = rng.sample(words, rng.randint(3, 6))
        picked.insert(rng.randrange(len(picked) + 1), str(rng.randint(1, 9)))
        return " ".join(picked)

    live = JaccardSimilarity()
    alive: dict[str, str] = {}
    order: list[str] = []
    for i in range(1500):
        memory_id = f"m{i}"
        t = normalize(text())
        live.add(memory_id, t, None, t)
        alive[memory_id] = t
        order.append(memory_id)
        # Most new memories replace an older one, as a superseding stream does.
        if rng.random() < 0.8 and len(alive) > 1:
            gone = rng.choice(order[:-1])
            if gone in alive:
                live.remove(gone)
                del alive[gone]
    fresh = JaccardSimilarity()
    for memory_id in order:
        if memory_id in alive:
            fresh.add(memory_id, alive[memory_id], None, alive[memory_id])
    assert len(live) == len(fresh) == len(alive)
    found = 0
    for _ in range(300):
        q = normalize(text())
        a, b = live.match(q, None, q), fresh.match(q, None, q)
        assert a == b, (q, a, b)
        found += a is not None
    assert found > 100  # the queries do meet stored memories


def test_jaccard_superseding_stream_keeps_postings_near_the_alive_count() -> None:
    """Each new memory replacing the last one on the same words: the words'
    postings are compacted as they are probed instead of growing with every
    memory ever stored."""
    sim = JaccardSimilarity()
    previous = None
    for i in range(3000):
        t = normalize(f"the nightly export finished after {i} minutes")
        sim.match(t, None, t)
        sim.add(f"m{i}", t, None, t)
        if previous is not None:
            sim.remove(previous)
        previous = f"m{i}"
    assert len(sim) == 1
    # The words a match probes (the rarest: here all tie, so the first in
    # sorted order) stay short; the others wait for the periodic compaction.
    assert len(sim._postings["after"]) <= 4
    assert max(len(p) for p in sim._postings.values()) <= 1100


def assert_kept_apart(method: str, stored: str, incoming: str, reason: str) -> None:
    """``incoming`` is no duplicate of ``stored``; with jaccard, a conflict for ``reason``."""
    from experience_sync.vectors import HashingEmbedder

    embedder = HashingEmbedder()
    sim = create(method, MergeStrategyConfig(similarity_method=method))
    sim.add("a", normalize(stored), embedder.embed([stored])[0], stored)
    found = sim.match(normalize(incoming), embedder.embed([incoming])[0], incoming)
    assert found is None or not found.is_duplicate, found
    if method == "jaccard":
        assert found is not None and found.contradiction == reason, found


APPROVER = "the release approver for payments this quarter is {} and she signs every tag"


@pytest.mark.parametrize("taught_first", [True, False], ids=["taught-before", "taught-after"])
def test_names_written_once_count_in_lower_case_text(taught_first: bool) -> None:
    # All in lower case, the two statements differ by one ordinary word and
    # score 12/14 = 0.86: a duplicate, unless the hub knows "grace" and
    # "faith" are names from text where they were written as names (both are
    # English words, so neither the bundled proper nouns nor the rule for a
    # swapped word outside the English word list reads them as names).
    teach = "We asked Grace and Faith to share the on-call rotation."
    stored, new = APPROVER.format("grace"), APPROVER.format("faith")
    sim = create("jaccard", MergeStrategyConfig())
    if taught_first:
        sim.add("t", normalize(teach), None, teach)
    sim.add("a", normalize(stored), None, stored)
    if not taught_first:  # learned after the stored memory was indexed
        sim.add("t", normalize(teach), None, teach)
    found = sim.match(normalize(new), None, new)
    assert found is not None and found.memory_id == "a"
    assert not found.is_duplicate and found.contradiction == "name", found
    # Unknown names stay ordinary words.
    plain = create("jaccard", MergeStrategyConfig())
    plain.add("a", normalize(stored), None, stored)
    # Unknown names are ordinary words, and one ordinary word swapped for
    # another in the same frame is another thing: a distinct memory, kept.
    unknown = plain.match(normalize(new), None, new)
    assert unknown is not None and unknown.contradiction == "word", unknown


@pytest.mark.parametrize(
    ("old", "new"),
    [("dana", "tom"), ("paris", "london"), ("june", "july"), ("thursday", "friday"),
     ("germany", "austria")],
)
@pytest.mark.parametrize("method", ["jaccard", "embedding"])
def test_bundled_proper_nouns_are_names_in_lower_case(old: str, new: str, method: str) -> None:
    # No memory of the agent wrote them capitalized: the bundled list knows them.
    stored, incoming = APPROVER.format(old), APPROVER.format(new)
    # A changed month or day is a changed date (a contradiction), another
    # person or place a distinct memory.
    assert_kept_apart(method, stored, incoming, "date" if old in ("june", "thursday") else "name")


def test_time_of_day_is_part_of_the_number() -> None:
    sim = create("jaccard", MergeStrategyConfig())
    stored = "the flight from the main office to the customer site lands at 6:40 pm"
    sim.add("a", normalize(stored), None, stored)
    for new in (stored.replace("pm", "am"), stored.replace("pm", "a.m."), stored[:-3]):
        found = sim.match(normalize(new), None, new)
        assert found is not None and found.contradiction == "number", (new, found)
    same = stored.replace("6:40 pm", "6:40pm")
    found = sim.match(normalize(same), None, same)
    assert found is not None and found.is_duplicate, found


def test_known_names_hold_for_the_embedding_method() -> None:
    from experience_sync.vectors import HashingEmbedder

    embedder = HashingEmbedder()
    sim = create("embedding", MergeStrategyConfig(similarity_method="embedding"))
    teach = "We asked Priya and Siobhan to share the on-call rotation."
    stored, new = APPROVER.format("priya"), APPROVER.format("siobhan")
    sim.add("t", normalize(teach), embedder.embed([teach])[0], teach)
    sim.add("a", normalize(stored), embedder.embed([stored])[0], stored)
    found = sim.match(normalize(new), embedder.embed([new])[0], new)
    assert found is None or not found.is_duplicate, found


CODE_SENTENCE = (
    "the nightly export job for the billing team runs on a {} machine in the {} region "
    "and writes its files to the shared reports bucket"
)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (("t3.large", "us-east-1"), ("t3.xlarge", "us-east-1")),
        (("t3.large", "us-east-1"), ("t3.large", "eu-west-1")),
        (("m5.large", "us-east-1"), ("c5.large", "us-east-1")),
        (("gpt-4o", "us-east-1"), ("gpt-4", "us-east-1")),
        (("2-week", "us-east-1"), ("2-day", "us-east-1")),
    ],
    ids=["size", "region", "family", "suffix", "unit"],
)
@pytest.mark.parametrize("method", ["jaccard", "embedding"])
def test_a_changed_code_is_a_changed_number(
    old: tuple[str, str], new: tuple[str, str], method: str
) -> None:
    # Letters and digits written together name one thing: the same digits
    # with other letters are another machine, region or model.
    stored, incoming = CODE_SENTENCE.format(*old), CODE_SENTENCE.format(*new)
    assert_kept_apart(method, stored, incoming, "number")


@pytest.mark.parametrize(
    "variant",
    [
        CODE_SENTENCE.format("T3.LARGE", "US-EAST-1"),
        CODE_SENTENCE.format("t3_large", "us_east_1"),
        CODE_SENTENCE.format("t3 large", "us east 1"),
        CODE_SENTENCE.format("\uff54\uff13\uff0e\uff4c\uff41\uff52\uff47\uff45", "us-east-1"),
        CODE_SENTENCE.format("t3.large", "us-east-1") + " in the us-east-1 account",
    ],
    ids=["case", "underscore", "spaced", "fullwidth", "repeated"],
)
def test_a_code_written_another_way_still_merges(variant: str) -> None:
    sim = create("jaccard", MergeStrategyConfig())
    stored = CODE_SENTENCE.format("t3.large", "us-east-1")
    sim.add("a", normalize(stored), None, stored)
    found = sim.match(normalize(variant), None, variant)
    assert found is not None and found.is_duplicate, found


PREFIX_SENTENCE = (
    "after the quarterly review the operations team said the customer {} the new "
    "dashboard layout that shipped with the spring release of the reporting tool"
)


@pytest.mark.parametrize(
    ("old", "new"),
    [("likes", "dislikes"), ("is happy with", "is unhappy with"),
     ("found the export secure in", "found the export insecure in")],
    ids=["dis", "un", "in"],
)
@pytest.mark.parametrize("method", ["jaccard", "embedding"])
def test_a_negating_prefix_is_a_negation(old: str, new: str, method: str) -> None:
    stored, incoming = PREFIX_SENTENCE.format(old), PREFIX_SENTENCE.format(new)
    assert_kept_apart(method, stored, incoming, "negation")


@pytest.mark.parametrize(
    ("a", "b", "positive"),
    [("dislikes", "does not like", "likes"),
     ("is unhappy with", "is not happy with", "is happy with")],
)
def test_a_negating_prefix_says_what_not_says(a: str, b: str, positive: str) -> None:
    # The same statement written two ways is no contradiction (a semantic
    # embedder decides whether it is a duplicate).
    sig_a = make_signature(normalize(PREFIX_SENTENCE.format(a)), PREFIX_SENTENCE.format(a))
    sig_b = make_signature(normalize(PREFIX_SENTENCE.format(b)), PREFIX_SENTENCE.format(b))
    assert contradiction(sig_a, sig_b) is None
    plain = make_signature(
        normalize(PREFIX_SENTENCE.format(positive)), PREFIX_SENTENCE.format(positive)
    )
    assert contradiction(sig_a, plain) == "negation"
    assert contradiction(sig_b, plain) == "negation"


def test_prefixes_that_negate_nothing_on_the_other_side_change_nothing() -> None:
    # "discuss", "information", "under" start like negations, but the other
    # side has no word they would negate.
    a = "we will discuss the information under review at the monthly meeting with the vendor"
    b = "we will discuss the information under review at the weekly meeting with the vendor"
    sig_a, sig_b = make_signature(normalize(a), a), make_signature(normalize(b), b)
    # Not a negation: "monthly" / "weekly" is a changed unit of time.
    assert contradiction(sig_a, sig_b) == "unit"


def test_one_word_swapped_for_a_name_is_a_name_conflict() -> None:
    sim = create("jaccard", MergeStrategyConfig())
    stored = "the team offsite for the whole platform group next spring will be held in brooklyn"
    sim.add("a", normalize(stored), None, stored)
    new = stored.replace("brooklyn", "queens")  # "queens" is also a common word
    found = sim.match(normalize(new), None, new)
    assert found is not None and found.contradiction == "name", found


@pytest.mark.parametrize(("old", "new"), [("aws", "gcp"), ("vim", "emacs"), ("stripe", "adyen")])
@pytest.mark.parametrize("method", ["jaccard", "embedding"])
def test_a_swapped_word_outside_the_english_word_list_is_a_name(
    old: str, new: str, method: str
) -> None:
    # Lower-case product names are in no list of names, but a word English
    # does not have, as the one word two memories differ by, names something.
    sentence = "the platform team decided last week that every new service we build runs on {} from now on"
    stored, incoming = sentence.format(old), sentence.format(new)
    assert_kept_apart(method, stored, incoming, "name")


def test_two_english_words_swapped_are_distinct_memories() -> None:
    # "python" / "rust" are English words too; at this length the Jaccard
    # score alone would call them duplicates and lose a statement: one content
    # word swapped for another names another thing (docs/merging.md).
    a = "the platform team decided last week that every new service we build is written in python"
    b = a.replace("python", "rust")
    assert contradiction(make_signature(normalize(a), a), make_signature(normalize(b), b)) == "word"
    assert outcome("word") == "distinct"


@pytest.mark.parametrize(
    "variant",
    ["(415) 555-0199", "415.555.0199", "415 555 0199", "+1 415 555 0199", "1-415-555-0199",
     "4155550199"],
)
def test_a_phone_number_is_its_digits_however_punctuated(variant: str) -> None:
    assert normalize(f"Call the customer at {variant}.") == "call the customer at 4155550199"


@pytest.mark.parametrize("text", ["open 9-5 on weekdays", "rooms 101-105", "on 2024-05-01"])
def test_other_digit_groups_keep_their_boundaries(text: str) -> None:
    assert normalize(text) == normalize(text.replace("-", " "))


def test_match_at_asks_another_threshold_without_changing_the_methods_own() -> None:
    """What the merge judge calls for candidates below the method's threshold."""
    from experience_sync.api import SimilarityMatch, SimilarityMethod
    from experience_sync.hub.merge.similarity import JaccardSimilarity
    from experience_sync.text import normalize

    method = JaccardSimilarity()
    stored = "the release train leaves every second tuesday from platform four"
    method.add("m1", normalize(stored), None, stored)
    near = "the release train leaves every tuesday"
    assert method.match(normalize(near), None, near) is None
    found = method.match_at(normalize(near), None, near, 0.5)
    assert found is not None and found.memory_id == "m1" and 0.5 <= found.score < 0.8
    assert method.threshold == 0.8

    class Plain(SimilarityMethod):
        """A third-party method with only the required methods: the default match_at."""

        threshold = 0.9
        seen: list[float] = []

        def add(self, memory_id: str, normalized: str, embedding: object, text: str | None = None) -> None:
            pass

        def best_match(self, normalized: str, embedding: object, text: str | None = None) -> tuple[str, float] | None:
            self.seen.append(self.threshold)
            return ("m1", 0.6) if self.threshold <= 0.6 else None

    plain = Plain()
    assert plain.match_at("x", None, None, 0.5) == SimilarityMatch("m1", 0.6)
    assert plain.seen == [0.5] and plain.threshold == 0.9


def test_unrelated_identifiers_are_neither_duplicates_nor_contradictions() -> None:
    # Texts of random hexadecimal ids share no word: nothing matches them.
    # (Read as letter and digit pieces they shared every letter piece, and
    # their differing numbers made them contradictions.)
    rng = random.Random(7)
    sim = JaccardSimilarity()
    for i in range(2000):
        text = f"{rng.getrandbits(128):032x} {rng.getrandbits(128):032x}"
        assert sim.match(normalize(text), None, text) is None, text
        sim.add(str(i), normalize(text), None, text)
