"""The mcp transport next to https and websocket: per-request latency and events/s.

One real hub (uvicorn on loopback, SQLite in a temporary directory, the MCP
plugin mounted) and, for each transport in turn, one instance-side transport
object sending ``--requests`` streaming units of ``--batch`` new memories one
after another from this process, as an instance's worker does (the three
transports take turns, so load from elsewhere hits them alike). Prints p50 and
p99 latency per request (send to MergeResult, i.e. to the hub's commit) and
events/s, so the cost of MCP's JSON-RPC envelope and tool dispatch over plain
HTTP can be read off one run on one machine.

    .venv/bin/python benchmarks/bench_mcp.py [--requests 300] [--batch 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import experience_sync_mcp.plugin

from experience_sync.config import load_config
from experience_sync.hub.web.server import run_in_thread
from experience_sync.interfaces import SyncRequest
from experience_sync.models import EventsRequest, ExperienceEvent, MemoryData
from experience_sync.plugins import get_plugin_manager

AGENT = "bench"


def unit(agent: str, instance: str, batch: int) -> SyncRequest:
    events = [
        ExperienceEvent(
            source_instance=instance,
            event_type="memory",
            data=MemoryData(content=f"memory {uuid.uuid4().hex} about ticket {i}"),
        )
        for i in range(batch)
    ]
    return SyncRequest("events", agent, EventsRequest(instance_id=instance, events=events))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    pm = get_plugin_manager()
    if "mcp" not in pm.registry.names("transports"):
        pm.register(experience_sync_mcp.plugin, name="mcp")
    names = ("https", "websocket", "mcp")
    with run_in_thread() as hub:
        transports: dict[str, Any] = {}
        for name in names:
            # One agent per transport, so each merges into a state of the same size.
            agent, instance = f"{AGENT}-{name}", f"bench-{name}"
            token = hub.create_token(agent, instance)
            cfg = load_config(
                environ={},
                transport={
                    "type": name,
                    "https": {"endpoint": hub.url, "auth_token": token},
                    "websocket": {"url": hub.ws_url, "auth_token": token},
                    "mcp": {"server": f"{hub.url}/mcp", "auth_token": token},
                },
            )
            transports[name] = (pm.registry.create("transports", name, cfg, agent), agent, instance)
        latencies: dict[str, list[float]] = {name: [] for name in names}
        try:
            for _ in range(10):  # warm up: connections, sessions, the agents' runtimes
                for transport, agent, instance in transports.values():
                    transport.send(unit(agent, instance, args.batch), timeout=30)
            # Interleaved, so load from elsewhere on the machine hits every transport alike.
            for _ in range(args.requests):
                for name, (transport, agent, instance) in transports.items():
                    u = unit(agent, instance, args.batch)
                    t0 = time.perf_counter()
                    transport.send(u, timeout=30)
                    latencies[name].append(time.perf_counter() - t0)
        finally:
            for transport, _, _ in transports.values():
                transport.close()
    print(f"{args.requests} requests x {args.batch} events per transport, one at a time, interleaved")
    print(f"{'transport':<10} {'p50 ms':>8} {'p99 ms':>8} {'events/s':>10}")
    for name, xs in latencies.items():
        xs.sort()
        p50 = statistics.median(xs)
        p99 = xs[int(0.99 * (len(xs) - 1))]
        rate = args.batch * len(xs) / sum(xs)
        print(f"{name:<10} {p50 * 1000:>8.2f} {p99 * 1000:>8.2f} {rate:>10.0f}")


if __name__ == "__main__":
    main()
