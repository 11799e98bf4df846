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

Chat models to use as merge judges are listed the same way in
``EXPERIENCE_SYNC_LANGCHAIN_JUDGES`` (the attribute is a ``BaseChatModel``,
a class, or a zero-argument function returning one)::

    EXPERIENCE_SYNC_LANGCHAIN_JUDGES="gpt-judge=my_hub.judges:gpt_judge"
    # with merge_strategy.judge = "gpt-judge"

This is for hubs started from the command line; from Python, call
:func:`experience_sync_langchain.register_langchain_embeddings` or
:func:`experience_sync_langchain.register_langchain_judge`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from experience_sync.api import PluginError, hookimpl
from experience_sync_langchain.embeddings import LangChainEmbeddingsPlugin
from experience_sync_langchain.judge import LangChainJudgePlugin

ENV_VAR = "EXPERIENCE_SYNC_LANGCHAIN_EMBEDDINGS"
JUDGES_ENV_VAR = "EXPERIENCE_SYNC_LANGCHAIN_JUDGES"


def parse_spec(text: str, env_var: str = ENV_VAR) -> dict[str, str]:
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
                f"{env_var}: {part!r} is not name=module:attribute"
            )
        out[name] = target
    return out


def _import(target: str) -> object:
    module_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_target(target: str) -> Embeddings:
    """Import ``module:attribute`` and make the ``Embeddings`` it names."""
    obj = _import(target)
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


def load_chat_model(target: str) -> BaseChatModel:
    """Import ``module:attribute`` and make the ``BaseChatModel`` it names."""
    obj = _import(target)
    if isinstance(obj, BaseChatModel):
        return obj
    if callable(obj):
        made = obj()
        if isinstance(made, BaseChatModel):
            return made
    raise PluginError(
        f"{JUDGES_ENV_VAR}: {target} is not a LangChain BaseChatModel or a factory of one"
    )


def _model_factory(target: str) -> Callable[[], BaseChatModel]:
    return lambda: load_chat_model(target)


@hookimpl
def experience_sync_register_merge_judges(register: Callable[..., None]) -> None:
    """Register each chat model listed in ``EXPERIENCE_SYNC_LANGCHAIN_JUDGES`` as a merge judge."""
    for name, target in parse_spec(os.environ.get(JUDGES_ENV_VAR, ""), JUDGES_ENV_VAR).items():
        register(name, LangChainJudgePlugin(name, _model_factory(target)).make_judge)
