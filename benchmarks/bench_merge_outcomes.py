"""Three-way merge outcomes on the labelled pairs, per class and per strategy.

Each pair of ``tests/data/merge_outcomes.jsonl`` (tuning) and
``tests/data/merge_outcomes_holdout.jsonl`` (held out: never used to tune the
guards) goes to a fresh agent of a real :class:`MergeEngine` on a SQLite file:
member ``a`` from instance ``i1``, then member ``b`` from ``i2``. The outcome
is read from the second request's :class:`MergeResult` (``memory_outcomes``
when the hub reports it; else merged -> duplicate, conflict -> contradiction,
added -> distinct) and the active state is read back with
:meth:`MergeEngine.memories`.

Reported per set: duplicate detection precision / recall / F1 (positive =
merged), contradictions merged (a pair labelled contradiction counted as a
duplicate), distinct statements lost (a pair labelled distinct whose ``a`` or
``b`` is not the content of an active memory), under ``latest_wins``,
``weighted_merge`` and ``manual_review``; then the confusion per category.

Usage::

    python benchmarks/bench_merge_outcomes.py
    python benchmarks/bench_merge_outcomes.py --explain   # the wrong pairs of the tuning set
    python benchmarks/bench_merge_outcomes.py --embedder minilm   # similarity_method = "embedding"
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.models import EventsRequest, ExperienceEvent, MergeResult

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SETS = {"tuning": DATA / "merge_outcomes.jsonl", "held-out": DATA / "merge_outcomes_holdout.jsonl"}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
STRATEGIES = ("latest_wins", "weighted_merge", "manual_review")


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _memory(event_id: str, instance: str, content: str, t: float) -> ExperienceEvent:
    return ExperienceEvent.model_validate(
        {"event_id": event_id, "timestamp": T0 + timedelta(seconds=t),
         "source_instance": instance, "event_type": "memory", "data": {"content": content}}
    )


def outcome_of(result: MergeResult) -> str:
    """The one memory's outcome, from the result."""
    outcomes = getattr(result, "memory_outcomes", None)
    if outcomes:
        return str(outcomes[0].outcome)
    if result.memories_merged:
        return "duplicate"
    if result.conflicts.total:
        return "contradiction"
    return "distinct"


def run(
    strategy: str, pairs: Sequence[dict[str, Any]], tmp: Path, embedder: str | None = None
) -> list[dict[str, Any]]:
    options: dict[str, Any] = {"conflict_resolution": strategy}
    if embedder:
        options.update(similarity_method="embedding", embedder=embedder)
    engine = MergeEngine(
        open_store(f"sqlite:///{tmp}/{strategy}.db"), MergeStrategyConfig(**options)
    )
    rows = []
    try:
        for p in pairs:
            agent = f"p-{p['id']}"
            engine.ingest_events(
                agent, EventsRequest(instance_id="i1", events=[_memory(f"{agent}-a", "i1", p["a"], 0)])
            )
            second = engine.ingest_events(
                agent, EventsRequest(instance_id="i2", events=[_memory(f"{agent}-b", "i2", p["b"], 1)])
            )
            active = {m.content for m in engine.memories(agent)[0]}
            rows.append({**p, "got": outcome_of(second), "kept_a": p["a"] in active,
                         "kept_b": p["b"] in active})
    finally:
        engine.close()
    return rows


def figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    tp = sum(r["outcome"] == "duplicate" and r["got"] == "duplicate" for r in rows)
    fp = sum(r["outcome"] != "duplicate" and r["got"] == "duplicate" for r in rows)
    fn = sum(r["outcome"] == "duplicate" and r["got"] != "duplicate" for r in rows)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    contradictions = [r for r in rows if r["outcome"] == "contradiction"]
    distinct = [r for r in rows if r["outcome"] == "distinct"]
    return {
        "pairs": len(rows), "precision": precision, "recall": recall, "f1": f1,
        "contradictions_merged": sum(r["got"] == "duplicate" for r in contradictions),
        "contradictions_found": sum(r["got"] == "contradiction" for r in contradictions),
        "contradictions": len(contradictions),
        "distinct_lost": sum(not (r["kept_a"] and r["kept_b"]) for r in distinct),
        "distinct_as_distinct": sum(r["got"] == "distinct" for r in distinct),
        "distinct": len(distinct),
        "exact": sum(r["got"] == r["outcome"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--explain", action="store_true", help="list the tuning set's wrong pairs")
    parser.add_argument("--embedder", help="an embedder name: similarity_method = embedding")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, path in SETS.items():
            pairs = load(path)
            per_category: dict[str, dict[str, int]] = {}
            for strategy in STRATEGIES:
                where = Path(tmp) / set_name.replace("-", "")
                where.mkdir(exist_ok=True)
                rows = run(strategy, pairs, where, args.embedder)
                f = figures(rows)
                print(
                    f"{set_name:9} {strategy:14} pairs {f['pairs']:3}  P {f['precision']:.3f} "
                    f"R {f['recall']:.3f} F1 {f['f1']:.3f}  contradictions merged "
                    f"{f['contradictions_merged']}/{f['contradictions']} (found "
                    f"{f['contradictions_found']})  distinct lost {f['distinct_lost']}/"
                    f"{f['distinct']} (reported distinct {f['distinct_as_distinct']})  "
                    f"three-way exact {f['exact']}/{f['pairs']}"
                )
                if strategy == "latest_wins":
                    for r in rows:
                        c = per_category.setdefault(f"{r['category']} ({r['outcome']})", {})
                        c[r["got"]] = c.get(r["got"], 0) + 1
                        if args.explain and set_name == "tuning" and r["got"] != r["outcome"]:
                            print(f"    WRONG {r['id']}: got {r['got']}: {r['a']!r} / {r['b']!r}")
            for cat, counts in per_category.items():
                print(f"    {cat:32} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
