"""Hooking the Python ``elizaos`` runtime (``pip install ./core "./adapters/elizaos[runtime]"`` from a checkout).

``elizaos`` 2.0.0a5 is an alpha and its events are not consistent, as read in
its source:

* ``MESSAGE_SENT`` is emitted with the plain string key (message service,
  autonomy); the autonomy service emits ``MESSAGE_RECEIVED`` with the
  protobuf enum ``EventType.EVENT_TYPE_MESSAGE_RECEIVED``, an ``int`` that
  ``emit_event`` cannot dispatch (``TypeError``). Plugins are told to use
  either spelling, so :func:`attach` listens under the plain name and the
  ``EVENT_TYPE_`` name.
* ``process_actions`` and ``evaluate`` emit no ``ACTION_*`` or ``EVALUATOR_*``
  events, and ``create_memory`` emits nothing. So :func:`attach` wraps the
  handlers of registered actions and evaluators (and of those registered
  later) and ``runtime.create_memory``, and turns each call into the same
  forwarded event the TypeScript plugin sends. ``ACTION_COMPLETED`` and
  ``EVALUATOR_COMPLETED`` events, should a later runtime emit them, are
  recorded only with ``wrap_handlers=False``, so nothing is counted twice.

Everything then goes through :mod:`experience_sync_elizaos.mapping`. A failure
to record is logged and never reaches the agent.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from experience_sync_elizaos.mapping import (
    MappingOptions,
    SkillRates,
    SkillRecord,
    map_event,
    record,
)

log = logging.getLogger("experience_sync_elizaos.runtime")

_EVENTS = ("MESSAGE_RECEIVED", "MESSAGE_SENT", "RUN_ENDED")
_HANDLER_EVENTS = ("ACTION_COMPLETED", "EVALUATOR_COMPLETED")
_WRAPPED = "__experience_sync_wrapped__"


def _get(obj: Any, *names: str) -> Any:
    """The first present attribute or key among ``names`` (protobuf, dict or object)."""
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj and obj[name] not in (None, ""):
                return obj[name]
            continue
        value = getattr(obj, name, None)
        if value not in (None, ""):
            return value
    return None


def _event_keys(name: str) -> list[str]:
    return [name, f"EVENT_TYPE_{name}"]


def _message_event(kind: str, params: Any) -> dict[str, Any]:
    message = _get(params, "message")
    content = _get(message, "content")
    text = _get(content, "text")
    actions = _get(content, "actions")
    mid = _get(message, "id")
    return {
        "id": f"{kind}:{mid}" if mid else f"{kind}:{uuid.uuid4()}",
        "type": kind,
        "timestamp": _get(message, "created_at", "createdAt") or time.time() * 1000,
        "roomId": _str(_get(message, "room_id", "roomId")),
        "source": _str(_get(params, "source") or _get(content, "source")),
        "textLength": len(text) if isinstance(text, str) else 0,
        "actions": [str(a) for a in actions] if actions else [],
    }


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _result_success(result: Any) -> tuple[bool, str | None]:
    """Whether an action or evaluator result reports success, and its error."""
    if result is None or isinstance(result, bool):
        return result is not False, None  # legacy handlers return nothing or a bool
    error = result.get("error") if isinstance(result, Mapping) else getattr(result, "error", None)
    if error:
        return False, str(error)
    # ActionResult.success is a proto3 bool without presence (unset reads as
    # False); the runtime's own actions always set it, so it is taken as given.
    success = (result.get("success", True) if isinstance(result, Mapping)
               else getattr(result, "success", True))
    return success is not False, None


@dataclass
class Attachment:
    """What :func:`attach` installed; :meth:`detach` removes the wrappers' effect."""

    runtime: Any
    instance_id: str
    active: bool = True
    errors: int = 0
    recorded: int = 0
    handlers: list[tuple[Any, Callable[..., Any]]] = field(default_factory=list)

    def detach(self) -> None:
        """Stop recording (wrapped handlers keep running, but record nothing)."""
        self.active = False
        events = getattr(self.runtime, "_events", None)
        if isinstance(events, dict):
            for key, handler in self.handlers:
                if handler in events.get(key, []):
                    events[key].remove(handler)


def attach(
    runtime: Any,
    manager: Any,
    instance_id: str,
    *,
    options: MappingOptions | None = None,
    wrap_handlers: bool = True,
    forward_memories: bool = True,
    agent: Mapping[str, Any] | None = None,
) -> Attachment:
    """Record a Python ``elizaos`` ``AgentRuntime``'s experiences through ``manager``.

    :param runtime: an ``elizaos.runtime.AgentRuntime``.
    :param manager: an ``ExperienceSyncManager`` initialised for ``instance_id``.
    :param instance_id: the instance the events are recorded as.
    :param options: what the mapping keeps.
    :param wrap_handlers: wrap action and evaluator handlers (the runtime emits
        no ACTION_COMPLETED / EVALUATOR_COMPLETED events of its own).
    :param forward_memories: record memories the runtime creates in the
        tables of ``options.memory_tables``.
    :param agent: ``{"id", "name"}`` of the agent; read from the runtime if ``None``.
    :returns: an :class:`Attachment` (counters, ``detach()``).
    """
    opts = options or MappingOptions()
    if agent is None:
        character = getattr(runtime, "character", None)
        agent = {"id": _str(getattr(runtime, "agent_id", None)),
                 "name": _str(getattr(character, "name", None))}
    att = Attachment(runtime, instance_id)
    rates = SkillRates()

    def forward(event: dict[str, Any]) -> None:
        if not att.active:
            return
        try:
            for rec in map_event(event, agent, opts):
                rate = rates.observe(rec.name, rec.success) if isinstance(rec, SkillRecord) else None
                record(manager, instance_id, rec, proficiency=rate)
                att.recorded += 1
        except Exception:  # the agent must never fail because syncing did
            att.errors += 1
            log.exception("recording ElizaOS event %s failed", event.get("type"))

    def on_event(kind: str) -> Callable[[Any], Any]:
        async def handler(params: Any) -> None:
            if kind in ("MESSAGE_RECEIVED", "MESSAGE_SENT"):
                forward(_message_event(kind, params))
            elif kind == "RUN_ENDED":
                run_id = _str(_get(params, "run_id", "runId"))
                forward({"id": f"RUN_ENDED:{run_id or uuid.uuid4()}", "type": kind,
                         "runId": run_id, "roomId": _str(_get(params, "room_id", "roomId")),
                         "status": _str(_get(params, "status")),
                         "durationMs": _get(params, "duration"),
                         "error": _str(_get(params, "error"))})
            else:
                forward(_completion_from_params(kind, params))

        return handler

    kinds = list(_EVENTS) + ([] if wrap_handlers else list(_HANDLER_EVENTS))
    for kind in kinds:
        handler = on_event(kind)
        for key in _event_keys(kind):
            runtime.register_event(key, handler)
            att.handlers.append((key, handler))

    if wrap_handlers:
        _wrap_components(runtime, forward)
    if forward_memories:
        _wrap_create_memory(runtime, forward, opts)
    return att


def _completion_from_params(kind: str, params: Any) -> dict[str, Any]:
    content = _get(params, "content") or {}
    if kind == "ACTION_COMPLETED":
        actions = _get(content, "actions") or []
        status = _str(_get(content, "actionStatus", "action_status"))
        return {"id": f"{kind}:{_get(content, 'actionId', 'action_id') or uuid.uuid4()}",
                "type": kind, "action": _str(actions[0]) if actions else None,
                "status": status, "success": status != "failed",
                "roomId": _str(_get(params, "room_id", "roomId"))}
    return {"id": f"{kind}:{uuid.uuid4()}", "type": kind,
            "evaluator": _str(_get(params, "evaluator_name", "evaluatorName")),
            "completed": _get(params, "completed") is not False,
            "error": _str(_get(params, "error"))}


def _wrap_components(runtime: Any, forward: Callable[[dict[str, Any]], None]) -> None:
    def wrap(component: Any, kind: str) -> Any:
        handler = getattr(component, "handler", None)
        if handler is None or getattr(handler, _WRAPPED, False):
            return component
        name = str(getattr(component, "name", "") or "unknown")

        @functools.wraps(handler)
        async def wrapped(rt: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            room = _str(_get(message, "room_id", "roomId"))
            try:
                result = handler(rt, message, *args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                forward(_completed(kind, name, False, room, f"{type(exc).__name__}: {exc}"))
                raise
            ok, error = _result_success(result)
            forward(_completed(kind, name, ok, room, error))
            return result

        setattr(wrapped, _WRAPPED, True)
        component.handler = wrapped
        return component

    for comp in list(getattr(runtime, "_actions", []) or []):
        wrap(comp, "ACTION_COMPLETED")
    for comp in list(getattr(runtime, "_evaluators", []) or []):
        wrap(comp, "EVALUATOR_COMPLETED")

    register_action = runtime.register_action
    register_evaluator = runtime.register_evaluator

    def register_action_wrapped(action: Any) -> None:
        register_action(wrap(action, "ACTION_COMPLETED"))

    def register_evaluator_wrapped(evaluator: Any) -> None:
        register_evaluator(wrap(evaluator, "EVALUATOR_COMPLETED"))

    runtime.register_action = register_action_wrapped
    runtime.register_evaluator = register_evaluator_wrapped


def _completed(kind: str, name: str, ok: bool, room: str | None, error: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {"id": f"{kind}:{uuid.uuid4()}", "type": kind,
                             "timestamp": time.time() * 1000, "roomId": room}
    if kind == "ACTION_COMPLETED":
        event.update(action=name, success=ok, status="completed" if ok else "failed")
    else:
        event.update(evaluator=name, completed=ok)
    if error:
        event["error"] = error
    return event


def _wrap_create_memory(runtime: Any, forward: Callable[[dict[str, Any]], None],
                        opts: MappingOptions) -> None:
    create_memory = runtime.create_memory
    if getattr(create_memory, _WRAPPED, False):
        return

    @functools.wraps(create_memory)
    async def wrapped(memory: Any = None, table_name: Any = None, unique: Any = None,
                      **kwargs: Any) -> Any:
        result = await create_memory(memory, table_name, unique, **kwargs)
        table = str(table_name or "memories")
        if table in opts.memory_tables:
            content = _get(memory, "content")
            text = content if isinstance(content, str) else _get(content, "text")
            mid = _get(memory, "id") or result
            forward({"id": f"MEMORY_CREATED:{mid or uuid.uuid4()}", "type": "MEMORY_CREATED",
                     "table": table, "text": text if isinstance(text, str) else None,
                     "roomId": _str(_get(memory, "room_id", "roomId")),
                     "timestamp": time.time() * 1000})
        return result

    setattr(wrapped, _WRAPPED, True)
    runtime.create_memory = wrapped
