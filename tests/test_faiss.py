"""The FAISS plugin (``plugins/faiss``): its indexes against exact search, and
its use by the ``embedding`` similarity method."""

from __future__ import annotations

import experience_sync_faiss.plugin as faiss_plugin
import numpy as np
import pytest
from experience_sync_faiss import (
    FaissAutoIndex,
    FaissFlatIndex,
    FaissHNSWIndex,
    FaissIVFIndex,
)

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.merge.similarity import EmbeddingSimilarity
from experience_sync.interfaces import VectorIndex
from experience_sync.plugins import create_plugin_manager, get_plugin_manager
from experience_sync.vectors import NumpyIndex

DIM = 64


def clustered(n: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """Unit vectors around a few centres: realistic for recall, unlike isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(
        np.float32
    )
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near_duplicates(x: np.ndarray, cos: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    noise -= (noise * x).sum(axis=1, keepdims=True) * x
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cos * x + np.sqrt(1 - cos * cos) * noise).astype(np.float32)


INDEXES = {
    "faiss-flat": FaissFlatIndex,
    "faiss-ivf": lambda dim: FaissIVFIndex(dim, train_at=2_000),
    "faiss-hnsw": FaissHNSWIndex,
    "faiss": lambda dim: FaissAutoIndex(dim, train_at=2_000),
}


@pytest.mark.parametrize("name", INDEXES)
def test_near_duplicates_are_found_like_exact_search(name: str) -> None:
    stored = clustered(6_000)
    index: VectorIndex = INDEXES[name](DIM)
    exact = NumpyIndex(DIM)
    ids = np.arange(100, 100 + len(stored))  # ids need not start at 0
    for start in range(0, len(stored), 1_000):  # grows through training
        index.add(ids[start : start + 1_000], stored[start : start + 1_000])
        exact.add(ids[start : start + 1_000], stored[start : start + 1_000])
    assert len(index) == len(stored)
    queries = near_duplicates(stored[:500], cos=0.9)
    got_scores, got_ids = index.search(queries, 3)
    _, want_ids = exact.search(queries, 3)
    recall = float(np.mean(got_ids[:, 0] == want_ids[:, 0]))
    assert recall >= 0.99
    # approximate search may miss a neighbour, never misreport a score
    np.testing.assert_allclose(
        got_scores[:, 0], (queries * stored[got_ids[:, 0] - 100]).sum(axis=1), atol=1e-4
    )
    if name == "faiss-flat":
        np.testing.assert_array_equal(got_ids[:, 0], want_ids[:, 0])


@pytest.mark.parametrize("name", INDEXES)
def test_empty_and_small_indexes(name: str) -> None:
    index: VectorIndex = INDEXES[name](DIM)
    scores, ids = index.search(clustered(2), 4)
    assert ids.tolist() == [[-1] * 4] * 2 and np.all(np.isneginf(scores))
    index.add([7], clustered(1))
    scores, ids = index.search(clustered(1), 4)
    assert ids[0].tolist() == [7, -1, -1, -1]
    assert len(index) == 1


def test_ivf_trains_then_retrains_as_it_grows() -> None:
    index = FaissIVFIndex(DIM, train_at=1_000, grow=4.0)
    data = clustered(9_000)
    index.add(range(500), data[:500])
    assert not index.trained
    index.add(range(500, 1_000), data[500:1_000])
    assert index.trained and index.trainings == 1
    first_nlist = index.nlist
    index.add(range(1_000, 9_000), data[1_000:])
    assert index.trainings == 2 and index.nlist > first_nlist
    assert 1 <= index.nprobe <= index.nlist
    ids, vectors = index.contents()
    order = np.argsort(ids)
    assert ids[order].tolist() == list(range(9_000))
    np.testing.assert_array_equal(vectors[order], data)


def test_plugin_registers_its_indexes_and_serves_embedding_dedup(
    register_plugin: object,
) -> None:
    register_plugin(faiss_plugin, name="faiss")  # type: ignore[operator]
    names = get_plugin_manager().registry.names("vector_indexes")
    assert {"faiss", "faiss-flat", "faiss-ivf", "faiss-hnsw", "numpy"} <= set(names)
    config = MergeStrategyConfig(similarity_method="embedding", vector_index="faiss")
    sim = get_plugin_manager().registry.create("similarity_methods", "embedding", config)
    assert isinstance(sim, EmbeddingSimilarity)
    stored = clustered(300)
    sim.add_many([(f"m{i}", f"memory {i}", stored[i], None) for i in range(300)])
    assert isinstance(sim.index, FaissAutoIndex)
    found = sim.match_many([("memory 42", near_duplicates(stored[42:43], 0.95)[0], None)])
    assert found[0] is not None and found[0].memory_id == "m42" and found[0].is_duplicate


def test_entry_point_loads_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("EXPERIENCE_SYNC_LOAD_PLUGINS", "experience-sync-faiss")
    pm = create_plugin_manager()
    assert pm.registry.get("vector_indexes", "faiss").plugin == "faiss"
