"""Hub ingestion throughput: merged events/s over HTTP and WebSocket, against raw SQLite.

What it does, in one run on one machine:

1. pre-loads ``--preload`` memories (default 100,000) into a fresh SQLite hub
   store through the merge engine (so dedup indexes hold them);
2. serves that store with a real hub (uvicorn on loopback, in this process,
   as ``experience-sync serve`` would) and drives it from ``--clients``
   separate client processes (one httpx client cannot load a server: it
   saturates its own core first), each sending ``--batch``-event
   ``POST /events`` requests one after another; then the same over the
   WebSocket endpoint with ``--window`` frames in flight per connection;
3. measures raw SQLite inserts of the same number of ~500-byte rows with
   random UUID4 keys, ``--batch`` rows per transaction, WAL, synchronous=NORMAL,
   into a table that already holds ``--preload`` rows;
4. prints merged events/s, p50/p99 ack latency per request and the ratio of
   each to the raw insert rate (target: >= 0.5).

``--quick`` shrinks everything for a smoke run. ``--store-url URL`` runs the
hub legs on another store (e.g. an empty PostgreSQL database with the
``experience-sync-postgres`` plugin installed) instead of a SQLite file; the
in-process engine leg is then skipped. Figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import multiprocessing as mp
import os
import random
import sqlite3
import string
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "1")

_VOCAB = random.Random(0)
WORDS = ["".join(_VOCAB.choices(string.ascii_lowercase, k=_VOCAB.randint(3, 10))) for _ in range(50_000)]
# Natural text follows Zipf's law: a few words are everywhere, most are rare.
# Uniformly drawn words would make every word equally common, which no
# similarity index sees in practice.
_CUM_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(WORDS))))


def text(rng: random.Random, approx_bytes: int = 300) -> str:
    """Distinct prose-like text of about ``approx_bytes`` (never a duplicate of another)."""
    out: list[str] = []
    size = 0
    while size < approx_bytes:
        w = rng.choices(WORDS, cum_weights=_CUM_WEIGHTS)[0]
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def memory_event(rng: random.Random, instance: str) -> dict[str, Any]:
    """A ~500-byte memory event as wire JSON."""
    return {
        "event_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "source_instance": instance,
        "event_type": "memory",
        "priority": 0.7,
        "data": {"content": text(rng), "tags": ["bench"], "importance": 0.5},
    }


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# ---------------------------------------------------------------------- clients (own processes)


def http_client(url: str, agent: str, instance: str, token: str, requests: int, batch: int,
                seed: int, out: Any, start: Any) -> None:
    import httpx

    rng = random.Random(seed)
    bodies = [
        json.dumps({"instance_id": instance, "events": [memory_event(rng, instance) for _ in range(batch)]}).encode()
        for _ in range(requests)
    ]
    latencies: list[float] = []
    merged = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        out.put(("ready", instance))
        start.wait()
        for body in bodies:
            t0 = time.perf_counter()
            r = client.post(f"/v1/agents/{agent}/events", content=body)
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            res = r.json()
            merged += res["memories_added"] + res["memories_merged"]
    out.put(("done", latencies, merged))


def ws_client(url: str, agent: str, instance: str, token: str, requests: int, batch: int,
              window: int, seed: int, out: Any, start: Any) -> None:
    from websockets.sync.client import connect

    rng = random.Random(seed)
    frames = [
        json.dumps({"id": i, "kind": "events",
                    "payload": {"instance_id": instance, "events": [memory_event(rng, instance) for _ in range(batch)]}})
        for i in range(requests)
    ]
    sent: dict[int, float] = {}
    latencies: list[float] = []
    merged = 0
    with connect(f"{url}/v1/agents/{agent}/ws", additional_headers={"Authorization": f"Bearer {token}"},
                 compression=None, max_size=None) as ws:
        out.put(("ready", instance))
        start.wait()
        nxt = 0
        while len(latencies) < requests:
            while nxt < requests and len(sent) < window:
                sent[nxt] = time.perf_counter()
                ws.send(frames[nxt])
                nxt += 1
            ack = json.loads(ws.recv())
            latencies.append(time.perf_counter() - sent.pop(ack["id"]))
            if not ack["ok"]:
                raise RuntimeError(ack)
            merged += ack["result"]["memories_added"] + ack["result"]["memories_merged"]
    out.put(("done", latencies, merged))


def drive(kind: str, server: Any, clients: int, requests: int, batch: int, window: int,
          seed: int) -> dict[str, float]:
    """Run ``clients`` client processes against the hub; return throughput and latency."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    # Every client starts sending at once, when all are ready: a fast hub would
    # otherwise serve the first clients before the last one has started.
    start = ctx.Event()
    procs = []
    for c in range(clients):
        instance = f"{kind}-{seed}-{c}"
        token = server.create_token("bench", instance)
        if kind == "http":
            args: tuple[Any, ...] = (server.url, "bench", instance, token, requests, batch, seed * 100 + c, out,
                                     start)
            target = http_client
        else:
            args = (server.ws_url, "bench", instance, token, requests, batch, window, seed * 100 + c, out, start)
            target = ws_client
        procs.append(ctx.Process(target=target, args=args))
    for p in procs:
        p.start()
    for _ in procs:  # bodies are built before timing starts
        assert out.get(timeout=600)[0] == "ready"
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    start.set()
    results = [out.get(timeout=3600) for _ in procs]
    elapsed = time.perf_counter() - t0
    hub_cpu = time.process_time() - cpu0  # the hub runs in this process
    for p in procs:
        p.join()
    latencies = [x for r in results for x in r[1]]
    merged = sum(r[2] for r in results)
    events = clients * requests * batch
    return {
        "events": events,
        "merged": merged,
        "seconds": elapsed,
        "events_per_s": events / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "hub_cpu_us_per_event": hub_cpu / events * 1e6,
        "hub_cpu_share": hub_cpu / elapsed,
    }


# ---------------------------------------------------------------------- raw SQLite and preload


def raw_sqlite(path: Path, preload: int, rows: int, batch: int) -> float:
    """Rows/s inserting ~500-byte rows with random UUID4 keys, ``batch`` per transaction."""
    rng = random.Random(7)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL)")

    def payload() -> list[tuple[str, str]]:
        return [(uuid.uuid4().hex, json.dumps(memory_event(rng, "raw"))) for _ in range(batch)]

    for _ in range(preload // batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO t VALUES (?, ?)", payload())
        db.execute("COMMIT")
    batches = [payload() for _ in range(rows // batch)]
    t0 = time.perf_counter()
    for b in batches:
        db.execute("BEGIN")
        db.executemany("INSERT INTO t VALUES (?, ?)", b)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    db.close()
    return (len(batches) * batch) / elapsed


def preload_store(store_url: str, n: int, strategy: Any) -> float:
    """Merge ``n`` distinct memories through the engine; returns seconds taken."""
    from experience_sync.hub.engine import MergeEngine, open_store
    from experience_sync.models import EventsRequest

    engine = MergeEngine(open_store(store_url), strategy)
    rng = random.Random(1)
    t0 = time.perf_counter()
    step = 1000
    for start in range(0, n, step):
        body = {"instance_id": "preload", "events": [memory_event(rng, "preload") for _ in range(min(step, n - start))]}
        engine.ingest_events("bench", EventsRequest.model_validate(body))
    seconds = time.perf_counter() - t0
    engine.close()
    return seconds


def engine_alone(store_url: str, strategy: Any, rounds: int, batch: int) -> dict[str, float]:
    """CPU rate of the merge engine in-process: rounds of ten ``batch``-event requests.

    Steadier than wall-clock figures on a shared machine: process CPU time,
    best and median of ``rounds`` (each round merges new memories into the
    agent the preload filled; the store is the same SQLite file the hub uses).
    """
    from experience_sync.hub.engine import MergeEngine, open_store
    from experience_sync.models import EventsRequest

    engine = MergeEngine(open_store(store_url), strategy)
    engine.instances("bench")  # load the agent before timing
    rng = random.Random(99)
    rates = []
    for _ in range(rounds + 1):
        bodies = [
            json.dumps({"instance_id": "engine", "events": [memory_event(rng, "engine") for _ in range(batch)]})
            for _ in range(10)
        ]
        t0 = time.process_time()
        for body in bodies:
            engine.ingest_events("bench", EventsRequest.model_validate_json(body))
        rates.append(10 * batch / max(time.process_time() - t0, 1e-9))
    engine.close()
    rates = sorted(rates[1:])  # the first round warms caches
    return {"best": rates[-1], "median": rates[len(rates) // 2]}


class NullEngine:
    """Answers every unit without merging or storing: measures the HTTP/WebSocket layer alone."""

    def ingest_events(self, agent_id: str, request: Any, meta: Any = None) -> Any:
        from experience_sync.models import MergeResult

        ids = [e.event_id for e in request.events]
        return MergeResult(agent_id=agent_id, events_received=len(ids), memories_added=len(ids),
                           accepted_event_ids=ids)

    def instances(self, agent_id: str) -> list[Any]:
        return []

    def close(self) -> None:
        pass


@contextlib.contextmanager
def null_hub(workdir: Path) -> Iterator[Any]:
    """A real server (auth, parsing, validation) over :class:`NullEngine`."""
    from experience_sync.hub.engine import open_store
    from experience_sync.hub.web.app import Hub
    from experience_sync.hub.web.auth import Authenticator
    from experience_sync.hub.web.server import HubServer
    from experience_sync.plugins import get_plugin_manager

    store = open_store(f"sqlite:///{workdir / 'tokens.db'}")
    hub = Hub(NullEngine(), store, Authenticator(store), get_plugin_manager())  # type: ignore[arg-type]
    server = HubServer(hub).start()
    try:
        yield server
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preload", type=int, default=100_000, help="memories stored before measuring")
    parser.add_argument("--requests", type=int, default=50, help="requests (or frames) per client")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--window", type=int, default=16, help="WebSocket frames in flight per client")
    parser.add_argument("--similarity", default=None, help="similarity_method (default: the configured default)")
    parser.add_argument("--no-dedup", action="store_true", help="memory_deduplication = false")
    parser.add_argument("--skip", choices=["http", "ws"], action="append", default=[])
    parser.add_argument("--null-engine", action="store_true",
                        help="also measure the HTTP/WebSocket layer alone, over an engine that stores nothing")
    parser.add_argument("--engine-rounds", type=int, default=6,
                        help="rounds of the in-process engine measurement (0: skip it)")
    parser.add_argument("--gc-gen0", type=int, default=None,
                        help="young-collection threshold, as 'experience-sync serve --gc-gen0' (default: serve's)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--dir", help="where to put the databases (default: a temp dir)")
    parser.add_argument("--store-url", help="hub store for the preload and the hub legs "
                        "(default: a SQLite file in --dir); must not hold the agent 'bench' yet")
    args = parser.parse_args(argv)
    if args.store_url and not args.store_url.startswith("sqlite:"):
        # Another store comes from its installed plugin (loaded from entry points).
        if os.environ.get("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD") == "1":
            del os.environ["EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD"]
        args.engine_rounds = 0
    if args.quick:
        args.preload, args.requests, args.clients = min(args.preload, 5000), min(args.requests, 10), min(args.clients, 2)

    from experience_sync.config import MergeStrategyConfig
    from experience_sync.hub.web.server import run_in_thread, tune_gc

    # This process serves the hub: it collects garbage as 'experience-sync serve' does.
    tune_gc(args.gc_gen0)

    overrides: dict[str, Any] = {}
    if args.similarity:
        overrides["similarity_method"] = args.similarity
    if args.no_dedup:
        overrides["memory_deduplication"] = False
    strategy = MergeStrategyConfig(**overrides)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="xs-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    events_total = args.clients * args.requests * args.batch

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; preload {args.preload}, "
          f"{args.clients} clients x {args.requests} requests x {args.batch} events; "
          f"strategy {strategy.model_dump(include={'similarity_method', 'memory_deduplication'})}; "
          f"gc thresholds {gc.get_threshold()}")
    raw = raw_sqlite(workdir / "raw.db", args.preload, events_total, args.batch)
    print(f"raw sqlite: {raw:,.0f} rows/s ({args.batch} rows/transaction, uuid4 keys, ~500 B rows)")

    store_url = args.store_url or f"sqlite:///{workdir / 'hub.db'}"
    seconds = preload_store(store_url, args.preload, strategy)
    print(f"preload: {args.preload} memories merged in {seconds:.1f}s ({args.preload / max(seconds, 1e-9):,.0f}/s)")

    results: dict[str, dict[str, float]] = {}
    if args.engine_rounds > 0:
        # On a copy: the hub legs below start from the preloaded store alone.
        copy_url = f"sqlite:///{workdir / 'engine.db'}"
        with sqlite3.connect(workdir / "hub.db") as src, sqlite3.connect(workdir / "engine.db") as dst:
            src.backup(dst)
        r = engine_alone(copy_url, strategy, args.engine_rounds, args.batch)
        results["engine"] = r
        print(f"engine alone (in-process CPU, {args.engine_rounds} rounds of 10 requests): best "
              f"{r['best']:,.0f} events/s, median {r['median']:,.0f} events/s")
    with run_in_thread(store_url, strategy=strategy) as server:
        t0 = time.perf_counter()
        server.engine.instances("bench")  # load the agent's state before timing requests
        print(f"hub start: agent with {args.preload} memories loaded in {time.perf_counter() - t0:.1f}s")
        for seed, kind in enumerate(("http", "ws"), start=1):
            if kind in args.skip:
                continue
            r = drive(kind, server, args.clients, args.requests, args.batch, args.window, seed)
            results[kind] = r
            print(f"{kind:>4}: {r['events_per_s']:,.0f} merged events/s ({r['events']} events, "
                  f"{r['merged']} merged as memories, {r['seconds']:.1f}s); ack latency "
                  f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; ratio to raw sqlite "
                  f"{r['events_per_s'] / raw:.2f}x; hub CPU {r['hub_cpu_us_per_event']:.0f} µs an event "
                  f"({r['hub_cpu_share']:.0%} of a core)")
    if args.null_engine:
        with null_hub(workdir) as server:
            for seed, kind in enumerate(("http", "ws"), start=11):
                if kind in args.skip:
                    continue
                r = drive(kind, server, args.clients, args.requests, args.batch, args.window, seed)
                results[f"{kind}_null_engine"] = r
                print(f"{kind:>4} layer alone (null engine): {r['events_per_s']:,.0f} events/s; ack latency "
                      f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; ratio to raw sqlite "
                      f"{r['events_per_s'] / raw:.2f}x; hub CPU {r['hub_cpu_us_per_event']:.0f} µs an event "
                      f"({r['hub_cpu_share']:.0%} of a core)")
    print(json.dumps({"raw_rows_per_s": raw, "preload_seconds": seconds, **results}))


if __name__ == "__main__":
    main()
