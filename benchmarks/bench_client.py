"""Instance-side benchmark: the cost of recording, outbox throughput, streaming latency.

Run: ``python benchmarks/bench_client.py`` (``--quick`` for a short run).

1. ``record`` cost on the caller's thread (p50/p99, µs) with the durable
   outbox in group-commit mode, measured in the same run as an OpenTelemetry
   span (``tracer.start_as_current_span`` with a ``BatchSpanProcessor`` whose
   exporter drops everything). Target: record <= half a span.
2. Sustained durable events/s: events recorded back to back until the last
   one is committed to the outbox (fsync'd). Target: >= 20,000/s.
3. Streaming end-to-end latency at 1,000 events/s against a real hub on
   loopback (in its own process, so it does not share this one's GIL): from
   ``record`` returning to the hub's store committing the event (the hub
   process wraps its store's ``commit`` and reports CLOCK_MONOTONIC times).
   Target: p99 <= interval_ms + 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "1")

from bench_ingest import text

from experience_sync import ExperienceSyncConfig, ExperienceSyncManager
from experience_sync.interfaces import MockTransport, SyncRequest
from experience_sync.models import MergeResult


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ack(request: SyncRequest) -> MergeResult:
    return MergeResult(accepted_event_ids=[e.event_id for e in request.payload.events])


def make_tracer() -> tuple[Any, Any] | None:
    """An OpenTelemetry tracer with a BatchSpanProcessor whose exporter drops spans."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        return None

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider, provider.get_tracer("bench")


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": pct(samples, 50), "p99": pct(samples, 99), "mean": statistics.fmean(samples)}


def bench_record(n: int, data_dir: Path, protocol: str, chunk: int = 500) -> dict[str, Any]:
    """Record cost and span cost, measured in alternating blocks so both see the same load."""
    cfg = ExperienceSyncConfig.model_validate(
        {"lumped": {"batch_interval": "1h"}, "streaming": {"batch_size": 100, "interval_ms": 50}}
    )
    m = ExperienceSyncManager(cfg, data_dir=data_dir)
    m.initialize_sync("bench", protocol, agent_id="agent", transport=MockTransport(ack))
    otel = make_tracer()
    clock = time.perf_counter_ns
    rec: list[float] = []
    spans: list[float] = []
    for i in range(2000):  # warm-up
        m.record_memory("bench", f"warm-up memory {i}", importance=0.9)
    m.flush(timeout=60)
    while len(rec) < n:
        for _ in range(chunk):
            t0 = clock()
            m.record_memory("bench", "the user asked about an invoice", tags=("billing",),
                            importance=0.9)
            rec.append((clock() - t0) / 1000)
        if otel is not None:
            tracer = otel[1]
            for j in range(chunk):
                t0 = clock()
                with tracer.start_as_current_span("handle-request") as span:
                    span.set_attribute("invoice", j)
                spans.append((clock() - t0) / 1000)
    m.flush(timeout=120)
    m.shutdown(30)
    if otel is not None:
        otel[0].shutdown()
    return {"record": summary(rec), "span": summary(spans) if spans else None}


def bench_throughput(n: int, data_dir: Path) -> float:
    cfg = ExperienceSyncConfig.model_validate({"lumped": {"batch_interval": "1h"}})
    m = ExperienceSyncManager(cfg, data_dir=data_dir)
    m.initialize_sync("tput", "lumped", agent_id="agent", transport=MockTransport(ack))
    outbox = m._get("tput").outbox  # the durable point is the outbox commit
    t0 = time.perf_counter()
    last = 0
    for i in range(n):
        last = m.record_memory("tput", f"event {i}", importance=0.2).sequence
    outbox.wait_durable(last, timeout=300)
    elapsed = time.perf_counter() - t0
    m.shutdown(0.1)
    return n / elapsed


HUB_PROCESS = r"""
import json, os, sys, time
os.environ.setdefault("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "1")
from experience_sync.hub.web.server import run_in_thread, tune_gc

tune_gc()  # what `experience-sync serve` sets for its process
store_url = sys.argv[1] if len(sys.argv) > 1 else None
agent = sys.argv[2] if len(sys.argv) > 2 else "agent"
with run_in_thread(store_url) as server:
    server.hub.warm()  # as `serve` does, before any instance sends
    store = server.hub.store
    committed = {}
    original = store.commit

    def commit(agent_id, changes):
        original(agent_id, changes)
        now = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on Linux
        for entry in changes.log:
            committed[entry.entry_id] = now

    store.commit = commit
    token = server.create_token(agent, "lat")
    print(json.dumps({"url": server.url, "ws_url": server.ws_url, "token": token}), flush=True)
    sys.stdin.readline()
    print(json.dumps(committed), flush=True)
"""


def probe_text(rng: random.Random, i: int) -> str:
    """A distinct memory of about 110 bytes, Zipf-distributed words as in natural
    text (bench_ingest's generator). Earlier runs used ``case {i}: w123 ...``,
    which the guards read as numbers and codes: every memory then differed from
    every other only in its numbers, so each new one was a contradiction of
    all the stored ones, which no real stream looks like."""
    return text(rng, 110)


def bench_latency(transport: str, interval_ms: int, batch_size: int, seconds: float,
                  rate: int, data_dir: Path, hub_store: Path | None = None,
                  agent: str = "agent") -> dict[str, float]:
    """Record at ``rate``/s; latency = hub commit time - record time (hub in its own process).

    ``hub_store``: a hub store file to copy and serve (its agent ``agent``
    loaded before the run), instead of an empty one.
    """
    cmd = [sys.executable, "-c", HUB_PROCESS]
    if hub_store is not None:
        copy = data_dir.with_name(data_dir.name + "-hub.db")
        shutil.copyfile(hub_store, copy)
        cmd += [f"sqlite:///{copy}", agent]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        hub = json.loads(proc.stdout.readline())
        cfg = ExperienceSyncConfig.model_validate({
            "transport": {"type": transport,
                          "https": {"endpoint": hub["url"], "auth_token": hub["token"]},
                          "websocket": {"url": hub["ws_url"]}},
            "streaming": {"interval_ms": interval_ms, "batch_size": batch_size},
        })
        m = ExperienceSyncManager(cfg, data_dir=data_dir)
        m.initialize_sync("lat", "streaming", agent_id=agent)
        if hub_store is not None:
            # The instance's replica first pulls the whole stored agent (one
            # large state read, seconds of this process's CPU at 100k
            # memories): the rows measure streaming after it.
            m.refresh("lat", timeout=300)
        recorded: dict[str, float] = {}
        rng = random.Random(7)
        total = int(seconds * rate)
        start = time.monotonic()
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ev = m.record_memory("lat", probe_text(rng, i), importance=0.9)
            recorded[ev.event_id] = time.monotonic()
        achieved = total / (time.monotonic() - start)
        m.flush(timeout=60)
        m.shutdown(10)
        proc.stdin.write("dump\n")
        proc.stdin.flush()
        committed = json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(30)
    lat = [(committed[k] - t) * 1000 for k, t in recorded.items() if k in committed]
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat), "rate": achieved,
            "delivered": len(lat), "recorded": len(recorded)}


def before_latency(base: Path, n: int) -> None:
    """The instance-side figures: record cost and sustained durable events/s."""
    print("\n== record cost on the caller's thread (µs), interleaved with OTel spans ==")
    for label, protocol in (("streaming, worker shipping", "streaming"),
                            ("lumped, worker idle", "lumped")):
        r = bench_record(n, base / protocol, protocol)
        rec, span = r["record"], r["span"]
        print(f"record ({label}){'':{30 - len(label)}s} p50 {rec['p50']:6.2f}  "
              f"p99 {rec['p99']:7.2f}  mean {rec['mean']:6.2f}")
        if span is None:
            print("opentelemetry-sdk not installed: span cost not measured")
            continue
        print(f"{'  OTel span, same run':39s} p50 {span['p50']:6.2f}  p99 {span['p99']:7.2f}"
              f"  mean {span['mean']:6.2f}   record/span p50 = {rec['p50'] / span['p50']:.2f}")
    print("\n== sustained durable events/s (group commit, synchronous=FULL) ==")
    rate = bench_throughput(n, base / "tput")
    print(f"{rate:,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, shorter runs")
    parser.add_argument("--latency-only", action="store_true",
                        help="only the streaming latency rows")
    parser.add_argument("--hub-store", type=Path, default=None,
                        help="serve a copy of this hub store (its agent 'bench', e.g. bench_load.py's "
                             "100k-memory store) for the latency rows, instead of an empty one")
    parser.add_argument("--intervals", default="100:10000,500:10,500:10000",
                        help="interval_ms:batch_size pairs of the latency rows")
    args = parser.parse_args()
    agent = "bench" if args.hub_store else "agent"
    pairs = [tuple(int(x) for x in p.split(":")) for p in args.intervals.split(",")]
    n = 20_000 if args.quick else 100_000
    secs = 3.0 if args.quick else 10.0
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cpus, {platform.system()}")
    with tempfile.TemporaryDirectory(prefix="xs-bench-") as tmp:
        base = Path(tmp)
        if not args.latency_only:
            before_latency(base, n)
        where = f"hub serving a copy of {args.hub_store}" if args.hub_store else "empty hub store"
        print(f"\n== streaming end-to-end latency at 1,000 events/s (record -> hub commit, ms; {where}) ==")
        for transport in ("https", "websocket"):
            for interval_ms, batch_size in pairs:
                r = bench_latency(transport, interval_ms, batch_size, secs, 1000,
                                  base / f"lat-{transport}-{interval_ms}-{batch_size}",
                                  args.hub_store, agent)
                print(f"{transport:9s} interval_ms={interval_ms:<4d} batch_size={batch_size:<6d}"
                      f" p50 {r['p50']:7.1f}  p99 {r['p99']:7.1f}  max {r['max']:7.1f}"
                      f"  (target p99 <= {interval_ms + 50}; {r['rate']:.0f} ev/s, "
                      f"{r['delivered']}/{r['recorded']} delivered)", flush=True)
    sys.stdout.flush()
    # The worker threads are gone; nothing else to wait for.
    assert threading.active_count() >= 1


if __name__ == "__main__":
    main()
