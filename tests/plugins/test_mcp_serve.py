"""The installed plugin, found through its entry point, serving /mcp from ``experience-sync serve``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from experience_sync_mcp import McpTransport

from experience_sync.interfaces import SyncRequest
from experience_sync.models import EventsRequest, ExperienceEvent, MemoryData

SCRIPT = str(Path(sys.executable).with_name("experience-sync"))


def test_serve_mounts_mcp_from_the_entry_point(
    tmp_path: Path, enable_plugin_autoload: Callable[..., None]
) -> None:
    enable_plugin_autoload("experience-sync-mcp")  # only this installed plugin loads
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    created = subprocess.run(
        [SCRIPT, "token", "create", "--store", store, "--agent", "ops", "--instance", "i1"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    match = re.search(r"xs_\S+", created.stdout)
    assert match, created.stdout
    token = match.group(0)
    plugins = subprocess.run(
        [SCRIPT, "plugins", "--json"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert '"experience-sync-mcp"' in plugins
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        [SCRIPT, "serve", "--store", store, "--port", str(port), "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
    ) as server:
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
            t = McpTransport(url, agent_id="ops", auth_token=token)  # bare URL: /mcp
            try:
                event = ExperienceEvent(
                    source_instance="i1", event_type="memory",
                    data=MemoryData(content="The nightly backup runs at 02:00 UTC."),
                )
                unit = SyncRequest("events", "ops", EventsRequest(instance_id="i1", events=[event]))
                assert t.send(unit, timeout=20).memories_added == 1
                assert [m.content for m in t.fetch_state(timeout=20).memories] == [
                    "The nightly backup runs at 02:00 UTC."
                ]
            finally:
                t.close()
            assert httpx.post(f"{url}/mcp", json={}).status_code == 401
        finally:
            server.terminate()  # uvicorn shuts down, then exits by the signal
            server.wait(timeout=30)
