"""Built-in embedder (``hashing``) and vector index (``numpy``).

The hashing embedder is deterministic and offline: it hashes normalized word
tokens and character trigrams into a fixed number of signed buckets and
L2-normalises the result. It captures lexical overlap, not meaning; for
paraphrases configure a semantic embedder (for example a LangChain
``Embeddings`` through the LangChain adapter).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from experience_sync.interfaces import Embedder, FloatArray, VectorIndex
from experience_sync.text import normalize, similarity_tokens


class HashingEmbedder(Embedder):
    """Signed feature hashing of tokens and character trigrams."""

    name = "hashing"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def _features(self, text: str) -> list[tuple[int, float]]:
        # Contractions expanded, so "don't" and "do not" embed alike.
        toks = similarity_tokens(normalize(text))
        norm = " ".join(toks)
        feats: list[tuple[int, float]] = []
        for tok in toks:
            h = zlib.crc32(b"w:" + tok.encode())
            feats.append((h, 1.0))
        padded = f" {norm} "
        for i in range(len(padded) - 2):
            h = zlib.crc32(b"c:" + padded[i : i + 3].encode())
            feats.append((h, 0.5))
        return feats

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """One L2-normalised ``dim``-wide row per text (all zeros for a text without tokens)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            vec = out[row]
            for h, weight in self._features(text):
                sign = 1.0 if (h >> 31) & 1 else -1.0
                vec[h % self.dim] += sign * weight
            norm = float(np.linalg.norm(vec))
            if norm > 0:
                vec /= norm
        return out


class NumpyIndex(VectorIndex):
    """Exact inner-product search with a matrix multiply. Good to ~100k vectors."""

    name = "numpy"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vectors = np.zeros((1024, dim), dtype=np.float32)
        self._ids = np.full(1024, -1, dtype=np.int64)
        self._size = 0

    def add(self, ids: Sequence[int], vectors: FloatArray) -> None:
        """Append the vectors under ``ids``, growing the matrix as needed."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        need = self._size + len(vectors)
        if need > len(self._vectors):
            cap = max(need, 2 * len(self._vectors))
            grown = np.zeros((cap, self.dim), dtype=np.float32)
            grown[: self._size] = self._vectors[: self._size]
            grown_ids = np.full(cap, -1, dtype=np.int64)
            grown_ids[: self._size] = self._ids[: self._size]
            self._vectors, self._ids = grown, grown_ids
        self._vectors[self._size : need] = vectors
        self._ids[self._size : need] = np.asarray(ids, dtype=np.int64)
        self._size = need

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """The exact top ``k`` by inner product per query, best first.

        Rows are padded with score ``-inf`` and id ``-1`` when fewer than ``k``
        vectors are stored.
        """
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n = len(queries)
        scores_out = np.full((n, k), -np.inf, dtype=np.float32)
        ids_out = np.full((n, k), -1, dtype=np.int64)
        if self._size == 0 or n == 0:
            return scores_out, ids_out
        scores = queries @ self._vectors[: self._size].T
        kk = min(k, self._size)
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1)
        top = np.take_along_axis(top, order, axis=1)
        scores_out[:, :kk] = np.take_along_axis(top_scores, order, axis=1)
        ids_out[:, :kk] = self._ids[top]
        return scores_out, ids_out

    def __len__(self) -> int:
        return self._size
