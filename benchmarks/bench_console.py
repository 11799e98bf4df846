"""The console's pages: p50/p95 of each page at 100k memories and 1,000 instances.

The store is seeded through the merge engine (``MergeEngine.ingest_batch``,
one ``ExperienceBatch`` per instance, in process, no HTTP) with
``memory_deduplication=False`` (dedup does not change what a page reads; it
only makes a 100k build slow) and ``conflict_resolution=manual_review``:
``--memories`` memories spread over ``--instances`` instances, ``--skills``
skills with learning curves of 20 points, ``--knowledge`` knowledge items
(half verified by two instances, so integrated) and ``--reviews`` queued
knowledge conflicts. A real hub then serves that store on loopback
(uvicorn in a thread); one signed-in httpx client (the session cookie, as a
browser) asks each page ``--requests`` times in a row, and the figures are
the server's full answer times, as the client sees them, HTML included.

Run: ``.venv/bin/python benchmarks/bench_console.py`` (``--quick`` for a smoke
run). Figures printed; they belong in docs/benchmarks.md, "Console".
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.service import Hub
from experience_sync.hub.web.server import HubServer
from experience_sync.models import ExperienceBatch, ExperienceEvent, new_id

AGENT = "bench-agent"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
WORDS = ["tea", "coffee", "brewing", "kettle", "grind", "roast", "water", "temperature", "steep",
    "filter", "espresso", "milk", "sugar", "cup", "morning", "user", "prefers", "concise",
    "answers", "weekly", "report", "invoice", "deadline", "client", "meeting", "schedule",
    "travel", "flight", "hotel", "budget", "python", "deploy", "server", "restart", "cache",
    "index", "query", "latency", "error", "retry", "backoff", "timeout", "release", "notes",
    "changelog", "ticket", "customer"]


def _text(rng: int, n: int) -> str:
    # Deterministic, varied text: word choices from a simple LCG.
    out = []
    x = rng * 2654435761 % 2**32
    for _ in range(n):
        x = (1103515245 * x + 12345) % 2**31
        out.append(WORDS[x % len(WORDS)])
    return f"{' '.join(out)} #{rng}"


def seed(hub: Hub, memories: int, instances: int, skills: int, knowledge: int, reviews: int) -> float:
    """Fill the hub's store through its engine; returns the seconds it took."""
    started = time.perf_counter()
    per = max(1, memories // instances)
    n = 0
    for i in range(instances):
        inst = f"instance-{i:04d}"
        events: list[ExperienceEvent] = []
        for _ in range(per if i < instances - 1 else memories - n):
            events.append(ExperienceEvent(
                event_id=new_id(), timestamp=T0 + timedelta(seconds=n), source_instance=inst,
                event_type="memory", data={"content": _text(n, 12)},  # type: ignore[arg-type]
            ))
            n += 1
        if i < skills:
            for step in range(20):
                events.append(ExperienceEvent(
                    event_id=new_id(), timestamp=T0 + timedelta(hours=1, minutes=step), source_instance=inst,
                    event_type="skill",
                    data={"name": f"skill-{i}", "proficiency": min(1.0, 0.05 * step),  # type: ignore[arg-type]
                          "usage": {"invocations": 3, "successes": 2}},
                ))
        for k in range(i, knowledge, instances):
            events.append(ExperienceEvent(
                event_id=new_id(), timestamp=T0 + timedelta(hours=2), source_instance=inst,
                event_type="knowledge",
                data={"content": f"fact {k}: {_text(k, 8)}", "subject": f"subject {k}", "confidence": 0.7},  # type: ignore[arg-type]
            ))
        batch = ExperienceBatch(
            batch_id=new_id(), instance_id=inst, timestamp_start=T0, timestamp_end=T0, events=events,
        )
        hub.engine.ingest_batch(AGENT, batch)
    # A second instance verifies half the knowledge (integrated), and
    # contradicts ``reviews`` items (queued for review).
    verify: list[ExperienceEvent] = []
    inst = "instance-verifier"
    for k in range(0, knowledge, 2):
        verify.append(ExperienceEvent(
            event_id=new_id(), timestamp=T0 + timedelta(hours=3), source_instance=inst, event_type="knowledge",
            data={"content": f"fact {k}: {_text(k, 8)}", "subject": f"subject {k}", "confidence": 0.7},  # type: ignore[arg-type]
        ))
    for k in range(1, min(knowledge, 2 * reviews), 2):
        verify.append(ExperienceEvent(
            event_id=new_id(), timestamp=T0 + timedelta(hours=3), source_instance=inst, event_type="knowledge",
            data={"content": f"contrary {k}: {_text(k + 7, 8)}", "subject": f"subject {k}", "confidence": 0.6},  # type: ignore[arg-type]
        ))
    hub.engine.ingest_batch(AGENT, ExperienceBatch(
        batch_id=new_id(), instance_id=inst, timestamp_start=T0, timestamp_end=T0, events=verify,
    ))
    return time.perf_counter() - started


def sign_in(client: httpx.Client, token: str) -> None:
    form = client.get("/console/signin").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    r = client.post("/console/signin", data={"token": token, "csrf": csrf.group(1)})
    assert r.status_code == 200, r.status_code


def measure(client: httpx.Client, url: str, requests: int, headers: dict[str, str] | None = None) -> tuple[float, float, int]:
    """p50 and p95 in ms of ``requests`` GETs of ``url``, and the page's size in bytes."""
    times: list[float] = []
    size = 0
    client.get(url, headers=headers)  # warm
    for _ in range(requests):
        t = time.perf_counter()
        r = client.get(url, headers=headers)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        size = len(r.content)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=1_000)
    parser.add_argument("--skills", type=int, default=50)
    parser.add_argument("--knowledge", type=int, default=2_000)
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 memories, 50 instances")
    args = parser.parse_args(argv)
    if args.quick:
        args.memories, args.instances, args.skills, args.knowledge, args.reviews, args.requests = 2000, 50, 10, 100, 10, 5
    strategy = MergeStrategyConfig(conflict_resolution="manual_review", memory_deduplication=False)
    with tempfile.TemporaryDirectory(prefix="xs-bench-console-") as tmp:
        hub = Hub.open(f"sqlite:///{Path(tmp) / 'hub.db'}", strategy=strategy)
        seconds = seed(hub, args.memories, args.instances, args.skills, args.knowledge, args.reviews)
        server = HubServer(hub).start()
        try:
            token = server.create_token(AGENT, "operator")
            open_reviews = len(hub.engine.reviews(AGENT))
            print(f"# console pages, {platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
            print(f"seeded {args.memories} memories, {len(hub.engine.instances(AGENT))} instances, "
                  f"{len(hub.engine.skills(AGENT))} skills, {len(hub.engine.knowledge(AGENT))} knowledge, "
                  f"{open_reviews} open reviews through the engine in {seconds:.1f} s")
            with httpx.Client(base_url=server.url, follow_redirects=True, timeout=60) as client:
                sign_in(client, token)
                base = f"/console/agents/{AGENT}"
                last_mem_page = -(-args.memories // 25)
                skill_link = re.search(r'href="(/console/agents/[^"]+/skills/[^"]+)"', client.get(f"{base}/skills").text)
                mem_link = re.search(r'href="(/console/agents/[^"]+/memories/[^"?]+)"', client.get(f"{base}/memories?page={last_mem_page}").text)
                review_link = re.search(r'href="(/console/agents/[^"]+/reviews/[^"?]+)"', client.get(f"{base}/reviews").text)
                assert skill_link and mem_link and review_link
                pages = [
                    ("fleet", f"{base}/fleet", None),
                    ("fleet (live fragment)", f"{base}/fleet?sort=lag&page=20", {"HX-Request": "true"}),
                    ("memories (list, page 1)", f"{base}/memories", None),
                    (f"memories (list, page {last_mem_page})", f"{base}/memories?page={last_mem_page}", None),
                    ("memories (ranked search)", f"{base}/memories?q=coffee+deadline+retry", None),
                    ("memory (provenance)", mem_link.group(1), None),
                    ("skills", f"{base}/skills", None),
                    ("skill (curve)", skill_link.group(1), None),
                    ("knowledge (all)", f"{base}/knowledge", None),
                    ("knowledge (pending, page 2)", f"{base}/knowledge?status=pending&page=2", None),
                    ("reviews (open)", f"{base}/reviews", None),
                    ("review", review_link.group(1), None),
                    ("events", f"{base}/events", None),
                ]
                print(f"{'page':36} {'p50 ms':>8} {'p95 ms':>8} {'KiB':>7}")
                for name, url, headers in pages:
                    p50, p95, size = measure(client, url, args.requests, headers)
                    print(f"{name:36} {p50:8.1f} {p95:8.1f} {size / 1024:7.1f}")
        finally:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
