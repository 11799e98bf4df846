"""The ``experience_sync`` entry point of the LangChain adapter.

Loaded by the plugin manager when the adapter is installed. It registers, as
named embedders, the LangChain ``Embeddings`` objects listed in the
environment variable ``EXPERIENCE_SYNC_LANGCHAIN_EMBEDDINGS``: entries
``name=module:attribute`` separated by commas, where the attribute is an
``Embeddings`` object, an ``Embeddings`` class, or a zero-argument function
returning one. Modules are imported only when the hub first needs the
embedder. Example::

    EXPERIENCE_SYNC_LANGCHAIN_EMBEDDINGS="openai-small=my_hub.embeddings:openai_small"
    # with merge_strategy.embedder = "openai-small" in the hub's configuration

This is for hubs started from the command line; from Python, call
:func:`experience_sync_langchain.register_langchain_embeddings`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from langchain_core.embeddings import Embeddings

from experience_sync.api import PluginError, hookimpl
from experience_sync_langchain.embeddings import LangChainEmbeddingsPlugin

ENV_VAR = "EXPERIENCE_SYNC_LANGCHAIN_EMBEDDINGS"


def parse_spec(text: str) -> dict[str, str]:
    """``"a=pkg.mod:attr, b=pkg.mod:other"`` to ``{"a": "pkg.mod:attr", ...}``."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, target = part.partition("=")
        name, target = name.strip(), target.strip()
        if not sep or not name or ":" not in target:
            raise PluginError(
                f"{ENV_VAR}: {part!r} is not name=module:attribute"
            )
        out[name] = target
    return out


def load_target(target: str) -> Embeddings:
    """Import ``module:attribute`` and make the ``Embeddings`` it names."""
    module_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, Embeddings):
        return obj
    if callable(obj):
        made = obj()
        if isinstance(made, Embeddings):
            return made
    raise PluginError(f"{ENV_VAR}: {target} is not a LangChain Embeddings or a factory of one")


def _factory(target: str) -> Callable[[], Embeddings]:
    return lambda: load_target(target)


@hookimpl
def experience_sync_register_embedders(register: Callable[..., None]) -> None:
    """Register each embedder listed in ``EXPERIENCE_SYNC_LANGCHAIN_EMBEDDINGS``."""
    for name, target in parse_spec(os.environ.get(ENV_VAR, "")).items():
        register(name, LangChainEmbeddingsPlugin(name, _factory(target)).make_embedder)
