"""The ``minilm`` embedder's throughput on this machine: memories embedded per second.

Needs requirements-embedder.txt (torch's CPU build and ``plugins/minilm``).
Three figures, each the best of ``--rounds`` runs:

1. ``encode``: distinct memory texts embedded from cold (no cache hit), at
   each ``--batch-sizes`` value; the model's load time is reported apart.
2. ``cached``: the same texts again, every one answered from the cache.
3. ``hub``: memories merged per second by a hub with
   ``similarity_method = "embedding"`` and ``embedder = "minilm"`` (SQLite in
   a temporary directory, ``--per-request`` memories per request, in-process
   engine), i.e. the embedding plus the dedup search and the commit.

Texts are synthetic memories of 8-20 words drawn from a fixed vocabulary
(seeded, so every run embeds the same texts). Run::

    python benchmarks/bench_embedder.py                         # 2,000 memories
    python benchmarks/bench_embedder.py --memories 200 --rounds 1   # a quick check

The last line printed is the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORDS = tuple(
    ["the", "user", "deploy", "disk", "database", "backup", "refund", "customer", "invoice", "pipeline", "build", "cache", "server", "region", "token", "password", "answer", "reply", "report", "weekly", "nightly", "slow", "fast", "staging", "production", "queue", "worker", "schedule", "monday", "friday", "ticket", "support", "billing", "account", "email", "prefers", "asks", "restarts", "fails", "breaks", "ships", "cancels", "approves", "reviews", "logs", "keeps", "sends", "after", "before", "when", "because", "during", "often", "usually", "sometimes", "team", "manager", "office", "api"]
)


def memories(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct synthetic memory texts."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
        text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _best(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_encode(texts: list[str], batch_sizes: list[int], rounds: int) -> dict[str, Any]:
    from experience_sync_minilm import MiniLMEmbedder, load_model

    start = time.perf_counter()
    load_model()
    load_s = time.perf_counter() - start
    MiniLMEmbedder(cache_size=0).embed(texts[:8])  # warm the kernels once
    encode: dict[str, float] = {}
    for size in batch_sizes:
        seconds = _best(lambda size=size: MiniLMEmbedder(batch_size=size, cache_size=0)
                        .embed(texts), rounds)
        encode[str(size)] = round(len(texts) / seconds, 1)
    cached = MiniLMEmbedder(cache_size=len(texts))
    cached.embed(texts)
    cached_s = _best(lambda: cached.embed(texts), rounds)
    return {"model_load_s": round(load_s, 2), "encode_memories_per_s": encode,
            "cached_memories_per_s": round(len(texts) / cached_s, 1)}


def bench_hub(texts: list[str], per_request: int, rounds: int) -> dict[str, Any]:
    from experience_sync.api import MergeStrategyConfig
    from experience_sync.hub.engine import MergeEngine, open_store
    from experience_sync.models import EventsRequest
    from experience_sync.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if "minilm" not in pm.registry.names("embedders"):  # entry points off (as under pytest)
        import experience_sync_minilm.plugin

        pm.register(experience_sync_minilm.plugin, "minilm")
    strategy = MergeStrategyConfig(similarity_method="embedding", embedder="minilm")
    best = float("inf")
    merged = 0
    for r in range(rounds):
        with tempfile.TemporaryDirectory(prefix="xs-bench-embedder-") as tmp:
            engine = MergeEngine(open_store(f"sqlite:///{Path(tmp) / 'hub.db'}"), strategy, pm)
            try:
                requests = [
                    EventsRequest.model_validate({"instance_id": "a", "events": [
                        {"event_id": f"r{r}-{i + j}", "event_type": "memory",
                         "timestamp": "2026-01-01T00:00:00Z", "source_instance": "a",
                         "data": {"content": texts[i + j]}}
                        for j in range(min(per_request, len(texts) - i))
                    ]})
                    for i in range(0, len(texts), per_request)
                ]
                start = time.perf_counter()
                added = 0
                for req in requests:
                    res = engine.ingest_events("bench", req)
                    added += res.memories_added + res.memories_merged + res.conflicts.total
                best = min(best, time.perf_counter() - start)
                merged = added
            finally:
                engine.close()
    return {"hub_memories_per_s": round(len(texts) / best, 1), "hub_memories_handled": merged,
            "per_request": per_request}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import experience_sync_minilm  # noqa: F401
        import torch
    except ImportError as exc:
        print(f"needs requirements-embedder.txt: {exc}", file=sys.stderr)
        return 2
    texts = memories(args.memories)
    figures: dict[str, Any] = {
        "memories": len(texts), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }
    figures.update(bench_encode(texts, [int(x) for x in args.batch_sizes.split(",")],
                                args.rounds))
    figures.update(bench_hub(texts, args.per_request, args.rounds))
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"model load: {figures['model_load_s']} s")
    for size, rate in figures["encode_memories_per_s"].items():
        print(f"encode, batch {size:>4}: {rate:>8} memories/s")
    print(f"cached:              {figures['cached_memories_per_s']:>8} memories/s")
    print(f"hub (embedding dedup, {args.per_request}/request): "
          f"{figures['hub_memories_per_s']} memories/s")
    print(f"peak RSS: {figures['peak_rss_mb']} MB")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
