"""ExperienceSyncManager with the mcp transport, against a real hub on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import experience_sync_mcp.plugin
import httpx
import pytest

from experience_sync.client.manager import ExperienceSyncManager
from experience_sync.config import load_config
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.models import ObservabilityEvent

AGENT = "field-agent"


@pytest.fixture
def hub(register_plugin: Callable[..., str]) -> Iterator[HubServer]:
    register_plugin(experience_sync_mcp.plugin, name="mcp")
    with run_in_thread() as server:
        yield server


def mcp_config(hub: HubServer, token: str, tmp_path: Path, **extra: Any) -> Any:
    return load_config(
        cwd=tmp_path,
        environ={},
        default_protocol="check_in",
        check_in={"enabled": True, "schedule": "0 0 1 1 *", "include_full_state": True},
        transport={"type": "mcp", "mcp": {"server": f"{hub.url}/mcp", "auth_token": token}},
        outbox={"data_dir": str(tmp_path / "outboxes")},
        **extra,
    )


def test_manager_delivers_check_ins_over_mcp(
    hub: HubServer, tmp_path: Path, register_plugin: Callable[..., str]
) -> None:
    seen: list[ObservabilityEvent] = []

    class Observer:
        @staticmethod
        def experience_sync_observe(event: ObservabilityEvent) -> None:
            if event.type.startswith("sync."):
                seen.append(event)

    register_plugin(Observer, name="observer")
    token = hub.create_token(AGENT, "edge-1")
    manager = ExperienceSyncManager(mcp_config(hub, token, tmp_path))
    manager.initialize_sync("edge-1", protocol="check_in", agent_id=AGENT)
    try:
        manager.record_memory("edge-1", "The warehouse door code changed on Monday.")
        manager.record_skill_use("edge-1", "inventory counting", proficiency=0.6)
        manager.record_knowledge(
            "edge-1", "Pallets over 800 kg need the forklift.", subject="pallet limit"
        )
        # the cron schedule is a year away: flush ships the check-in now
        assert manager.flush(timeout=20)
        status = manager.status("edge-1")
        assert status.transport == "mcp"
        assert status.backlog_size == 0
        assert status.delivered == 3
        assert status.error is None

        state = manager.pull(AGENT, instance_id="edge-1")
        assert [m.content for m in state.memories] == [
            "The warehouse door code changed on Monday."
        ]
        assert [s.name for s in state.skills] == ["inventory counting"]
        assert len(state.knowledge) == 1

        instances = httpx.get(
            f"{hub.url}/v1/agents/{AGENT}/instances",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert [(i["instance_id"], i["transport"], i["protocol"]) for i in instances] == [
            ("edge-1", "mcp", "check_in")
        ]
    finally:
        assert manager.shutdown(timeout=10)
    assert any(e.type == "sync.check_in" for e in seen)


def test_refused_token_keeps_events_and_reports(hub: HubServer, tmp_path: Path) -> None:
    # A 403 is an authorization problem the operator can fix (a new token):
    # the events stay in the outbox and the status says why.
    token = hub.create_token(AGENT, "someone-else")
    manager = ExperienceSyncManager(mcp_config(hub, token, tmp_path))
    manager.initialize_sync("edge-2", protocol="check_in", agent_id=AGENT)
    try:
        manager.record_memory("edge-2", "This instance has the wrong token.")
        assert not manager.flush(timeout=3)
        status = manager.status("edge-2")
        assert status.backlog_size == 1
        assert status.dead_lettered == 0
        assert "[403]" in (status.error or "")
    finally:
        assert not manager.shutdown(timeout=1)  # what is left waits in the outbox
