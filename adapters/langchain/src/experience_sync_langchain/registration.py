"""Registering one LangChain object as a named plugin, shared by embedders and judges.

:func:`~experience_sync_langchain.embeddings.register_langchain_embeddings`
and :func:`~experience_sync_langchain.judge.register_langchain_judge` each
wrap their object in a small plugin and register it here under
``prefix + name``, so a clash fails at once, naming both plugins.
"""

from __future__ import annotations

import threading

from experience_sync.api import (
    ExperienceSyncPluginManager,
    PluginError,
    PluginInfo,
    get_plugin_manager,
)

_lock = threading.Lock()


def register_named(
    plugin: object,
    plugin_name: str,
    clash: str,
    plugin_manager: ExperienceSyncPluginManager | None = None,
) -> str:
    """Register ``plugin`` as ``plugin_name``; ``clash`` is the error when the name is taken.

    The registry is built right away, so a name another plugin already
    registered for the same kind fails here, not when the hub starts; the
    plugin is then unregistered again.
    """
    pm = plugin_manager or get_plugin_manager()
    with _lock:
        if pm.get_plugin(plugin_name) is not None:
            raise PluginError(clash)
        pm.register(plugin, name=plugin_name)
        pm.infos[plugin_name] = PluginInfo(
            plugin_name, "experience-sync-langchain", _version(), False
        )
    try:
        _ = pm.registry  # fail now on a clash, not when the hub starts
    except Exception:
        unregister_named(plugin_name, pm)
        raise
    return plugin_name


def unregister_named(
    plugin_name: str, plugin_manager: ExperienceSyncPluginManager | None = None
) -> None:
    """Remove a plugin :func:`register_named` registered (nothing if it is not there)."""
    pm = plugin_manager or get_plugin_manager()
    with _lock:
        if pm.get_plugin(plugin_name) is not None:
            pm.unregister(name=plugin_name)
        pm.infos.pop(plugin_name, None)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("experience-sync-langchain")
    except PackageNotFoundError:
        return "0+unknown"
