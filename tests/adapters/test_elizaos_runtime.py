"""The Python ``elizaos`` runtime (2.0.0a5) hooked with ``attach``, ending at a real hub.

The runtime is real: actions run through ``AgentRuntime.process_actions``,
evaluators through ``evaluate``, memories through ``create_memory`` (on a small
in-memory database adapter), and message events are emitted with the keys
the runtime's own code uses (the string ``"MESSAGE_SENT"``; for
``MESSAGE_RECEIVED`` the protobuf enum's name, since 2.0.0a5's ``emit_event``
cannot dispatch the enum's int value). No model is called.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("elizaos.runtime", reason="install experience-sync-elizaos[runtime]")

from elizaos.runtime import AgentRuntime
from elizaos.types import Character
from elizaos.types.components import ActionDefinition, ActionResult, EvaluatorDefinition
from elizaos.types.events import EventType
from elizaos.types.memory import Memory
from elizaos.types.primitives import Content
from experience_sync_elizaos import attach, start_manager

from experience_sync.hub.web.server import HubServer, run_in_thread

AGENT = "support-agent"
INSTANCE = "eliza-py-1"


class InMemoryAdapter:
    """The part of the database adapter these runtime calls use."""

    def __init__(self) -> None:
        self.memories: list[tuple[str | None, Any]] = []

    async def create_memory(self, memory: Any, table_name: Any = None, unique: Any = None) -> str:
        self.memories.append((table_name, memory))
        return str(uuid.uuid4())

    async def close(self) -> None:
        return None


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with run_in_thread() as server:
        yield server


def _memory(text: str, actions: list[str] | None = None) -> Memory:
    return Memory(id=str(uuid.uuid4()), room_id=str(uuid.uuid4()),
                  content=Content(text=text, source="discord", actions=actions or []))


async def _ok(*_: Any) -> bool:
    return True


def _action(name: str, handler: Any) -> ActionDefinition:
    return ActionDefinition(name=name, description=name, handler=handler, validate=_ok)


async def _drive(runtime: AgentRuntime) -> None:
    async def lookup(*_: Any) -> ActionResult:
        return ActionResult(success=True, text="order 42 shipped")

    async def refund(*_: Any) -> ActionResult:
        return ActionResult(success=False, text="refused", error="over limit")

    async def explode(*_: Any) -> ActionResult:
        raise RuntimeError("kaboom")

    async def reflect(*_: Any) -> None:
        await runtime.create_memory(_memory("Order 42 ships from the Lyon warehouse"), "facts")

    for name, fn in (("LOOKUP_ORDER", lookup), ("REFUND", refund), ("EXPLODE", explode)):
        runtime.register_action(_action(name, fn))
    runtime.register_evaluator(EvaluatorDefinition(name="REFLECTION", description="r",
                                                   handler=reflect, validate=_ok))

    message = _memory("where is my order? my password is hunter2")
    # the protobuf enum's name: the int value itself cannot be emitted in 2.0.0a5
    await runtime.emit_event(EventType.Name(EventType.EVENT_TYPE_MESSAGE_RECEIVED),
                             {"runtime": runtime, "message": message, "source": "autonomy"})
    for names in (["LOOKUP_ORDER"], ["LOOKUP_ORDER"], ["REFUND"]):
        await runtime.process_actions(message, [_memory("", names)])
    with pytest.raises(RuntimeError, match="kaboom"):
        await runtime.process_actions(message, [_memory("", ["EXPLODE"])])
    reply = _memory("Your order shipped.")
    await runtime.emit_event("MESSAGE_SENT", {"runtime": runtime, "message": reply,
                                              "source": "message-service"})
    await runtime.evaluate(message, did_respond=True)
    await runtime.create_memory(_memory("Customers in Lyon prefer morning delivery"), "memories")
    await runtime.create_memory(_memory("raw chat line"), "messages")


def test_python_runtime_experiences_reach_the_hub(hub: HubServer, tmp_path: Path) -> None:
    adapter = InMemoryAdapter()
    runtime = AgentRuntime(character=Character(name="Ada", bio="support agent"), adapter=adapter,
                           disable_basic_capabilities=True)
    manager = start_manager(hub=hub.url, agent=AGENT, token=hub.create_token(AGENT, INSTANCE),
                            instance_id=INSTANCE, data_dir=tmp_path)
    try:
        attachment = attach(runtime, manager, INSTANCE)
        asyncio.run(_drive(runtime))
        assert attachment.errors == 0
        assert len(adapter.memories) == 3, "the runtime's own storage still happens"
        assert manager.flush(timeout=15)
    finally:
        manager.shutdown(10)

    state = httpx.get(f"{hub.url}/v1/agents/{AGENT}/state", timeout=10, headers={
        "Authorization": f"Bearer {hub.create_token(AGENT, INSTANCE, 'read')}"}).json()
    skills = {s["name"]: s for s in state["skills"]}
    assert skills["LOOKUP_ORDER"]["usage"]["total_invocations"] == 2
    assert skills["LOOKUP_ORDER"]["usage"]["success_rate"] == 1.0
    assert skills["LOOKUP_ORDER"]["proficiency"] == 1.0
    assert skills["REFUND"]["proficiency"] == 0.0
    assert skills["REFUND"]["usage"]["success_rate"] == 0.0
    assert skills["EXPLODE"]["usage"]["total_invocations"] == 1
    assert skills["EXPLODE"]["usage"]["success_rate"] == 0.0
    assert skills["REFLECTION"]["category"] == "elizaos-evaluator"
    assert [m["content"] for m in state["memories"]] == ["Customers in Lyon prefer morning delivery"]
    assert [k["content"] for k in state["knowledge"]] == ["Order 42 ships from the Lyon warehouse"]
    assert state["stats"]["interactions"] == 2  # MESSAGE_RECEIVED (enum name) and MESSAGE_SENT
    assert "hunter2" not in str(state)


def test_detach_stops_recording(hub: HubServer, tmp_path: Path) -> None:
    runtime = AgentRuntime(character=Character(name="Bo", bio="b"), adapter=InMemoryAdapter(),
                           disable_basic_capabilities=True)
    manager = start_manager(hub=hub.url, agent=AGENT, token=hub.create_token(AGENT, INSTANCE),
                            instance_id=INSTANCE, data_dir=tmp_path)
    try:
        attachment = attach(runtime, manager, INSTANCE)
        attachment.detach()

        async def go() -> None:
            await runtime.emit_event("MESSAGE_SENT", {"message": _memory("x")})
            await runtime.create_memory(_memory("not synced"), "memories")

        asyncio.run(go())
        assert attachment.recorded == 0
        assert manager.status(INSTANCE) is not None
    finally:
        manager.shutdown(10)
