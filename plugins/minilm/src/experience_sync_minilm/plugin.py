"""The entry-point plugin: registers the ``minilm`` embedder.

Settings come from the environment (each has a named default in
:mod:`experience_sync_minilm.embedder`), so a hub configured with
``embedder = "minilm"`` needs nothing else:

* ``EXPERIENCE_SYNC_MINILM_MODEL``: a model name or a local model directory
  (default ``all-MiniLM-L6-v2``, the bundled one);
* ``EXPERIENCE_SYNC_MINILM_BATCH_SIZE``: texts per forward pass (default 64);
* ``EXPERIENCE_SYNC_MINILM_CACHE_SIZE``: vectors cached by normalized text
  (default 10,000; ``0`` turns the cache off).
"""

from __future__ import annotations

import os

from experience_sync.api import MergeStrategyConfig, Register, hookimpl
from experience_sync_minilm.embedder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CACHE_SIZE,
    DEFAULT_MODEL,
    MiniLMEmbedder,
)

MODEL_ENV = "EXPERIENCE_SYNC_MINILM_MODEL"
BATCH_SIZE_ENV = "EXPERIENCE_SYNC_MINILM_BATCH_SIZE"
CACHE_SIZE_ENV = "EXPERIENCE_SYNC_MINILM_CACHE_SIZE"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None


def _factory(config: MergeStrategyConfig | None = None) -> MiniLMEmbedder:
    return MiniLMEmbedder(
        os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL,
        batch_size=_int_env(BATCH_SIZE_ENV, DEFAULT_BATCH_SIZE),
        cache_size=_int_env(CACHE_SIZE_ENV, DEFAULT_CACHE_SIZE),
    )


@hookimpl
def experience_sync_register_embedders(register: Register) -> None:
    """Register ``minilm`` (all-MiniLM-L6-v2 by default, 384 dimensions)."""
    register("minilm", _factory)
