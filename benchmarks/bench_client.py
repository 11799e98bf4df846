"""Instance-side benchmark: the cost of recording, outbox throughput, streaming latency.

Run: ``python benchmarks/bench_client.py`` (``--quick`` for a short run).

1. ``record`` cost on the caller's thread (p50/p99, µs) with the durable
   outbox in group-commit mode, measured in the same run as an OpenTelemetry
   span (``tracer.start_as_current_span`` with a ``BatchSpanProcessor`` whose
   exporter drops everything). Target: record <= half a span.
2. Sustained durable events/s: events recorded back to back until the last
   one is committed to the outbox (fsync'd). Target: >= 20,000/s.
3. Streaming end-to-end latency at 1,000 events/s against a real hub on
   loopback: record -> the hub's acknowledgement, which it sends only after
   its commit. Target: p99 <= interval_ms + 50 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "1")

from experience_sync import ExperienceSyncConfig, ExperienceSyncManager  # noqa: E402
from experience_sync.interfaces import MockTransport, SyncRequest, Transport  # noqa: E402
from experience_sync.models import AgentState, MergeResult  # noqa: E402


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ack(request: SyncRequest) -> MergeResult:
    return MergeResult(accepted_event_ids=[e.event_id for e in request.payload.events])


def bench_record(n: int, data_dir: Path, protocol: str) -> dict[str, float]:
    cfg = ExperienceSyncConfig.model_validate(
        {"lumped": {"batch_interval": "1h"}, "streaming": {"batch_size": 100, "interval_ms": 50}}
    )
    m = ExperienceSyncManager(cfg, data_dir=data_dir)
    m.initialize_sync("bench", protocol, agent_id="agent", transport=MockTransport(ack))
    clock = time.perf_counter_ns
    samples = []
    for i in range(2000):  # warm-up
        m.record_memory("bench", f"warm-up memory {i}", importance=0.9)
    m.flush(timeout=60)
    for i in range(n):
        t0 = clock()
        m.record_memory("bench", f"the user asked about invoice {i}", tags=("billing",),
                        importance=0.9)
        samples.append((clock() - t0) / 1000)
    m.flush(timeout=120)
    m.shutdown(30)
    return {"p50": pct(samples, 50), "p99": pct(samples, 99), "mean": statistics.fmean(samples)}


def bench_otel(n: int) -> dict[str, float] | None:
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
    tracer = provider.get_tracer("bench")
    clock = time.perf_counter_ns
    samples = []
    for _ in range(2000):
        with tracer.start_as_current_span("warm-up"):
            pass
    for i in range(n):
        t0 = clock()
        with tracer.start_as_current_span("handle-request") as span:
            span.set_attribute("invoice", i)
        samples.append((clock() - t0) / 1000)
    provider.shutdown()
    return {"p50": pct(samples, 50), "p99": pct(samples, 99), "mean": statistics.fmean(samples)}


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


class Timed(Transport):
    """Wraps a transport and notes when each event's acknowledgement arrived."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.name = inner.name
        self.timeout = getattr(inner, "timeout", 30.0)
        self.acked: dict[str, float] = {}

    @property
    def on_retry(self) -> Any:
        return getattr(self.inner, "on_retry", None)

    @on_retry.setter
    def on_retry(self, value: Any) -> None:
        self.inner.on_retry = value  # type: ignore[attr-defined]

    def send(self, request: SyncRequest, *, timeout: float) -> MergeResult:
        result = self.inner.send(request, timeout=timeout)
        now = time.perf_counter()
        for e in request.payload.events:
            self.acked[e.event_id] = now
        return result

    def send_many(self, requests: Sequence[SyncRequest], *, timeout: float) -> list[Any]:
        results = self.inner.send_many(requests, timeout=timeout)
        now = time.perf_counter()
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, MergeResult):
                for e in request.payload.events:
                    self.acked[e.event_id] = now
        return results

    def fetch_state(self, since: int | None = None, *, timeout: float = 30.0) -> AgentState:
        return self.inner.fetch_state(since, timeout=timeout)

    def close(self) -> None:
        self.inner.close()


def bench_latency(transport: str, interval_ms: int, batch_size: int, seconds: float,
                  rate: int, data_dir: Path) -> dict[str, float]:
    from experience_sync.hub.server import run_in_thread
    from experience_sync.plugins import get_plugin_manager

    with run_in_thread() as hub:
        token = hub.create_token("agent", "lat")
        cfg = ExperienceSyncConfig.model_validate({
            "transport": {"type": transport, "https": {"endpoint": hub.url, "auth_token": token},
                          "websocket": {"url": hub.ws_url}},
            "streaming": {"interval_ms": interval_ms, "batch_size": batch_size},
        })
        inner = get_plugin_manager().registry.create("transports", transport, cfg, "agent")
        timed = Timed(inner)
        m = ExperienceSyncManager(cfg, data_dir=data_dir)
        m.initialize_sync("lat", "streaming", agent_id="agent", transport=timed)
        recorded: dict[str, float] = {}
        total = int(seconds * rate)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ev = m.record_memory("lat", f"latency probe {i} " + "x" * (i % 7), importance=0.9)
            recorded[ev.event_id] = time.perf_counter()
        achieved = total / (time.perf_counter() - start)
        m.flush(timeout=60)
        m.shutdown(10)
    lat = [(timed.acked[k] - t) * 1000 for k, t in recorded.items() if k in timed.acked]
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat), "rate": achieved,
            "delivered": len(lat), "recorded": len(recorded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, shorter runs")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    secs = 3.0 if args.quick else 10.0
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cpus, {platform.system()}")
    with tempfile.TemporaryDirectory(prefix="xs-bench-") as tmp:
        base = Path(tmp)
        print("\n== record cost on the caller's thread (µs) ==")
        otel = bench_otel(n)
        for label, protocol in (("record (streaming, worker shipping)", "streaming"),
                                ("record (lumped, worker idle)", "lumped")):
            r = bench_record(n, base / protocol, protocol)
            print(f"{label:42s} p50 {r['p50']:6.2f}  p99 {r['p99']:7.2f}  mean {r['mean']:6.2f}")
        if otel is None:
            print("opentelemetry-sdk not installed: span cost not measured")
        else:
            print(f"{'OpenTelemetry span (BatchSpanProcessor)':42s} p50 {otel['p50']:6.2f}  "
                  f"p99 {otel['p99']:7.2f}  mean {otel['mean']:6.2f}")
        print("\n== sustained durable events/s (group commit, synchronous=FULL) ==")
        rate = bench_throughput(n, base / "tput")
        print(f"{rate:,.0f} events/s")
        print("\n== streaming end-to-end latency at 1,000 events/s (record -> hub ack, ms) ==")
        for transport in ("https", "websocket"):
            for interval_ms, batch_size in ((100, 10_000), (500, 10)):
                r = bench_latency(transport, interval_ms, batch_size, secs, 1000,
                                  base / f"lat-{transport}-{interval_ms}")
                print(f"{transport:9s} interval_ms={interval_ms:<4d} batch_size={batch_size:<6d}"
                      f" p50 {r['p50']:7.1f}  p99 {r['p99']:7.1f}  max {r['max']:7.1f}"
                      f"  (target p99 <= {interval_ms + 50}; {r['rate']:.0f} ev/s, "
                      f"{r['delivered']}/{r['recorded']} delivered)")
    sys.stdout.flush()
    # The worker threads are gone; nothing else to wait for.
    assert threading.active_count() >= 1


if __name__ == "__main__":
    main()
