"""Retention and backup costs on a SQLite store: compaction, replay from a
snapshot, export, import and an online backup, for one agent.

The agent gets ``--events`` events (memories, skills, knowledge and
interactions in equal parts, 50 per request) through the merge engine. Then,
each timed once: ``compact`` (snapshot of the state + deleting the log),
replay in place of the compacted log (snapshot + 10% more events merged
after it), ``export`` to JSON Lines, ``import`` into a fresh SQLite store,
and ``backup`` of the store file. Also reported: the log's entry count and
the file sizes.

Usage::

    python benchmarks/bench_maintenance.py                 # 20,000 events
    python benchmarks/bench_maintenance.py --events 5000
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine
from experience_sync.hub.export import export_agent, import_agent
from experience_sync.hub.replay import replay
from experience_sync.hub.retention import compact
from experience_sync.models import EventsRequest, ExperienceEvent
from experience_sync.stores.sqlite import SQLiteStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
KINDS = ("memory", "skill", "knowledge", "interaction")


def event(i: int) -> ExperienceEvent:
    kind = KINDS[i % 4]
    data: dict[str, Any] = {
        "memory": {"content": f"user {i} prefers tea number {i * 7919 % 100003} in the morning"},
        "skill": {"name": f"skill {i % 50}", "proficiency": (i % 10) / 10},
        "knowledge": {"content": f"fact {i} holds", "subject": f"subject {i}"},
        "interaction": {"summary": f"talked about topic {i}", "outcome": "ok"},
    }[kind]
    return ExperienceEvent.model_validate({
        "event_id": f"e{i}", "timestamp": T0 + timedelta(seconds=i),
        "source_instance": f"i{i % 4}", "event_type": kind, "data": data,
    })


def ingest(engine: MergeEngine, first: int, count: int) -> None:
    for start in range(first, first + count, 50):
        evs = [event(i) for i in range(start, min(start + 50, first + count))]
        engine.ingest_events("a", EventsRequest(instance_id=evs[0].source_instance, events=evs))


def timed(label: str, fn: Any) -> Any:
    t = time.perf_counter()
    out = fn()
    print(f"{label:<42} {time.perf_counter() - t:8.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hub.db"
        store = SQLiteStore(f"sqlite:///{path}")
        engine = MergeEngine(store, MergeStrategyConfig(), emit=False)
        timed(f"ingest {n:,} events", lambda: ingest(engine, 0, n))
        print(f"{'log entries before compaction':<42} {sum(1 for _ in store.iter_log('a')):8,}")
        removed = timed("compact", lambda: compact(engine, "a"))
        print(f"{'entries replaced by the snapshot':<42} {removed:8,}")
        ingest(engine, n, n // 10)
        live = engine.state("a")
        got = timed(f"replay in place (snapshot + {n // 10:,} events)",
                    lambda: replay(store, "a", MergeStrategyConfig()))
        assert got == live
        buf = io.StringIO()
        timed("export", lambda: export_agent(store, "a", buf))
        print(f"{'export size':<42} {len(buf.getvalue().encode()) / 1e6:8.1f} MB")
        target = SQLiteStore(f"sqlite:///{Path(tmp) / 'copy.db'}")
        imported = timed("import into a new SQLite store",
                         lambda: import_agent(io.StringIO(buf.getvalue()), target,
                                              MergeStrategyConfig()))
        assert imported == live
        target.close()
        timed("online backup", lambda: store.backup(Path(tmp) / "backup.db"))
        print(f"{'store file (+WAL)':<42} "
              f"{(os.path.getsize(path) + os.path.getsize(str(path) + '-wal')) / 1e6:8.1f} MB")
        engine.close()


if __name__ == "__main__":
    main()
