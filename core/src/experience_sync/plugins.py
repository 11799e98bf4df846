"""The plugin manager and the registry of named things plugins provide.

Built-in plugins are modules registered through the same hooks as third-party
plugins, which are loaded from the ``experience_sync`` entry-point group.

Environment:

``EXPERIENCE_SYNC_LOAD_PLUGINS``
    Comma-separated entry-point or distribution names: only those installed
    plugins load. Set but empty: none load.
``EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD``
    ``1``/``true``: no entry-point plugin loads (built-ins still do).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pluggy

from experience_sync import hookspecs
from experience_sync.errors import PluginError
from experience_sync.models import ObservabilityEvent

log = logging.getLogger("experience_sync.plugins")

ENTRY_POINT_GROUP = "experience_sync"
#: Every hook name starts with this prefix.
HOOK_PREFIX = "experience_sync_"

#: Built-in plugin modules, registered in this order. A module is listed only
#: once what it registers works.
BUILTIN_PLUGINS: list[str] = [
    "experience_sync.builtin.strategies",
    "experience_sync.builtin.aggregations",
    "experience_sync.builtin.embedders",
    "experience_sync.builtin.similarity",
    "experience_sync.builtin.judges",
    "experience_sync.builtin.observers",
    "experience_sync.builtin.protocols",
    "experience_sync.builtin.transport_https",
    "experience_sync.builtin.transport_websocket",
    "experience_sync.builtin.stores",
    "experience_sync.builtin.rankers",
    "experience_sync.builtin.cli_commands",
]

#: Hooks experience-sync calls one implementation at a time (see
#: :func:`ordered_impls`), so that one failing plugin cannot stop the others:
#: observers, and the filters each recorded event passes. Wrappers are
#: refused on them at registration.
ISOLATED_HOOKS: tuple[str, ...] = ("experience_sync_filter_event", "experience_sync_observe")

#: Singular labels of the registry kinds, for messages.
KIND_LABELS: dict[str, str] = {
    "protocols": "protocol",
    "transports": "transport",
    "similarity_methods": "similarity method",
    "conflict_resolvers": "conflict resolver",
    "skill_aggregations": "skill aggregation",
    "embedders": "embedder",
    "vector_indexes": "vector index",
    "merge_judges": "merge judge",
    "stores": "store",
    "rankers": "ranker",
    "rerankers": "reranker",
    "config_sections": "config section",
}

#: Registry kinds and the hook that fills each.
KINDS: dict[str, str] = {
    "protocols": "experience_sync_register_protocols",
    "transports": "experience_sync_register_transports",
    "similarity_methods": "experience_sync_register_similarity_methods",
    "conflict_resolvers": "experience_sync_register_conflict_resolvers",
    "skill_aggregations": "experience_sync_register_skill_aggregations",
    "embedders": "experience_sync_register_embedders",
    "vector_indexes": "experience_sync_register_vector_indexes",
    "merge_judges": "experience_sync_register_merge_judges",
    "stores": "experience_sync_register_stores",
    "rankers": "experience_sync_register_rankers",
    "rerankers": "experience_sync_register_rerankers",
    "config_sections": "experience_sync_register_config_sections",
}


@dataclass
class PluginInfo:
    """Where a registered plugin came from."""

    name: str
    distribution: str
    version: str
    builtin: bool


@dataclass
class Registration:
    """One named thing a plugin registered."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str


class Observer(Protocol):
    """Anything with an ``experience_sync_observe`` method: a hub's own observers."""

    def experience_sync_observe(self, event: ObservabilityEvent) -> None:
        """Receive one observability event."""


def ordered_impls(hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """The implementations of an isolated hook in the order pluggy would call them.

    pluggy keeps ``get_hookimpls()`` sorted as trylast implementations,
    then plain ones, then tryfirst ones (each group in registration order,
    except that a new trylast goes in front of the older ones) and calls the
    list in reverse (``_multicall`` in pluggy 1.7's ``_execution.py``). So
    the order is: ``tryfirst`` implementations, the newest-registered first;
    then plain ones, the newest-registered first; then ``trylast`` ones, the
    oldest-registered first.

    :param hook: an isolated hook (one of :data:`ISOLATED_HOOKS`).
    :returns: the implementations, first to call first.
    :raises PluginError: an implementation is a wrapper (``wrapper=True`` or
        ``hookwrapper=True``); :meth:`ExperienceSyncPluginManager.register`
        refuses those, so this only happens on a manager built otherwise.
    """
    impls = hook.get_hookimpls()
    for impl in impls:
        if impl.wrapper or impl.hookwrapper:
            raise PluginError(_wrapper_message(impl.plugin_name, hook.name))
    return impls[::-1]


def _wrapper_message(plugin: str, hook_name: str) -> str:
    return (
        f"plugin {plugin!r} implements {hook_name} as a wrapper (wrapper=True or "
        f"hookwrapper=True); experience-sync calls {hook_name} one implementation "
        "at a time, so a wrapper would never run: implement it as a plain function "
        "(tryfirst=True or trylast=True choose its place)"
    )


class ExperienceSyncPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__("experience_sync")
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.generation = 0
        self._registry: Registry | None = None
        self._registry_generation = -1
        self._lock = threading.RLock()

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        """Also treat undecorated ``experience_sync_*`` functions as implementations.

        pluggy ignores a function without the marker, so a misspelled,
        undecorated ``experience_sync_register_transport`` would be silently
        skipped; taking it as an implementation lets :meth:`check_pending`
        report the unknown hook name instead (pytest does the same).
        """
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(HOOK_PREFIX):
            try:
                method = getattr(plugin, name)
            except Exception:  # a property that raises is not a hook
                return None
            if inspect.isroutine(method):
                return {
                    "wrapper": False,
                    "hookwrapper": False,
                    "optionalhook": False,
                    "tryfirst": False,
                    "trylast": False,
                    "specname": None,
                }
        return opts

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register a plugin object (a module or an instance) under ``name``.

        :raises PluginError: the plugin implements an isolated hook
            (:data:`ISOLATED_HOOKS`) as a wrapper; it is not registered.
        """
        result = super().register(plugin, name)
        self.generation += 1
        if result is not None:
            for hook_name in ISOLATED_HOOKS:
                hook = getattr(self.hook, hook_name)
                if any(
                    impl.plugin is plugin and (impl.wrapper or impl.hookwrapper)
                    for impl in hook.get_hookimpls()
                ):
                    self.unregister(plugin)
                    raise PluginError(_wrapper_message(result, hook_name))
        return result

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister a plugin by object or name."""
        result = super().unregister(plugin, name)
        self.generation += 1
        return result

    @property
    def registry(self) -> Registry:
        """The registry of named providers, rebuilt when plugins change."""
        with self._lock:
            if self._registry is None or self._registry_generation != self.generation:
                self._registry = Registry(self)
                self._registry_generation = self.generation
            return self._registry

    def ordered_impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """:func:`ordered_impls` of the hook called ``hook_name``."""
        hook: pluggy.HookCaller = getattr(self.hook, hook_name)
        return ordered_impls(hook)

    def emit(
        self, type: str, *, observers: Sequence[Observer] = (), **fields: Any
    ) -> ObservabilityEvent:
        """Send an observability event to every observer, isolating failures.

        :param observers: observers of the caller's own (a hub's metrics and
            event stream), called after the plugin observers.
        :param fields: the :class:`~experience_sync.models.ObservabilityEvent` fields.
        """
        event = ObservabilityEvent(type=type, **fields)
        self.notify(event, observers)
        return event

    def notify(self, event: ObservabilityEvent, observers: Sequence[Observer] = ()) -> None:
        """Deliver an already built event to every plugin observer, then to ``observers``.

        Plugin observers run in :func:`ordered_impls` order; an exception in
        one is logged and the others still run.
        """
        for impl in self.ordered_impls("experience_sync_observe"):
            try:
                impl.function(event=event)
            except Exception:  # one bad observer must not stop the sync
                log.exception("observer %s failed on %s", impl.plugin_name, event.type)
        for observer in observers:
            try:
                observer.experience_sync_observe(event=event)
            except Exception:
                log.exception("observer %r failed on %s", observer, event.type)


@dataclass
class Registry:
    """Every name each plugin registered, by kind. Built from the hooks."""

    pm: ExperienceSyncPluginManager
    entries: dict[str, dict[str, Registration]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, hook_name in KINDS.items():
            table: dict[str, Registration] = {}
            hook = getattr(self.pm.hook, hook_name)
            # get_hookimpls() lists implementations in registration order (pluggy
            # calls them in reverse); report clashes in the order plugins arrived
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name

                def register(
                    name: str,
                    factory: Callable[..., Any],
                    _kind: str = kind,
                    _plugin: str = plugin_name,
                    _table: dict[str, Registration] = table,
                ) -> None:
                    if not isinstance(name, str) or not name:
                        raise PluginError(f"plugin {_plugin!r} registered an empty {_kind} name")
                    if not callable(factory):
                        raise PluginError(
                            f"plugin {_plugin!r} registered {_kind} {name!r} with a "
                            "factory that is not callable"
                        )
                    if name in _table:
                        other = _table[name].plugin
                        raise PluginError(
                            f"{_kind} name {name!r} is registered by both plugin "
                            f"{other!r} and plugin {_plugin!r}"
                        )
                    _table[name] = Registration(_kind, name, factory, _plugin)

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {plugin_name!r} failed in {hook_name}: {exc}"
                    ) from exc
            self.entries[kind] = table

    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, sorted."""
        return sorted(self.entries.get(kind, {}))

    def get(self, kind: str, name: str) -> Registration:
        """The registration of ``name``; a :class:`PluginError` lists the installed ones."""
        try:
            return self.entries[kind][name]
        except KeyError:
            installed = ", ".join(self.names(kind)) or "none"
            raise PluginError(
                f"unknown {KIND_LABELS.get(kind, kind)} {name!r} (installed: {installed})"
            ) from None

    def create(self, kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered as ``name``."""
        return self.get(kind, name).factory(*args, **kwargs)


def _normalize(name: str) -> str:
    """PEP 503 normalisation, so ``My_Plugin`` and ``my-plugin`` name the same thing."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get("EXPERIENCE_SYNC_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_normalize(part.strip()) for part in raw.split(",") if part.strip()}


def _autoload_disabled() -> bool:
    value = os.environ.get("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _core_version() -> str:
    try:
        return importlib.metadata.version("experience-sync")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def load_builtins(pm: ExperienceSyncPluginManager) -> None:
    """Register the built-in plugin modules."""
    version = _core_version()
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        pm.infos[module_name] = PluginInfo(module_name, "experience-sync", version, True)


def load_entry_points(pm: ExperienceSyncPluginManager) -> None:
    """Load third-party plugins from the ``experience_sync`` entry-point group."""
    if _autoload_disabled():
        return
    allowed = _allowed_plugins()
    seen: set[tuple[str, str]] = set()
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or "unknown"
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or (dist_name, ep.name) in seen:
                continue
            seen.add((dist_name, ep.name))
            if allowed is not None and not {_normalize(ep.name), _normalize(dist_name)} & allowed:
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            where = f"plugin {ep.name!r} from distribution {dist_name} {dist.version}"
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
            try:
                pm.register(plugin, name=ep.name)
            except (ValueError, pluggy.PluginValidationError, PluginError) as exc:
                # e.g. a hook implementation whose arguments do not match the spec,
                # or the same module behind two entry points
                raise PluginError(f"{where} cannot be registered: {exc}") from exc
            pm.infos[ep.name] = PluginInfo(ep.name, dist_name, dist.version, False)


def create_plugin_manager(*, builtins: bool = True, entry_points: bool = True) -> (
    ExperienceSyncPluginManager
):
    """A new plugin manager with the built-ins and installed plugins loaded and checked."""
    pm = ExperienceSyncPluginManager()
    if builtins:
        load_builtins(pm)
    if entry_points:
        load_entry_points(pm)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        info = pm.infos.get(name)
        where = f" (distribution {info.distribution} {info.version})" if info else ""
        raise PluginError(f"plugin {name!r}{where} implements an unknown hook: {exc}") from exc
    _ = pm.registry  # fail now on clashes, not on first use
    return pm


_pm: ExperienceSyncPluginManager | None = None
_pm_lock = threading.Lock()


def get_plugin_manager() -> ExperienceSyncPluginManager:
    """The process-wide plugin manager, created on first use."""
    global _pm
    with _pm_lock:
        if _pm is None:
            _pm = create_plugin_manager()
        return _pm


def reset_plugin_manager() -> None:
    """Forget the process-wide plugin manager (tests, or after installing a plugin)."""
    global _pm
    with _pm_lock:
        _pm = None


@contextmanager
def registered_plugin(plugin: object, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` with the process-wide manager for the duration of a block."""
    pm = get_plugin_manager()
    plugin_name = pm.register(plugin, name=name)
    assert plugin_name is not None
    pm.infos[plugin_name] = PluginInfo(plugin_name, "(registered in process)", "", False)
    try:
        pm.check_pending()
        yield plugin_name
    finally:
        pm.unregister(name=plugin_name)
        pm.infos.pop(plugin_name, None)


def describe_plugins(pm: ExperienceSyncPluginManager | None = None) -> list[dict[str, Any]]:
    """What ``experience-sync plugins --json`` prints: each plugin, its hooks and names."""
    pm = pm or get_plugin_manager()
    registry = pm.registry
    out: list[dict[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        info = pm.infos.get(name, PluginInfo(name, "unknown", "", False))
        hooks = sorted(h.name for h in (pm.get_hookcallers(plugin) or []))
        provides: dict[str, list[str]] = {}
        for kind, table in registry.entries.items():
            names = sorted(r.name for r in table.values() if r.plugin == name)
            if names:
                provides[kind] = names
        out.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "builtin": info.builtin,
                "hooks": hooks,
                "provides": provides,
            }
        )
    return out
