"""End to end against the real hub: every protocol over both transports, a killed
instance process, and a hub that goes away for a while."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_helpers import make_config, wait_until

from experience_sync import ExperienceSyncManager
from experience_sync.hub.web.server import HubServer, run_in_thread

HERE = Path(__file__).parent


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with run_in_thread() as server:
        yield server


def hub_log(server: HubServer, agent: str) -> list[str]:
    """Event ids in the hub's append-only log (one entry per applied event)."""
    return [e.entry_id for e in server.hub.store.iter_log(agent) if e.kind == "event"]


def _config(server: HubServer, transport: str, token: str, **extra: Any) -> Any:
    return make_config(
        transport={"type": transport, "https": {"endpoint": server.url, "auth_token": token},
                   "websocket": {"url": server.ws_url}},
        **extra,
    )


@pytest.mark.parametrize("transport", ["https", "websocket"])
@pytest.mark.parametrize("protocol", ["streaming", "lumped", "check_in"])
def test_every_protocol_over_every_transport(
    hub: HubServer, tmp_path: Path, transport: str, protocol: str
) -> None:
    token = hub.create_token("agent", "inst-1")
    cfg = _config(hub, transport, token, lumped={"batch_interval": "1h", "compression": "zstd"},
                  check_in={"schedule": "0 0 1 1 *"})
    m = ExperienceSyncManager(cfg, data_dir=tmp_path)
    m.initialize_sync("inst-1", protocol, agent_id="agent")
    ids = [
        m.record_memory("inst-1", "The user prefers metric units", importance=0.9).event_id,
        m.record_memory("inst-1", "Deploys happen on Tuesdays", importance=0.8).event_id,
        m.record_skill_use("inst-1", "sql", proficiency=0.7).event_id,
        m.record_knowledge("inst-1", "The office is in Lyon", subject="office").event_id,
        m.record_characteristic("inst-1", "tone", "concise").event_id,
        m.record_interaction("inst-1", "answered a billing question", outcome="resolved").event_id,
    ]
    assert m.flush(timeout=30)
    log = hub_log(hub, "agent")  # a full-state check-in adds entries of its own
    assert sorted(e for e in log if e in set(ids)) == sorted(ids)
    state = m.pull("agent")
    assert {mem.content for mem in state.memories} >= {"The user prefers metric units"}
    assert [s.name for s in state.skills] == ["sql"]
    [instance] = hub.engine.instances("agent")
    assert instance.transport == transport
    assert instance.protocol == protocol
    status = m.status("inst-1")
    assert status.delivered == 6 and status.backlog_size == 0 and status.error is None
    assert m.shutdown(10)


def test_streaming_and_lumped_together(hub: HubServer, tmp_path: Path) -> None:
    token = hub.create_token("agent", "inst-1")
    cfg = _config(hub, "https", token, lumped={"enabled": True, "batch_interval": "1h",
                                                "max_batch_size": 7})
    m = ExperienceSyncManager(cfg, data_dir=tmp_path)
    m.initialize_sync("inst-1", agent_id="agent")
    high = [m.record_memory("inst-1", f"urgent fact {i}", importance=0.9).event_id
            for i in range(5)]
    assert m.flush(timeout=30)
    low = [m.record_memory("inst-1", f"background detail number {i}", importance=0.1).event_id
           for i in range(20)]
    assert m.flush(timeout=30)
    assert sorted(hub_log(hub, "agent")) == sorted(high + low)
    assert m.shutdown(10)


@pytest.mark.parametrize("transport", ["https", "websocket"])
def test_hub_down_backlog_grows_then_drains(hub: HubServer, tmp_path: Path,
                                            transport: str) -> None:
    token = hub.create_token("agent", "inst-1")
    cfg = _config(hub, transport, token, streaming={"interval_ms": 20})
    m = ExperienceSyncManager(cfg, data_dir=tmp_path)
    m.initialize_sync("inst-1", "streaming", agent_id="agent")
    m.record_memory("inst-1", "before the outage", importance=0.9)
    assert m.flush(timeout=30)
    hub.stop()
    ids = [m.record_memory("inst-1", f"during the outage {i}", importance=0.9).event_id
           for i in range(50)]
    assert wait_until(lambda: m.status("inst-1").error is not None, timeout=30)
    status = m.status("inst-1")
    assert status.backlog_size == 50 and status.delivered == 1
    hub.start()
    assert m.flush(timeout=60)
    assert set(ids) <= set(hub_log(hub, "agent"))
    assert m.status("inst-1").backlog_size == 0
    assert m.shutdown(10)


def _spawn(server: HubServer, token: str, data_dir: Path, start: int,
           durability: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(HERE / "instance_process.py"), server.url, token, str(data_dir),
         str(start), durability],
        stdout=subprocess.PIPE, text=True, env=env,
    )


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["group", "sync"])
def test_kill_9_mid_streaming_loses_nothing_and_doubles_nothing(
    hub: HubServer, tmp_path: Path, durability: str
) -> None:
    token = hub.create_token("fleet", "killable")
    recorded: list[str] = []
    rng = random.Random(4)
    for round_ in range(3):
        proc = _spawn(hub, token, tmp_path, start=round_ * 10_000, durability=durability)
        assert proc.stdout is not None
        target = rng.randint(150, 1500 if durability == "group" else 500)
        for _ in range(target):
            line = proc.stdout.readline()
            assert line, "the instance process ended early"
            recorded.append(line.strip())
        proc.send_signal(signal.SIGKILL)  # mid-streaming: no flush, no atexit
        proc.wait(10)
        proc.stdout.close()
    cfg = _config(hub, "https", token)
    m = ExperienceSyncManager(cfg, data_dir=tmp_path)
    m.initialize_sync("killable", "streaming", agent_id="fleet")
    assert m.flush(timeout=60)
    log = hub_log(hub, "fleet")
    assert set(recorded) <= set(log)  # nothing lost
    assert len(log) == len(set(log))  # nothing applied twice
    [instance] = hub.engine.instances("fleet")
    assert instance.total_events == len(log)
    assert m.shutdown(10)


@pytest.mark.parametrize("transport", ["https", "websocket"])
def test_a_refused_token_keeps_the_backlog(hub: HubServer, tmp_path: Path,
                                           transport: str) -> None:
    cfg = _config(hub, transport, "not-a-token", streaming={"interval_ms": 20})
    m = ExperienceSyncManager(cfg, data_dir=tmp_path)
    m.initialize_sync("inst-1", "streaming", agent_id="agent")
    m.record_memory("inst-1", "waits for a valid token", importance=0.9)
    assert wait_until(lambda: m.status("inst-1").error is not None, timeout=30)
    status = m.status("inst-1")
    assert "401" in (status.error or "")
    assert status.backlog_size == 1 and status.dead_lettered == 0
    assert not m.shutdown(1)
