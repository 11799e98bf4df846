"""``experience-sync demo`` run as a user runs it: the installed script, in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

SCRIPT = str(Path(sys.executable).with_name("experience-sync"))


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "demo", *args], capture_output=True, text=True, timeout=120, check=False,
        env=env,
    )


def test_demo_runs_every_part_and_exits_0() -> None:
    done = run_demo()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for line in (
        "edge-ws streaming every 100 ms over WebSocket",
        "edge-http lumped gzip batches over HTTP",
        "edge-mcp check-in with full state over MCP",
        "edge-ws streamed its events (all acknowledged)",
        "edge-http shipped its gzip batch (acknowledged)",
        "edge-mcp checked in over MCP with its full state, triggered now with "
        "manager.flush('edge-mcp')",
        "Source agent support-agent",
        "collapsed into one memory",
        "Skills (aggregation: max)",
        "0.50 -> 0.65 -> 0.80 -> 0.90",
        "strategy latest_wins: resolved to 'friendly'",
        "Review queue: empty",
        "Sync and merge events",
        "every recorded event was acknowledged by the hub",
    ):
        assert line in out, f"missing {line!r} in:\n{out}"
    # the merged memory names all three instances as its sources
    portal = next(ln for ln in out.splitlines() if "The customer portal logs users out" in ln)
    assert all(i in portal for i in ("edge-ws", "edge-http", "edge-mcp"))
    # one fact integrated (three instances), one pending (one instance)
    vpn = next(ln for ln in out.splitlines() if "Restarting the VPN client" in ln)
    refund = next(ln for ln in out.splitlines() if "Refunds above 500 EUR" in ln)
    assert "integrated" in vpn and "pending" in refund
    for event in ("sync.init", "sync.event", "sync.batch", "sync.check_in", "merge.memories",
                  "merge.skills", "merge.knowledge"):
        assert event in out


def test_demo_manual_review_queues_the_conflict() -> None:
    done = run_demo("--strategy", "manual_review")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "strategy manual_review: nothing applied, kept 'formal'" in out
    queue = out[out.index("Review queue ("):]
    assert "reply_tone" in queue and "friendly" in queue and "open" in queue


def test_demo_without_the_mcp_plugin_checks_in_over_http(tmp_path: Path) -> None:
    # A package of the same name that fails to import stands for "not installed".
    shadow = tmp_path / "experience_sync_mcp"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = run_demo(env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The MCP plugin is not installed" in done.stdout
    assert "pip install ./plugins/mcp" in done.stdout
    assert "edge-mcp checked in over HTTP with its full state" in done.stdout


def test_demo_unknown_strategy_is_refused() -> None:
    done = run_demo("--strategy", "coin_toss")
    assert done.returncode == 2
    assert "coin_toss" in done.stderr and "latest_wins" in done.stderr


def test_demo_keep_leaves_the_hub_running() -> None:
    with subprocess.Popen(
        [SCRIPT, "demo", "--keep", "--strategy", "manual_review"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            url = token = reviewer = None
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("hub url: "):
                    url = line.split(": ", 1)[1].strip()
                if line.startswith("read token: "):
                    token = line.split(": ", 1)[1].strip()
                if line.startswith("review token: "):
                    reviewer = line.split(": ", 1)[1].strip()
                    break
            assert url and token and reviewer, "the demo did not print the hub URL and its tokens"
            headers = {"Authorization": f"Bearer {token}"}
            state = httpx.get(f"{url}/v1/agents/support-agent/state", headers=headers).json()
            assert len(state["memories"]) == 4
            # the queued conflict: the read token may see it, only the review token decide it
            (review,) = httpx.get(f"{url}/v1/agents/support-agent/reviews", headers=headers).json()
            decide = f"{url}/v1/agents/support-agent/reviews/{review['review_id']}"
            assert httpx.post(decide, headers=headers, json={"decision": "accept"}).status_code == 403
            accepted = httpx.post(decide, json={"decision": "accept"},
                                  headers={"Authorization": f"Bearer {reviewer}"})
            assert accepted.status_code == 200, accepted.text
            # a read token cannot write
            denied = httpx.post(
                f"{url}/v1/agents/support-agent/events",
                headers=headers,
                json={"instance_id": "demo-reader", "events": []},
            )
            assert denied.status_code == 403
            proc.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)
            proc.stdout.read()  # drain until the process exits
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_demo_binds_the_host_and_port_it_is_given() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
    done = run_demo("--host", "127.0.0.2", "--port", str(port))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"hub on http://127.0.0.2:{port}" in done.stdout.replace("\n", "")
