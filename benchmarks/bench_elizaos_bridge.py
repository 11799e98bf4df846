"""ElizaOS bridge throughput: forwarded events/s into the outbox, and to the hub.

A real hub and a real bridge (uvicorn on loopback, threads of this process),
an ``ExperienceSyncManager`` with its SQLite outbox in between, as
``experience-sync elizaos-bridge`` runs them. ``--clients`` separate
processes post ``--batch``-event requests as the TypeScript plugin does
(60% ACTION_COMPLETED over 10 actions, 20% MEMORY_CREATED with distinct texts,
20% MESSAGE_RECEIVED). Reported: events/s acknowledged by the bridge (in the
outbox), p50/p99 request latency, and events/s until everything is merged
at the hub (flush). Everything shares the machine's cores: read ratios, not
absolute ceilings.

    python benchmarks/bench_elizaos_bridge.py                 # 20,000 events
    python benchmarks/bench_elizaos_bridge.py --events 5000 --batch 50 --clients 2 --mix actions
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from experience_sync_elizaos import BridgeServer, create_bridge_app, start_manager

from experience_sync.hub.web.server import run_in_thread

SECRET = "bench"


MIXES = {"mixed": (6, 8), "actions": (10, 10), "memories": (0, 10)}


def make_events(n: int, seed: int, mix: str = "mixed") -> list[dict[str, Any]]:
    actions, memories = MIXES[mix]
    out = []
    for i in range(n):
        base = {"id": f"{seed}-{i}-{uuid.uuid4()}", "timestamp": 1_764_000_000_000,
                "roomId": f"room-{i % 50}", "source": "discord"}
        r = i % 10
        if r < actions:
            out.append({**base, "type": "ACTION_COMPLETED", "action": f"ACTION_{i % 10}",
                        "success": i % 7 != 0})
        elif r < memories:
            out.append({**base, "type": "MEMORY_CREATED", "table": "memories",
                        "text": f"client {seed} observation {i}: customer {i * 7919 % 10007} "
                                f"prefers delivery slot {i % 13} in zone {i % 101}"})
        else:
            out.append({**base, "type": "MESSAGE_RECEIVED", "textLength": 40 + i % 200})
    return out


def client(url: str, n: int, batch: int, seed: int, mix: str, queue: Any, go: Any) -> None:
    events = make_events(n, seed, mix)
    latencies = []
    with httpx.Client(headers={"Authorization": f"Bearer {SECRET}"}, timeout=60) as http:
        http.get(f"{url}/healthz")  # connect before the clock starts
        queue.put("ready")
        go.wait()
        for start in range(0, n, batch):
            body = {"schema": "experience-sync-elizaos/1", "agent": {"name": "bench"},
                    "events": events[start:start + batch]}
            t0 = time.perf_counter()
            r = http.post(f"{url}/v1/elizaos/events", json=body)
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
    queue.put(latencies)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--mix", choices=sorted(MIXES), default="mixed",
                    help="mixed (60%% actions, 20%% memories, 20%% messages), actions or memories")
    args = ap.parse_args()
    per_client = args.events // args.clients
    total = per_client * args.clients
    with tempfile.TemporaryDirectory() as tmp, run_in_thread(f"sqlite:///{Path(tmp) / 'hub.db'}") as hub:
        manager = start_manager(hub=hub.url, agent="bench", token=hub.create_token("bench", "eliza"),
                                instance_id="eliza", data_dir=Path(tmp) / "data")
        app = create_bridge_app(manager, "eliza", SECRET, seen_path=Path(tmp) / "seen.sqlite3")
        with BridgeServer(app) as bridge:
            ctx = mp.get_context("spawn")
            queue, go = ctx.Queue(), ctx.Event()
            procs = [ctx.Process(target=client,
                                 args=(bridge.url, per_client, args.batch, k, args.mix, queue, go))
                     for k in range(args.clients)]
            for p in procs:
                p.start()
            for _ in procs:
                queue.get()  # spawned, events built, connected
            t0 = time.perf_counter()
            go.set()
            latencies = [x for _ in procs for x in queue.get()]
            for p in procs:
                p.join()
            accepted = time.perf_counter() - t0
            assert manager.flush(timeout=600), "the outbox did not drain"
            merged = time.perf_counter() - t0
        manager.shutdown(10)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"events {total} ({args.mix}), batch {args.batch}, clients {args.clients}")
    print(f"bridge acknowledged (in the outbox): {total / accepted:,.0f} events/s "
          f"({total / args.batch / accepted:,.0f} req/s); request p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"merged at the hub (flush done):      {total / merged:,.0f} events/s "
          f"({merged:.1f} s in all)")


if __name__ == "__main__":
    main()
