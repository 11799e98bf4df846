"""The mcp transport on the 2.x SDK (``mcp.Client``, httpx2) against a hub on the 1.x SDK.

2.x cannot be installed next to crewai's 1.x pin, so this test runs only when
``EXPERIENCE_SYNC_TEST_MCP2_PATH`` names a folder holding it, made with
``pip install --target /tmp/mcp2 'mcp>=2'``. The client runs in a subprocess
with that folder first on its path; the hub runs here, on 1.x.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import experience_sync_mcp.plugin
import pytest

from experience_sync.hub.web.server import run_in_thread

MCP2 = os.environ.get("EXPERIENCE_SYNC_TEST_MCP2_PATH")

CLIENT = textwrap.dedent(
    """
    import sys
    from experience_sync.errors import RejectedError
    from experience_sync.interfaces import SyncRequest
    from experience_sync.models import EventsRequest, ExperienceEvent, MemoryData
    from experience_sync_mcp.transport import McpTransport, _Client2

    assert _Client2 is not None, "not the 2.x SDK"
    url, token = sys.argv[1], sys.argv[2]
    ev = ExperienceEvent(source_instance="i1", event_type="memory",
                         data=MemoryData(content="Sent by the 2.x client."))
    def unit(instance):
        return SyncRequest("events", "agent", EventsRequest(instance_id=instance, events=[ev]))
    t = McpTransport(url, agent_id="agent", auth_token=token)
    print("added", t.send(unit("i1"), timeout=10).memories_added)
    print("state", [m.content for m in t.fetch_state(timeout=10).memories])
    for who, transport, instance in (("wrong-instance", t, "i2"),
                                     ("bad-token", McpTransport(url, auth_token="xs_a_b"), "i1")):
        try:
            transport.send(unit(instance), timeout=5)
        except RejectedError as exc:
            print(who, exc.status_code)
        transport.close()
    """
)


@pytest.mark.skipif(not MCP2, reason="EXPERIENCE_SYNC_TEST_MCP2_PATH is not set")
def test_transport_on_sdk2_talks_to_a_hub_on_sdk1(register_plugin: Callable[..., str]) -> None:
    register_plugin(experience_sync_mcp.plugin, name="mcp")
    with run_in_thread() as hub:
        token = hub.create_token("agent", "i1")
        env = {**os.environ, "PYTHONPATH": str(MCP2)}
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, f"{hub.url}/mcp", token],
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "added 1",
        "state ['Sent by the 2.x client.']",
        "wrong-instance 403",
        "bad-token 401",
    ]
