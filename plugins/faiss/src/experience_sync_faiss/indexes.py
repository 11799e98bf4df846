"""FAISS vector indexes behind experience-sync's ``VectorIndex`` interface.

All indexes search by inner product, which is cosine for the L2-normalised
vectors embedders produce.

``faiss-flat``
    Exact search (``IndexFlatIP``). Same answers as the built-in ``numpy``
    index; FAISS's blocked search is faster on large stores.
``faiss-ivf``
    Approximate search (``IndexIVFFlat``, ``nlist`` about ``4*sqrt(n)``).
    Exact while too small to train; trained on the stored vectors once it has
    :attr:`FaissIVFIndex.train_at` of them, and retrained (nlist grows) each
    time the store grows :attr:`FaissIVFIndex.grow` times. ``nprobe`` is tuned
    at each training so that a near-duplicate (cosine 0.85 to a stored vector)
    finds that vector at least 99.5% of the time.
``faiss-hnsw``
    Approximate graph search (``IndexHNSWFlat``, M 32, efSearch 64). No
    training; slower to build than IVF and more memory.
``faiss``
    Size-adaptive: exact while small, IVF from :data:`AUTO_TRAIN_AT` vectors
    on, retrained as it grows. The switch point is where IVF overtakes exact
    search in ``benchmarks/bench_dedup.py``.

Threads: FAISS uses OpenMP; :func:`configure_threads` sets the count from
``EXPERIENCE_SYNC_FAISS_THREADS`` (default 1 for searches; training uses every
core).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from experience_sync.api import FloatArray, VectorIndex

IdArray = npt.NDArray[np.int64]

#: Where ``faiss`` switches from exact to IVF search (vectors stored).
AUTO_TRAIN_AT = 20_000
#: Where ``faiss-ivf`` trains (below this it searches exactly).
IVF_TRAIN_AT = 4_096

_threads_lock = threading.Lock()
_threads: int | None = None


def configure_threads(count: int | None = None) -> int:
    """Set FAISS's OpenMP thread count for searches and small adds.

    Default: ``$EXPERIENCE_SYNC_FAISS_THREADS``, else 1. Measured on a 2-core
    machine with other work running (as a hub has: the web server, SQLite),
    query batches of 100 ran 6x slower with 2 OpenMP threads than with one,
    which spin waiting for a core. Training and bulk loads use every core
    (:func:`bulk_threads`).

    Also routes flat search through BLAS for any batch size: FAISS's default
    only uses BLAS for very large batches, and its other path was 8x slower
    than BLAS (and slower than numpy) for batches of 100.
    """
    global _threads
    with _threads_lock:
        if count is None:
            if _threads is not None:
                return _threads
            env = os.environ.get("EXPERIENCE_SYNC_FAISS_THREADS", "").strip()
            count = int(env) if env else 1
        count = max(1, count)
        faiss.omp_set_num_threads(count)
        faiss.cvar.distance_compute_blas_threshold = 1
        _threads = count
        return count


@contextmanager
def bulk_threads() -> Iterator[None]:
    """Use every core for a long call (training, a bulk load), then restore."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(configure_threads())


def _rows(vectors: Any, dim: int) -> FloatArray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))


def _ids(ids: Sequence[int] | IdArray) -> IdArray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def nlist_for(n: int) -> int:
    """IVF list count for ``n`` vectors: about ``4*sqrt(n)``, at least 39 vectors a list."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


class _FaissIndex(VectorIndex):
    """Shared search plumbing: empty stores, ``k`` larger than the store."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        configure_threads()

    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        raise NotImplementedError

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """Top-``k`` inner products and ids per query; missing slots have id ``-1``."""
        q = _rows(queries, self.dim)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        size = len(self)
        if size == 0 or len(q) == 0 or k <= 0:
            return scores, ids
        kk = min(k, size)
        found_scores, found_ids = self._search(q, kk)
        missing = found_ids < 0
        found_scores[missing] = -np.inf
        scores[:, :kk] = found_scores
        ids[:, :kk] = found_ids
        return scores, ids


class FaissFlatIndex(_FaissIndex):
    """Exact inner-product search (``IndexFlatIP`` under an id map)."""

    name = "faiss-flat"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def add(self, ids: Sequence[int], vectors: FloatArray) -> None:
        """Add vectors under integer ids."""
        self._index.add_with_ids(_rows(vectors, self.dim), _ids(ids))

    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        scores, ids = self._index.search(queries, k)
        return scores, ids

    def contents(self) -> tuple[IdArray, FloatArray]:
        """Every stored ``(ids, vectors)``, for moving to another index."""
        flat = faiss.downcast_index(self._index.index)
        vectors = faiss.vector_to_array(flat.codes).view(np.float32).reshape(-1, self.dim)
        return faiss.vector_to_array(self._index.id_map).astype(np.int64), vectors

    def __len__(self) -> int:
        return int(self._index.ntotal)


class FaissIVFIndex(_FaissIndex):
    """Approximate search with an inverted file (``IndexIVFFlat``), trained as it grows.

    :param train_at: vectors stored before the first training (exact search until then).
    :param grow: retrain once the store is this many times larger than at the last training.
    :param nprobe: lists searched per query; ``None`` tunes it at each training.
    :param target_recall: what tuning aims for on simulated near-duplicates.
    :param seed: for the training sample and the tuning queries (reproducible builds).
    """

    name = "faiss-ivf"

    def __init__(
        self,
        dim: int,
        *,
        train_at: int = IVF_TRAIN_AT,
        grow: float = 4.0,
        nprobe: int | None = None,
        target_recall: float = 0.995,
        seed: int = 1234,
    ) -> None:
        super().__init__(dim)
        self.train_at = max(train_at, 2)
        self.grow = grow
        self.fixed_nprobe = nprobe
        self.target_recall = target_recall
        self.seed = seed
        self._flat: FaissFlatIndex | None = FaissFlatIndex(dim)
        self._ivf: Any = None
        self.trained_size = 0
        self.trainings = 0

    @property
    def trained(self) -> bool:
        """Whether searches go through the inverted file (else exact)."""
        return self._ivf is not None

    @property
    def nlist(self) -> int:
        """Current list count (0 while untrained)."""
        return int(self._ivf.nlist) if self._ivf is not None else 0

    @property
    def nprobe(self) -> int:
        """Lists searched per query (0 while untrained)."""
        return int(self._ivf.nprobe) if self._ivf is not None else 0

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._ivf is not None:
            self._ivf.nprobe = max(1, min(int(value), self.nlist))

    def add(self, ids: Sequence[int], vectors: FloatArray) -> None:
        """Add vectors; trains or retrains when the store has grown enough."""
        rows, id_arr = _rows(vectors, self.dim), _ids(ids)
        if self._ivf is None:
            assert self._flat is not None
            self._flat.add(id_arr, rows)
            if len(self._flat) >= self.train_at:
                self._build(*self._flat.contents())
                self._flat = None
            return
        self._ivf.add_with_ids(rows, id_arr)
        if self._ivf.ntotal >= self.grow * self.trained_size:
            self._build(*self.contents())

    def contents(self) -> tuple[IdArray, FloatArray]:
        """Every stored ``(ids, vectors)``."""
        if self._ivf is None:
            assert self._flat is not None
            return self._flat.contents()
        invlists = self._ivf.invlists
        id_parts: list[IdArray] = []
        vec_parts: list[FloatArray] = []
        for lst in range(self._ivf.nlist):
            size = invlists.list_size(lst)
            if size == 0:
                continue
            ids = np.empty(size, dtype=np.int64)
            codes = np.empty((size, self.dim), dtype=np.float32)
            ids_ptr, codes_ptr = invlists.get_ids(lst), invlists.get_codes(lst)
            try:
                faiss.memcpy(faiss.swig_ptr(ids), ids_ptr, ids.nbytes)
                faiss.memcpy(faiss.swig_ptr(codes), codes_ptr, codes.nbytes)
            finally:
                invlists.release_ids(lst, ids_ptr)
                invlists.release_codes(lst, codes_ptr)
            id_parts.append(ids)
            vec_parts.append(codes)
        return np.concatenate(id_parts), np.concatenate(vec_parts)

    def _build(self, ids: IdArray, vectors: FloatArray) -> None:
        n = len(vectors)
        nlist = nlist_for(n)
        rng = np.random.default_rng(self.seed)
        # 40 points a list and 10 k-means iterations: FAISS's defaults (256,
        # 25) made training at 1M vectors take minutes for no measurable recall.
        sample = vectors[np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))]
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = self.seed
        ivf.cp.niter = 10
        with bulk_threads():
            ivf.train(np.ascontiguousarray(sample))
            ivf.add_with_ids(np.ascontiguousarray(vectors), ids)
        ivf.nprobe = self.fixed_nprobe or self._tune(ivf, vectors, rng)
        ivf.nprobe = max(1, min(int(ivf.nprobe), nlist))
        self._ivf = ivf
        self._quantizer = quantizer  # the IVF index does not own it from Python
        self.trained_size = n
        self.trainings += 1

    def _tune(self, ivf: Any, vectors: FloatArray, rng: np.random.Generator) -> int:
        """Smallest nprobe finding the source of simulated near-duplicates often enough."""
        count = min(len(vectors), 1000)
        picks = rng.choice(len(vectors), size=count, replace=False)
        base = vectors[picks]
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise -= (noise * base).sum(axis=1, keepdims=True) * base  # orthogonal to base
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        cos = 0.85
        queries = np.ascontiguousarray(cos * base + math.sqrt(1 - cos * cos) * noise)
        exact = (queries * base).sum(axis=1)
        nprobe = 1
        while True:
            ivf.nprobe = nprobe
            scores, _ = ivf.search(queries, 1)
            recall = float(np.mean(scores[:, 0] >= exact - 1e-5))
            if recall >= self.target_recall or nprobe >= ivf.nlist:
                return nprobe
            nprobe *= 2

    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        if self._ivf is None:
            assert self._flat is not None
            return self._flat._search(queries, k)
        scores, ids = self._ivf.search(queries, k)
        return scores, ids

    def __len__(self) -> int:
        if self._ivf is None:
            assert self._flat is not None
            return len(self._flat)
        return int(self._ivf.ntotal)


class FaissAutoIndex(FaissIVFIndex):
    """``faiss``: exact while small, IVF once large enough, retrained as it grows."""

    name = "faiss"

    def __init__(self, dim: int, **options: Any) -> None:
        options.setdefault("train_at", AUTO_TRAIN_AT)
        super().__init__(dim, **options)


class FaissHNSWIndex(_FaissIndex):
    """Approximate graph search (``IndexHNSWFlat``)."""

    name = "faiss-hnsw"

    def __init__(
        self, dim: int, *, m: int = 32, ef_construction: int = 80, ef_search: int = 64
    ) -> None:
        super().__init__(dim)
        self._hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        self._hnsw.hnsw.efConstruction = ef_construction
        self._hnsw.hnsw.efSearch = ef_search
        self._index = faiss.IndexIDMap(self._hnsw)

    def add(self, ids: Sequence[int], vectors: FloatArray) -> None:
        """Add vectors under integer ids (into the graph: no training)."""
        self._index.add_with_ids(_rows(vectors, self.dim), _ids(ids))

    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        self._hnsw.hnsw.efSearch = max(self._hnsw.hnsw.efSearch, 2 * k)
        scores, ids = self._index.search(queries, k)
        return scores, ids

    def __len__(self) -> int:
        return int(self._index.ntotal)
