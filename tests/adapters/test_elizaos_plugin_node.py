"""The TypeScript plugin and the Python bridge together: node runs a real
``@elizaos/core`` AgentRuntime with the built plugin
(``adapters/elizaos/plugin/scripts/drive-runtime.mjs``), which posts to a real
bridge, which syncs to a real hub. Needs node and the built npm package
(``npm ci && npm run build`` in ``adapters/elizaos/plugin``); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from experience_sync_elizaos import BridgeServer, create_bridge_app, start_manager

from experience_sync.hub.web.server import run_in_thread

PLUGIN = Path(__file__).resolve().parents[2] / "adapters" / "elizaos" / "plugin"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (PLUGIN / "node_modules" / "@elizaos" / "core").is_dir()
    or not (PLUGIN / "dist" / "index.js").is_file(),
    reason="needs node and the built plugin: cd adapters/elizaos/plugin && npm ci && npm run build",
)

AGENT = "support-agent"
INSTANCE = "eliza-ts-1"


def test_typescript_plugin_to_bridge_to_hub(tmp_path: Path) -> None:
    assert NODE is not None
    with run_in_thread() as hub:
        manager = start_manager(hub=hub.url, agent=AGENT, token=hub.create_token(AGENT, INSTANCE),
                                instance_id=INSTANCE, data_dir=tmp_path)
        try:
            app = create_bridge_app(manager, INSTANCE, "node-secret")
            with BridgeServer(app) as bridge:
                env = {**os.environ, "EXPERIENCE_SYNC_BRIDGE_URL": bridge.url,
                       "EXPERIENCE_SYNC_BRIDGE_SECRET": "node-secret"}
                run = subprocess.run([NODE, "scripts/drive-runtime.mjs"], cwd=PLUGIN, env=env,
                                     capture_output=True, text=True, timeout=120)
                assert run.returncode == 0, run.stdout + run.stderr
                stats = json.loads(run.stdout.strip().splitlines()[-1])
                assert stats["delivered"] is True and stats["sent"] == 8
                assert app.state.counters["recorded"] == 8
            assert manager.flush(timeout=15)
        finally:
            manager.shutdown(10)
        state = httpx.get(f"{hub.url}/v1/agents/{AGENT}/state", timeout=10, headers={
            "Authorization": f"Bearer {hub.create_token(AGENT, INSTANCE, 'read')}"}).json()

    skills = {s["name"]: s["usage"] for s in state["skills"]}
    assert skills["LOOKUP_ORDER"]["total_invocations"] == 2
    assert skills["LOOKUP_ORDER"]["success_rate"] == 1.0
    assert skills["REFUND"]["success_rate"] == 0.0
    assert [m["content"] for m in state["memories"]] == ["Customers in Lyon prefer morning delivery"]
    assert [k["content"] for k in state["knowledge"]] == ["Order 42 ships from the Lyon warehouse"]
    assert state["stats"]["interactions"] == 3  # received, sent, run ended
    assert "abcdef0123456789" not in json.dumps(state)
