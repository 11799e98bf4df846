"""The entry-point plugin: registers the FAISS vector indexes."""

from __future__ import annotations

from experience_sync.api import Register, hookimpl
from experience_sync_faiss.indexes import (
    FaissAutoIndex,
    FaissFlatIndex,
    FaissHNSWIndex,
    FaissIVFIndex,
)


@hookimpl
def experience_sync_register_vector_indexes(register: Register) -> None:
    """Register ``faiss`` (size-adaptive), ``faiss-flat``, ``faiss-ivf`` and ``faiss-hnsw``."""
    register("faiss", FaissAutoIndex)
    register("faiss-flat", FaissFlatIndex)
    register("faiss-ivf", FaissIVFIndex)
    register("faiss-hnsw", FaissHNSWIndex)
