"""An ElizaOS agent's experiences reaching a source agent through the bridge.

Starts a hub on loopback, runs ``experience-sync elizaos-bridge`` as a user
would (a separate process), posts a few events exactly as the ElizaOS plugin
``@experience-sync/elizaos-plugin`` posts them, stops the bridge (which
delivers what it holds), and prints what the source agent learned. Offline.

    pip install ./core ./adapters/elizaos
    python examples/elizaos_bridge.py

With ``--node`` (and node plus the built plugin: ``cd adapters/elizaos/plugin
&& npm ci && npm run build``) the events come from the real plugin inside a
real ``@elizaos/core`` AgentRuntime instead.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from experience_sync.testing import run_in_thread

AGENT = "support-agent"
INSTANCE = "eliza-shop-1"
PLUGIN_DIR = Path(__file__).resolve().parents[1] / "adapters" / "elizaos" / "plugin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def elizaos_events() -> list[dict[str, Any]]:
    """What the plugin forwards for one short support conversation."""
    room, now = str(uuid.uuid4()), int(time.time() * 1000)

    def ev(type_: str, **fields: Any) -> dict[str, Any]:
        return {"id": f"{type_}:{uuid.uuid4()}", "type": type_, "timestamp": now,
                "roomId": room, "source": "discord", **fields}

    return [
        ev("MESSAGE_RECEIVED", textLength=41),
        ev("ACTION_COMPLETED", action="LOOKUP_ORDER", success=True, status="completed"),
        ev("ACTION_COMPLETED", action="LOOKUP_ORDER", success=True, status="completed"),
        ev("ACTION_COMPLETED", action="REFUND", success=False, status="failed",
           error="over the refund limit"),
        ev("MESSAGE_SENT", textLength=58, actions=["REPLY"]),
        ev("EVALUATOR_COMPLETED", evaluator="REFLECTION", completed=True,
           facts=["Order 42 ships from the Lyon warehouse"]),
        ev("MEMORY_CREATED", table="memories", text="Customers in Lyon prefer morning delivery"),
        ev("RUN_ENDED", runId=str(uuid.uuid4()), status="completed", durationMs=900),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", action="store_true",
                        help="drive the real TypeScript plugin in an @elizaos/core runtime")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xs-elizaos-"))
    bridge_secret = secrets.token_urlsafe(16)
    port = free_port()
    bridge_url = f"http://127.0.0.1:{port}"
    try:
        with run_in_thread(f"sqlite:///{work / 'hub.db'}") as hub:
            print(f"hub on {hub.url}")
            env = {**os.environ,
                   "EXPERIENCE_SYNC_HUB_TOKEN": hub.create_token(AGENT, INSTANCE),
                   "ELIZAOS_BRIDGE_SECRET": bridge_secret}
            bridge = subprocess.Popen(
                [sys.executable, "-c", "from experience_sync.cli import main; main()",
                 "elizaos-bridge", "--hub", hub.url, "--agent", AGENT, "--instance", INSTANCE,
                 "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "bridge")],
                env=env,
            )
            try:
                wait_until_up(bridge_url, bridge)
                if args.node:
                    post_with_node(bridge_url, bridge_secret)
                else:
                    r = httpx.post(f"{bridge_url}/v1/elizaos/events", timeout=10,
                                   headers={"Authorization": f"Bearer {bridge_secret}"},
                                   json={"schema": "experience-sync-elizaos/1",
                                         "agent": {"name": "Ada"}, "events": elizaos_events()})
                    r.raise_for_status()
                    print(f"bridge recorded: {r.json()}")
            finally:
                # Ctrl-C: the bridge stops serving and delivers its outbox before exiting.
                bridge.send_signal(signal.SIGINT)
                bridge.wait(30)
            report(hub.url, hub.create_token(AGENT, INSTANCE, "read"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the bridge exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit("the bridge did not come up")


def post_with_node(bridge_url: str, secret: str) -> None:
    node = shutil.which("node")
    if node is None or not (PLUGIN_DIR / "dist" / "index.js").is_file():
        sys.exit("--node needs node and the built plugin (npm ci && npm run build)")
    env = {**os.environ, "EXPERIENCE_SYNC_BRIDGE_URL": bridge_url,
           "EXPERIENCE_SYNC_BRIDGE_SECRET": secret}
    run = subprocess.run([node, "scripts/drive-runtime.mjs"], cwd=PLUGIN_DIR, env=env,
                         capture_output=True, text=True, timeout=120)
    print(f"ElizaOS plugin: {run.stdout.strip()}")
    if run.returncode:
        sys.exit(run.stderr)


def report(hub_url: str, read_token: str) -> None:
    state = httpx.get(f"{hub_url}/v1/agents/{AGENT}/state", timeout=10,
                      headers={"Authorization": f"Bearer {read_token}"}).json()
    print(f"\nwhat source agent {AGENT!r} learned from ElizaOS:")
    for s in state["skills"]:
        u = s["usage"]
        print(f"  skill     {s['name']:<14} used {u['total_invocations']}x, "
              f"success rate {u['success_rate']:.0%}")
    for m in state["memories"]:
        print(f"  memory    {m['content']}")
    for k in state["knowledge"]:
        print(f"  knowledge {k['content']} ({k['status']})")
    print(f"  interactions recorded: {state['stats']['interactions']}")


if __name__ == "__main__":
    main()
