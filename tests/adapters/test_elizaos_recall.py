"""The ElizaOS read path end to end: other instances learn, the hub merges, and
the bridge's search route (what the TypeScript plugin's provider asks) answers
from the bridge's local replica, also while the hub is down.

A real hub on loopback, plain ``ExperienceSyncManager`` instances as the rest
of the fleet, the real bridge app served by uvicorn; the last test runs the
built plugin in a real ``@elizaos/core`` AgentRuntime (node) that composes its
prompt state through the bridge (skipped without node and the built package).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from experience_sync_elizaos import WIRE_SCHEMA, BridgeServer, create_bridge_app, start_manager

from experience_sync import ExperienceSyncManager, load_config
from experience_sync.hub.web.server import HubServer, run_in_thread

AGENT = "support-agent"
BRIDGE_INSTANCE = "eliza-1"
SECRET = "bridge-secret"
LESSON = "The payments API is down every Sunday night; retry on Monday"
FACT = "Refunds take five business days"

PLUGIN = Path(__file__).resolve().parents[2] / "adapters" / "elizaos" / "plugin"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None or not (PLUGIN / "node_modules" / "@elizaos" / "core").is_dir()
    or not (PLUGIN / "dist" / "index.js").is_file(),
    reason="needs node and the built plugin: cd adapters/elizaos/plugin && npm ci && npm run build",
)


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@dataclass
class Fleet:
    hub: HubServer
    bridge: BridgeServer
    bridge_manager: Any
    instance: Callable[[str], ExperienceSyncManager]

    def search(self, body: dict[str, Any] | None = None, *, secret: str | None = SECRET,
               raw: bytes | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
        if raw is not None:
            return httpx.post(f"{self.bridge.url}/v1/elizaos/search", content=raw,
                              headers=headers, timeout=10)
        return httpx.post(f"{self.bridge.url}/v1/elizaos/search", json=body, headers=headers,
                          timeout=10)

    def get(self, params: dict[str, Any], *, secret: str | None = SECRET) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
        return httpx.get(f"{self.bridge.url}/v1/elizaos/search", params=params, headers=headers,
                         timeout=10)

    def texts(self, q: str, **fields: Any) -> list[str]:
        r = self.search({"q": q, **fields})
        assert r.status_code == 200, r.text
        return [h["text"] for h in r.json()["hits"]]


@contextmanager
def running_fleet(tmp_path: Path) -> Iterator[Fleet]:
    config = load_config(environ={}, cwd=tmp_path, recall={"pull_interval": 0.2})
    managers: list[ExperienceSyncManager] = []
    with run_in_thread(f"sqlite:///{tmp_path}/hub.db", auth=False) as hub:

        def instance(name: str) -> ExperienceSyncManager:
            manager = ExperienceSyncManager(config, data_dir=tmp_path / "fleet")
            manager.initialize_sync(name, agent_id=AGENT, endpoint=hub.url)
            managers.append(manager)
            return manager

        bridge_manager = start_manager(hub=hub.url, agent=AGENT, token="unused-without-auth",
                                       instance_id=BRIDGE_INSTANCE, data_dir=tmp_path / "bridge",
                                       config=config)
        managers.append(bridge_manager)
        try:
            app = create_bridge_app(bridge_manager, BRIDGE_INSTANCE, SECRET)
            with BridgeServer(app) as bridge:
                yield Fleet(hub, bridge, bridge_manager, instance)
        finally:
            for manager in managers:
                manager.shutdown(timeout=2)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with running_fleet(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def idle_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One fleet for the tests that only send bad requests (it never changes)."""
    with running_fleet(tmp_path_factory.mktemp("idle")) as running:
        yield running


def test_what_another_instance_learns_reaches_the_bridge_search_and_survives_the_hub_down(
    fleet: Fleet,
) -> None:
    a = fleet.instance("instance-a")
    a.record_memory("instance-a", LESSON, tags=["payments"])
    a.record_knowledge("instance-a", FACT, subject="refund delay", confidence=0.9)

    r = wait_for(lambda: (lambda r: r if r.json()["hits"] else None)(
        fleet.search({"q": "payments outage on sunday", "k": 3})))
    (hit,) = [h for h in r.json()["hits"] if h["kind"] == "memory"]
    assert hit["text"] == LESSON and hit["line"] == LESSON
    assert hit["score"] > 0
    assert hit["provenance"]["source_instances"] == ["instance-a"]
    assert hit["provenance"]["local"] is False
    assert "item" not in hit
    assert r.json()["instance_id"] == BRIDGE_INSTANCE

    # One instance's knowledge is pending at the hub: not recalled by default.
    assert fleet.texts("how long do refunds take", kinds=["knowledge"]) == []
    pending = fleet.texts("how long do refunds take", kinds=["knowledge"], knowledge_status="pending")
    assert any(FACT in t for t in pending)
    # A second instance verifies it: integrated, so recalled.
    b = fleet.instance("instance-b")
    b.record_knowledge("instance-b", FACT, subject="refund delay", confidence=0.9)
    (fact,) = wait_for(lambda: fleet.texts("how long do refunds take", kinds=["knowledge"]))
    assert FACT in fact

    fleet.hub.stop()
    assert fleet.bridge_manager.refresh(BRIDGE_INSTANCE, timeout=1) is False
    assert fleet.texts("payments sunday", kinds=["memory"]) == [LESSON]
    assert any(FACT in t for t in fleet.texts("refunds", kinds="knowledge"))
    got = fleet.get({"q": "payments sunday", "k": "2", "kinds": "memory,knowledge"})
    assert got.status_code == 200, got.text
    assert [h["text"] for h in got.json()["hits"]][:1] == [LESSON]


def test_what_the_bridge_itself_recorded_is_found_at_once(fleet: Fleet) -> None:
    fleet.hub.stop()  # nothing is merged: the hit can only come from the replica's own writes
    body = {"schema": WIRE_SCHEMA, "agent": {"id": "a1", "name": "Ada"}, "events": [{
        "id": f"MEMORY_CREATED:{uuid.uuid4()}", "type": "MEMORY_CREATED",
        "timestamp": 1_764_000_000_000, "table": "memories",
        "text": "Customers in Lyon prefer morning delivery"}]}
    posted = httpx.post(f"{fleet.bridge.url}/v1/elizaos/events", json=body,
                        headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)
    assert posted.status_code == 200, posted.text
    (hit,) = fleet.search({"q": "when do Lyon customers want delivery"}).json()["hits"]
    assert hit["text"] == "Customers in Lyon prefer morning delivery"
    assert hit["provenance"]["local"] is True


def test_search_needs_the_bridge_secret(idle_fleet: Fleet) -> None:
    for secret in (None, "wrong", "bridge-secretx"):
        for response in (idle_fleet.search({"q": "payments"}, secret=secret),
                         idle_fleet.get({"q": "payments"}, secret=secret)):
            assert response.status_code == 401
            assert "secret" in response.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    {},
    {"q": ""},
    {"q": "   "},
    {"q": None},
    {"q": 42},
    {"q": "x" * 2001},
    {"q": "payments", "k": 0},
    {"q": "payments", "k": 101},
    {"q": "payments", "k": "many"},
    {"q": "payments", "kinds": ["memory", "bogus"]},
    {"q": "payments", "kinds": []},
    {"q": "payments", "kinds": 5},
    {"q": "payments", "tags": 5},
    {"q": "payments", "min_confidence": 2},
    {"q": "payments", "knowledge_status": "maybe"},
    {"q": "payments", "limit": 3},
    {"q": "a\x00b"},
], ids=repr)
def test_bad_searches_are_refused_with_a_message(idle_fleet: Fleet, body: dict[str, Any]) -> None:
    r = idle_fleet.search(body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("params", [
    {}, {"q": ""}, {"q": "payments", "k": "x"}, {"q": "payments", "k": "0"},
    {"q": "payments", "min_confidence": "high"}, {"q": "payments", "kinds": "bogus"},
    {"q": "payments", "kinds": ","}, {"q": "payments", "offset": "3"},
], ids=repr)
def test_bad_get_searches_are_refused_with_a_message(idle_fleet: Fleet, params: dict[str, Any]) -> None:
    r = idle_fleet.get(params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"]


def test_malformed_and_oversized_bodies_are_refused(idle_fleet: Fleet) -> None:
    assert idle_fleet.search(raw=b"{not json").status_code == 400
    assert idle_fleet.search(raw=b"\xff\xfe").status_code == 400
    assert idle_fleet.search(raw=b'["payments"]').status_code == 422
    assert idle_fleet.search(raw=b"null").status_code == 422
    big = idle_fleet.search(raw=json.dumps({"q": "x" * 70_000}).encode())
    assert big.status_code == 413 and big.json()["error"]["message"]


@needs_node
def test_a_real_elizaos_runtime_composes_the_fleets_lesson_into_its_state(fleet: Fleet) -> None:
    assert NODE is not None
    a = fleet.instance("instance-a")
    a.record_memory("instance-a", LESSON)
    wait_for(lambda: fleet.texts("payments sunday"))

    def compose(question: str, **env: str) -> dict[str, Any]:
        run = subprocess.run(
            [NODE, "scripts/compose-state.mjs", question], cwd=PLUGIN, capture_output=True,
            text=True, timeout=120,
            env={**os.environ, "EXPERIENCE_SYNC_BRIDGE_URL": fleet.bridge.url,
                 "EXPERIENCE_SYNC_BRIDGE_SECRET": SECRET, **env})
        assert run.returncode == 0, run.stdout + run.stderr
        out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
        return out

    state = compose("Is the payments API up on Sunday night?")
    assert LESSON in state["text"], state
    assert state["values"]["experienceSyncRecall"] == state["recall"]["text"]
    assert [h["text"] for h in state["recall"]["hits"]] == [LESSON]
    assert "instance-a" not in state["text"]

    fleet.hub.stop()
    assert LESSON in compose("payments api sunday")["text"]
    off = compose("payments api sunday", EXPERIENCE_SYNC_RECALL="false")
    assert off["text"] == "" and off["stats"]["requests"] == 0

    fleet.bridge.stop()  # the bridge is gone too: the state is composed, without the lesson
    down = compose("payments api sunday")
    assert down["text"] == "" and down["stats"]["failures"] == 1
