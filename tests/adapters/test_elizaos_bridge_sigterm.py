"""`experience-sync elizaos-bridge` stopped with SIGTERM delivers what its outbox holds.

Service managers (systemd, docker, Kubernetes) stop a process with SIGTERM, not
Ctrl-C. Low-priority ElizaOS events (messages, runs) wait for the bridge's
lumped batch; stopping the bridge must still send them to the hub.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from experience_sync.hub.web.server import run_in_thread

AGENT, INSTANCE, SECRET = "support-agent", "eliza-term-1", "bridge-secret-for-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the bridge exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the bridge did not come up")


def test_sigterm_flushes_the_lumped_events_to_the_hub(tmp_path: Path) -> None:
    port = _free_port()
    bridge_url = f"http://127.0.0.1:{port}"
    with run_in_thread(f"sqlite:///{tmp_path / 'hub.db'}") as hub:
        env = {k: v for k, v in os.environ.items() if k != "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD"}
        env.update(EXPERIENCE_SYNC_LOAD_PLUGINS="elizaos",
                   EXPERIENCE_SYNC_HUB_TOKEN=hub.create_token(AGENT, INSTANCE),
                   ELIZAOS_BRIDGE_SECRET=SECRET)
        bridge = subprocess.Popen(
            [sys.executable, "-c", "from experience_sync.cli import main; main()",
             "elizaos-bridge", "--hub", hub.url, "--agent", AGENT, "--instance", INSTANCE,
             "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "bridge")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_until_up(bridge_url, bridge)
            now = int(time.time() * 1000)
            events = [{"id": f"MESSAGE_RECEIVED:{uuid.uuid4()}", "type": "MESSAGE_RECEIVED",
                       "timestamp": now, "textLength": 12},
                      {"id": f"RUN_ENDED:{uuid.uuid4()}", "type": "RUN_ENDED", "timestamp": now,
                       "status": "completed", "durationMs": 900}]
            r = httpx.post(f"{bridge_url}/v1/elizaos/events", timeout=10,
                           headers={"Authorization": f"Bearer {SECRET}"},
                           json={"schema": "experience-sync-elizaos/1", "agent": {"name": "Ada"},
                                 "events": events})
            assert r.status_code == 200, r.text
            assert r.json()["recorded"] == 2
        finally:
            bridge.send_signal(signal.SIGTERM)
            returncode = bridge.wait(30)
        assert returncode == 128 + signal.SIGTERM
        state = httpx.get(f"{hub.url}/v1/agents/{AGENT}/state", timeout=10,
                          headers={"Authorization": f"Bearer {hub.create_token(AGENT, 'r', 'read')}"})
        assert state.json()["stats"]["interactions"] == 2
