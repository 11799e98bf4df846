"""FAISS vector indexes for experience-sync (``faiss``, ``faiss-flat``, ``faiss-ivf``, ``faiss-hnsw``)."""

from experience_sync_faiss.indexes import (
    FaissAutoIndex,
    FaissFlatIndex,
    FaissHNSWIndex,
    FaissIVFIndex,
    configure_threads,
)

__all__ = [
    "FaissAutoIndex",
    "FaissFlatIndex",
    "FaissHNSWIndex",
    "FaissIVFIndex",
    "configure_threads",
]
