"""What a forget costs on a SQLite store: one agent, a name in 1% of its events.

The agent gets ``--events`` events (memories, skills, knowledge and
interactions in equal parts, 50 per request) through the merge engine; one
event in a hundred mentions "Zebulon Quarkwright". Then, each timed once: a
dry run of ``forget(query=...)`` (reading the log, selecting, rebuilding the
state in memory), the forget itself (the same, then the store transaction
that redacts, replaces the state and index, and the scrub: FTS5 optimize,
WAL truncation), and a forget of one memory by id after it. Also reported:
the file size before and after, and whether the name is still in the file.

Usage::

    python benchmarks/bench_forget.py                  # 20,000 events
    python benchmarks/bench_forget.py --events 2000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from experience_sync.config import MergeStrategyConfig
from experience_sync.forgetting import ForgetRequest
from experience_sync.hub.engine import MergeEngine
from experience_sync.hub.forget import forget
from experience_sync.models import EventsRequest, ExperienceEvent
from experience_sync.stores.sqlite import SQLiteStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
KINDS = ("memory", "skill", "knowledge", "interaction")
NAME = "Zebulon Quarkwright"


def event(i: int) -> ExperienceEvent:
    kind = KINDS[i % 4]
    who = NAME if i % 100 == 0 else f"user {i}"
    data: dict[str, Any] = {
        "memory": {"content": f"{who} prefers tea number {i * 7919 % 100003} in the morning"},
        "skill": {"name": f"skill {i % 50}", "proficiency": (i % 10) / 10},
        "knowledge": {"content": f"fact {i} about {who} holds", "subject": f"subject {i}"},
        "interaction": {"summary": f"talked with {who} about topic {i}", "outcome": "ok"},
    }[kind]
    return ExperienceEvent.model_validate({
        "event_id": f"e{i}", "timestamp": T0 + timedelta(seconds=i),
        "source_instance": f"i{i % 4}", "event_type": kind, "data": data,
    })


def _size(path: Path) -> int:
    return sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
               if Path(f"{path}{s}").exists())


def run(events: int, directory: Path) -> dict[str, Any]:
    db = directory / "hub.db"
    engine = MergeEngine(SQLiteStore(f"sqlite:///{db}"), MergeStrategyConfig())
    for start in range(0, events, 50):
        batch = [event(i) for i in range(start, min(events, start + 50))]
        engine.ingest_events("a", EventsRequest(instance_id="i0", events=batch))
    size_before = _size(db)
    t = time.perf_counter()
    dry = forget(engine, "a", ForgetRequest(query=NAME, dry_run=True))
    dry_s = time.perf_counter() - t
    t = time.perf_counter()
    done = forget(engine, "a", ForgetRequest(query=NAME))
    forget_s = time.perf_counter() - t
    memory_id = engine.state("a").memories[0].memory_id
    t = time.perf_counter()
    forget(engine, "a", ForgetRequest(memory_ids=[memory_id]))
    one_s = time.perf_counter() - t
    engine.close()
    still = NAME.lower().encode() in db.read_bytes().lower()
    return {
        "events": events, "forgotten": done.events_forgotten, "removed": done.removed,
        "dry_run_s": round(dry_s, 3), "forget_s": round(forget_s, 3),
        "forget_one_memory_s": round(one_s, 3),
        "size_before_mb": round(size_before / 1e6, 2), "size_after_mb": round(_size(db) / 1e6, 2),
        "name_in_file": still, "dry_run_matches": dry.events_forgotten == done.events_forgotten,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--dir", default=None, help="Where the store goes (default a temp dir).")
    args = parser.parse_args()
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        figures = run(args.events, Path(args.dir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(args.events, Path(tmp))
    print(f"{figures['events']:,} events, {figures['forgotten']} forgotten by query: "
          f"dry run {figures['dry_run_s']} s, forget {figures['forget_s']} s, "
          f"one memory after it {figures['forget_one_memory_s']} s; file "
          f"{figures['size_before_mb']} -> {figures['size_after_mb']} MB; "
          f"name still in the file: {figures['name_in_file']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
