"""Built-in embedder ``hashing`` and vector index ``numpy`` (see :mod:`experience_sync.vectors`)."""

from __future__ import annotations

from experience_sync.hookspecs import Register, hookimpl
from experience_sync.vectors import HashingEmbedder, NumpyIndex


@hookimpl
def experience_sync_register_embedders(register: Register) -> None:
    """Register ``hashing``."""
    register("hashing", lambda config=None: HashingEmbedder())


@hookimpl
def experience_sync_register_vector_indexes(register: Register) -> None:
    """Register ``numpy``."""
    register("numpy", lambda dim: NumpyIndex(dim))
