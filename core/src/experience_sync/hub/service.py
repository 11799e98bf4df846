"""The hub as a service, whatever carries its units: :class:`Hub`.

It holds what serving needs (merge engine, store, authenticator, plugin
manager, limits, metrics and the SSE broadcaster) and answers units the same
way for every route and transport: HTTP (:mod:`experience_sync.hub.web.app`), the
WebSocket frames, and transports mounted by plugins (the MCP plugin).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from experience_sync.config import MergeStrategyConfig, RecallConfig, RetentionConfig
from experience_sync.errors import StaleStateError
from experience_sync.hub.metrics import HubMetrics
from experience_sync.hub.prometheus import PrometheusObserver
from experience_sync.hub.web.auth import Authenticator, AuthError, Principal
from experience_sync.hub.web.sse import EventBroadcaster
from experience_sync.hub.web.wire import (
    DEFAULT_PROTOCOL,
    HubError,
    HubLimits,
    frame_backlog,
    frame_label,
    parse_unit,
    store_full_error,
    store_is_full,
)
from experience_sync.interfaces import Store
from experience_sync.models import (
    MAX_JSON_DEPTH,
    EventsRequest,
    ExperienceBatch,
    MergeResult,
    json_depth_exceeds,
)
from experience_sync.plugins import ExperienceSyncPluginManager, Observer, get_plugin_manager
from experience_sync.units import UNITS, UnitKind

if TYPE_CHECKING:
    from experience_sync.hub.engine import IngestMeta, MergeEngine
    from experience_sync.hub.retention import Maintenance

log = logging.getLogger("experience_sync.hub")

#: The top-level keys of a WebSocket frame; any other is a 422.
FRAME_KEYS = frozenset({"id", "kind", "payload", "meta"})


class Hub:
    """Everything the hub's routes use. Build one with :meth:`open`, serve it with :func:`create_app`.

    :param engine: the merge engine.
    :param store: the engine's store (tokens live there too).
    :param authenticator: checks tokens; disabled for ``--no-auth``.
    :param pm: the plugin manager observability events go through.
    :param limits: request size limits.
    """

    def __init__(
        self,
        engine: MergeEngine,
        store: Store,
        authenticator: Authenticator,
        pm: ExperienceSyncPluginManager,
        limits: HubLimits | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.auth = authenticator
        self.pm = pm
        self.limits = limits or HubLimits()
        self.metrics = HubMetrics()
        self.events = EventBroadcaster(on_drop=self.metrics.sse_dropped.inc)
        # This hub's own observers, not registered on the (process-wide) plugin
        # manager: a second hub in the process must not count this one's events.
        self.observers: list[Observer] = [PrometheusObserver(self.metrics), self.events]
        engine.observers = self.observers
        self._known: set[tuple[str, str]] = set()
        self._known_lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._closed = False
        #: Retention and compaction on a schedule (see :meth:`open`'s ``retention``).
        self.maintenance: Maintenance | None = None
        #: The agent :meth:`warm` is loading (``None`` when it is not running).
        self.warming: str | None = None
        self._warm_pending = False

    @classmethod
    def open(
        cls,
        store_url: str,
        *,
        strategy: MergeStrategyConfig | None = None,
        pm: ExperienceSyncPluginManager | None = None,
        auth: bool = True,
        limits: HubLimits | None = None,
        recall: RecallConfig | None = None,
        retention: RetentionConfig | None = None,
        max_loaded_memories: int | None = None,
    ) -> Hub:
        """A hub over the store at ``store_url`` (``sqlite:///path/hub.db``).

        :param recall: how the search route ranks (the config file's ``recall`` section).
        :param retention: the config's ``retention`` section: when it asks for
            anything, a background thread applies it every ``interval``
            (stopped by :meth:`close`).
        :param max_loaded_memories: keep at most this many memories loaded
            across agents, unloading the least recently used agents beyond it
            (:attr:`MergeEngine.max_loaded_memories`; ``None``: no bound).
        """
        from experience_sync.hub.engine import MergeEngine, open_store
        from experience_sync.hub.retention import Maintenance

        pm = pm or get_plugin_manager()
        store = open_store(store_url, pm=pm)
        engine = MergeEngine(
            store, strategy, pm=pm, recall=recall, max_loaded_memories=max_loaded_memories
        )
        hub = cls(engine, store, Authenticator(store, enabled=auth), pm, limits)
        if retention is not None:
            hub.maintenance = Maintenance(engine, retention)
            hub.maintenance.start()
        return hub

    # ------------------------------------------------------------------ ingestion

    def ingest(
        self,
        principal: Principal,
        agent_id: str,
        kind: str,
        raw: bytes | str | Any,
        meta: IngestMeta,
    ) -> MergeResult:
        """Validate, authorize and merge one unit; returns after the store committed."""
        payload = parse_unit(kind, raw)
        self.auth.authorize_write(principal, agent_id, payload)
        first = self._first_contact(agent_id, payload.instance_id)
        try:
            if isinstance(payload, EventsRequest):
                result = self.engine.ingest_events(agent_id, payload, meta)
            elif isinstance(payload, ExperienceBatch):
                result = self.engine.ingest_batch(agent_id, payload, meta)
            else:
                result = self.engine.ingest_checkin(agent_id, payload, meta)
        except StaleStateError as exc:
            # Hubs sharing the store kept winning the agent's commits: nothing
            # was written, and the unit can be sent again.
            raise HubError(
                503,
                f"agent {agent_id!r} is busy on other hubs ({exc}); "
                f"retry in {self.limits.retry_after_seconds} s",
                headers={"Retry-After": str(self.limits.retry_after_seconds)},
            ) from None
        except Exception as exc:
            if not store_is_full(exc):
                raise
            # Nothing was written (a unit commits whole or not at all): the
            # instance keeps the unit and sends it again once there is room.
            log.error("agent %s: the store is full (%s); answered 503", agent_id, exc)
            raise store_full_error(self.limits.retry_after_seconds) from None
        self.metrics.observe_result(kind, result)
        with self._known_lock:  # remembered only once merged; emitted once per instance
            key = (agent_id, payload.instance_id)
            first = first and key not in self._known
            self._known.add(key)
        if first:
            self.pm.emit(
                "sync.init",
                observers=self.observers,
                agent_id=agent_id,
                instance_id=payload.instance_id,
                data={"protocol": meta.protocol, "transport": meta.transport},
            )
        return result

    @contextlib.contextmanager
    def admit(self, agent_id: str) -> Iterator[None]:
        """Hold one of the agent's ``max_pending`` places for an HTTP unit, or 503.

        An agent's units merge one at a time; when more than ``max_pending``
        would wait, the newest is refused with ``Retry-After`` rather than
        queued, so a flood from many instances cannot pile up in the hub.
        """
        with self._known_lock:
            pending = self._pending.get(agent_id, 0)
            if pending >= self.limits.max_pending:
                raise HubError(
                    503,
                    f"agent {agent_id!r} has {pending} units waiting to merge; "
                    f"retry in {self.limits.retry_after_seconds} s",
                    headers={"Retry-After": str(self.limits.retry_after_seconds)},
                )
            self._pending[agent_id] = pending + 1
        try:
            yield
        finally:
            with self._known_lock:
                left = self._pending[agent_id] - 1
                if left:
                    self._pending[agent_id] = left
                else:
                    del self._pending[agent_id]

    def _first_contact(self, agent_id: str, instance_id: str) -> bool:
        with self._known_lock:
            if (agent_id, instance_id) in self._known:
                return False
        return not any(s.instance_id == instance_id for s in self.engine.instances(agent_id))

    def handle_frame(self, principal: Principal, agent_id: str, raw: bytes | str) -> bytes:
        """Answer one WebSocket frame with its ack (never raises for a bad frame)."""
        from experience_sync.hub.engine import IngestMeta

        started = time.perf_counter()
        frame_id: Any = None
        try:
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise HubError(400, f"frame is not valid JSON: {exc}") from None
            if not isinstance(frame, dict):
                raise HubError(400, "a frame is a JSON object {id, kind, payload, meta?}")
            if json_depth_exceeds(frame.get("id")):
                # Echoed in the ack: it must serialize (and nothing is merged unacked).
                raise HubError(422, f"id nests deeper than {MAX_JSON_DEPTH} levels", [{"loc": "id", "msg": "nested too deeply", "type": "value_error"}])
            frame_id = frame.get("id")
            unknown = sorted(set(frame) - FRAME_KEYS)
            if unknown:
                # Refused like an unknown field of a payload: a misspelt "meta"
                # must not be ignored silently.
                raise HubError(
                    422,
                    f"{unknown[0][:100]}: unknown frame key; a frame has id, kind, payload and meta",
                    [{"loc": k[:100], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
                     for k in unknown[:20]],
                )
            raw_kind = frame.get("kind")
            if not isinstance(raw_kind, str) or raw_kind not in UNITS:
                raise HubError(422, "kind must be 'events', 'batch' or 'checkin'", [{"loc": "kind", "msg": "invalid kind", "type": "enum"}])
            kind: UnitKind = raw_kind
            meta_in = frame.get("meta") or {}
            if not isinstance(meta_in, dict):
                raise HubError(422, "meta must be an object", [{"loc": "meta", "msg": "not an object", "type": "dict_type"}])
            meta = IngestMeta(
                protocol=frame_label("protocol", meta_in.get("protocol")) or DEFAULT_PROTOCOL[kind],
                transport="websocket",
                backlog=frame_backlog(meta_in.get("backlog")),
            )
            payload = frame.get("payload")
            if not isinstance(payload, dict):
                raise HubError(422, "payload must be an object", [{"loc": "payload", "msg": "not an object", "type": "dict_type"}])
            result = self.ingest(principal, agent_id, kind, payload, meta)
            status = 200
            ack = orjson.dumps(
                {"id": frame_id, "ok": True, "result": orjson.Fragment(result.model_dump_json())}
            )
        except (HubError, AuthError) as exc:
            err = exc if isinstance(exc, HubError) else HubError(exc.status, exc.message)
            status = err.status
            self.reject(err.status, err.message, agent_id, principal.instance_id, "websocket")
            ack = orjson.dumps({"id": frame_id, "ok": False, **err.body()})
        except Exception as exc:  # a bug must cost one frame, not the connection
            log.exception("WebSocket frame failed")
            status = 500
            ack = orjson.dumps(
                {"id": frame_id, "ok": False, "error": {"status": 500, "message": f"internal error: {type(exc).__name__}"}}
            )
        self.metrics.observe_request("ws_frame", status, time.perf_counter() - started)
        return ack

    def reject(
        self, status: int, reason: str, agent_id: str | None, instance_id: str | None, where: str
    ) -> None:
        """Emit ``hub.rejected`` (status and reason; never a token)."""
        self.pm.emit(
            "hub.rejected",
            observers=self.observers,
            agent_id=agent_id,
            instance_id=instance_id,
            data={"status": status, "reason": reason, "endpoint": where},
        )

    def expect_warm(self) -> None:
        """A :meth:`warm` will run (``serve`` starts it on a thread): not ready until it ends."""
        self._warm_pending = True

    @property
    def ready(self) -> bool:
        """Whether no warm-up is expected or running (``GET /readyz``)."""
        return not self._warm_pending and self.warming is None

    def warm(self) -> None:
        """Load every known agent's state now, so no client's first request pays for it."""
        try:
            self._warm()
        finally:
            self.warming = None
            self._warm_pending = False

    def _warm(self) -> None:
        engine = self.engine
        warmed: list[str] = []
        for agent_id in engine.agents():
            if self._closed:
                return
            capped = engine.max_loaded_memories is not None
            if capped and warmed and not set(warmed) <= set(engine.loaded_agents()):
                # The bound unloaded an agent warmed here: loading more
                # would only unload what was just loaded.
                log.info("warm-up stopped after %d agents (--max-loaded-memories %s)",
                         len(warmed), engine.max_loaded_memories)
                return
            warmed.append(agent_id)
            self.warming = agent_id
            try:
                self.engine.instances(agent_id)
            except Exception:  # a failed warm-up is retried by the first request
                log.exception("loading agent %s failed", agent_id)

    def close(self) -> None:
        """End event streams and close the engine and store."""
        if self._closed:
            return
        self._closed = True
        if self.maintenance is not None:
            self.maintenance.stop()
        self.events.close()
        self.engine.close()
        try:
            self.store.close()
        except Exception:  # already closed by the engine
            log.debug("store close failed", exc_info=True)


# ---------------------------------------------------------------------- the app
