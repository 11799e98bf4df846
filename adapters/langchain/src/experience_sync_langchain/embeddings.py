"""An experience-sync ``Embedder`` backed by any LangChain ``Embeddings`` object.

The hub's embedding similarity and vector index take an embedder by name
(``merge_strategy.embedder``). Register a LangChain ``Embeddings`` under a
name and point the configuration at it::

    from langchain_openai import OpenAIEmbeddings
    from experience_sync_langchain import register_langchain_embeddings

    register_langchain_embeddings("openai-small", OpenAIEmbeddings(model="text-embedding-3-small"))
    # then: merge_strategy.similarity_method = "embedding", merge_strategy.embedder = "openai-small"

For a hub started from the command line, where no Python of yours runs, name
the objects in ``EXPERIENCE_SYNC_LANGCHAIN_EMBEDDINGS`` instead (see
:mod:`experience_sync_langchain.plugin`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from experience_sync.api import (
    Embedder,
    ExperienceSyncPluginManager,
    FloatArray,
    hookimpl,
)
from experience_sync_langchain.registration import register_named, unregister_named

#: What can be registered: an ``Embeddings`` object, or a zero-argument
#: callable that makes one (called once, when the hub first needs it).
EmbeddingsSource = Embeddings | Callable[[], Embeddings]

PLUGIN_PREFIX = "langchain-embeddings:"


class LangChainEmbedder(Embedder):
    """Embeds with a LangChain ``Embeddings`` and L2-normalises the rows.

    :param embeddings: the LangChain object (or a zero-argument factory of one).
    :param name: the name it is registered under.
    :param dim: the vector dimension; probed with one ``embed_query`` when omitted.
    :param batch_size: most texts sent to ``embed_documents`` in one call.
    """

    def __init__(
        self,
        embeddings: EmbeddingsSource,
        *,
        name: str = "langchain",
        dim: int | None = None,
        batch_size: int = 64,
    ) -> None:
        self.name = name
        self._source = embeddings
        self._embeddings: Embeddings | None = embeddings if isinstance(embeddings, Embeddings) else None
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self.dim = dim if dim is not None else len(self.embeddings.embed_query("dimension probe"))

    @property
    def embeddings(self) -> Embeddings:
        """The LangChain object, made on first use when a factory was given."""
        with self._lock:
            if self._embeddings is None:
                made = self._source() if callable(self._source) else self._source
                if not isinstance(made, Embeddings):
                    raise TypeError(
                        f"embeddings factory for {self.name!r} returned "
                        f"{type(made).__name__}, not a LangChain Embeddings"
                    )
                self._embeddings = made
            return self._embeddings

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 array of unit rows."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            vectors = np.asarray(self.embeddings.embed_documents(chunk), dtype=np.float32)
            if vectors.shape != (len(chunk), self.dim):
                raise ValueError(
                    f"embedder {self.name!r} returned shape {vectors.shape}, "
                    f"expected ({len(chunk)}, {self.dim})"
                )
            out[start : start + len(chunk)] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


class LangChainEmbeddingsPlugin:
    """A plugin that registers one LangChain ``Embeddings`` as a named embedder."""

    def __init__(self, name: str, embeddings: EmbeddingsSource, dim: int | None = None) -> None:
        self.name = name
        self.embeddings = embeddings
        self.dim = dim
        self._embedder: LangChainEmbedder | None = None
        self._lock = threading.Lock()

    def make_embedder(self, config: Any = None) -> LangChainEmbedder:
        """The embedder (one per plugin: the dimension is probed only once)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = LangChainEmbedder(self.embeddings, name=self.name, dim=self.dim)
            return self._embedder

    @hookimpl
    def experience_sync_register_embedders(self, register: Callable[..., None]) -> None:
        """Register the embeddings under this plugin's name."""
        register(self.name, self.make_embedder)


def register_langchain_embeddings(
    name: str,
    embeddings: EmbeddingsSource,
    *,
    dim: int | None = None,
    plugin_manager: ExperienceSyncPluginManager | None = None,
) -> str:
    """Make a LangChain ``Embeddings`` available as the embedder ``name``.

    Registers a small plugin with the process-wide plugin manager (or the one
    given), so that ``merge_strategy.embedder = name`` validates and the hub
    embeds memories with it. Registering a name twice is an error naming both
    plugins, like any other clash.

    :returns: the plugin name, for :func:`unregister_langchain_embeddings`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("an embedder name is required")
    if not isinstance(embeddings, Embeddings) and not callable(embeddings):
        raise TypeError("embeddings must be a LangChain Embeddings or a factory of one")
    return register_named(
        LangChainEmbeddingsPlugin(name, embeddings, dim),
        PLUGIN_PREFIX + name,
        f"a LangChain embeddings is already registered as embedder {name!r}; "
        "unregister_langchain_embeddings() it first",
        plugin_manager,
    )


def unregister_langchain_embeddings(
    name: str, *, plugin_manager: ExperienceSyncPluginManager | None = None
) -> None:
    """Remove an embedder registered with :func:`register_langchain_embeddings`."""
    unregister_named(PLUGIN_PREFIX + name, plugin_manager)
